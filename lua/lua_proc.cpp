// vigil.proc: processes on the machine, for rules that do more than the
// watch DSL. Matching uses the same keys as a watch's `match` table.
//   proc.find(match) -> { info, ... }        every matching process, oldest first
//   proc.info(pid) -> info | nil              nil when it is gone
//       info = { pid, ppid, name, exe, cmdline, state, uid, user, start_time,
//                threads, utime, stime (clock ticks), cpu_seconds, rss, vsize
//                (bytes), fds, kernel }
//   proc.children(pid) -> { pid, ... }
//   proc.kill(pid, start_time [, signal]) -> true | nil, err
//       Signals through a pidfd, and only the process with that start time:
//       a recycled pid is never hit. Live state only.
//   proc.on(kind, match, fn) -> handle | nil, err
//       kind "spawn" (a fork), "exec" or "exit"; fn(info) for each process
//       that matches (for "spawn": whose parent matches, as the child is
//       its copy; for "exit": that matched while alive; info has pid,
//       name, code, signal). Needs kernel process events. handle:cancel().
//   proc.available() -> boolean   kernel process events are in use
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "host/core/exit_status.hpp"
#include "host/core/pidfd.hpp"
#include "host/core/strings.hpp"
#include "host/proc/proc_scan.hpp"
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

constexpr const char* kSubMeta = "vigil.proc.subscription";

std::string user_name(uid_t uid) {
  std::vector<char> buf(4096);
  passwd pw, *res = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res) return res->pw_name;
  return std::to_string(uid);
}

nlohmann::json info_json(pid_t pid, ProcReader& r) {
  ProcStat st;
  if (!r.stat(pid, st)) return nullptr;
  static const long ticks = sysconf(_SC_CLK_TCK);
  static const long page = sysconf(_SC_PAGESIZE);
  nlohmann::json j = {
      {"pid", pid},
      {"ppid", st.ppid},
      {"name", st.comm},
      {"state", std::string(1, st.state)},
      {"start_time", st.start_time},
      {"threads", st.num_threads},
      {"utime", st.utime},
      {"stime", st.stime},
      {"cpu_seconds", static_cast<double>(st.utime + st.stime) / static_cast<double>(ticks)},
      {"rss", st.rss_pages * page},
      {"vsize", st.vsize},
      {"kernel", st.kernel_thread()}};
  if (auto s = r.status(pid)) {
    j["uid"] = s->euid;
    j["user"] = user_name(s->euid);
  }
  if (auto e = r.exe(pid)) j["exe"] = std::string(*e);
  if (auto c = r.cmdline(pid)) j["cmdline"] = std::string(*c);
  j["fds"] = r.count_fds(pid);
  return j;
}

ProcReader& reader_of(RuntimeState& rt) {
  if (rt.host.supervisor) return rt.host.supervisor->reader();
  static ProcReader standalone;  // vigil check: no host
  return standalone;
}

const char* const kMatchKeys[] = {"name",   "exe",    "cmdline", "cmdline_re", "user",   "parent",
                                  "cgroup", "kernel", "uid",     "ppid",       "select", nullptr};

// Stack: [match] -> [infos].
int l_find(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int match = copy_keys(L, 1, kMatchKeys);
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise& raise) -> int {
    std::optional<Matcher> m;
    std::string err = read_match_table(L, match, m);
    if (!m) return raise("proc.find: %s", err.c_str());  // misuse raises
    ProcReader& r = reader_of(rt);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : find_processes(*m, r, 0, {getpid()})) {
      nlohmann::json j = info_json(f.pid, r);
      if (!j.is_null()) out.push_back(std::move(j));
    }
    push_json(L, out);
    return 1;
  });
}

int l_info(lua_State* L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  return guarded(L, [&](Raise&) -> int {
    nlohmann::json j = info_json(static_cast<pid_t>(pid), reader_of(runtime_of(L)));
    push_json(L, j);
    return 1;
  });
}

int l_children(lua_State* L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  return guarded(L, [&](Raise&) -> int {
    std::vector<pid_t> kids = reader_of(runtime_of(L)).children(static_cast<pid_t>(pid));
    lua_createtable(L, static_cast<int>(kids.size()), 0);
    for (size_t i = 0; i < kids.size(); ++i) {
      lua_pushinteger(L, kids[i]);
      lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    }
    return 1;
  });
}

int l_kill(lua_State* L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  lua_Integer start = luaL_checkinteger(L, 2);
  const char* signame = luaL_optstring(L, 3, "TERM");
  require_live(L, "proc.kill");
  auto sig = parse_signal(signame);
  if (!sig) return luaL_error(L, "proc.kill: unknown signal '%s'", signame);
  return guarded(L, [&](Raise&) -> int {
    // The pidfd pins whatever process has the pid now; the start time
    // says whether it is the one the rule meant.
    Fd fd(pidfd_open(static_cast<pid_t>(pid), 0));
    auto st = read_proc_stat(static_cast<pid_t>(pid));
    const char* err = nullptr;
    if (!fd || !st || st->start_time != static_cast<uint64_t>(start) || st->dead())
      err = "no such process (it exited, or the pid now belongs to another process)";
    else if (pidfd_send_signal(fd.get(), *sig, nullptr, 0) != 0)
      err = "cannot signal it";
    if (err) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
  });
}

int l_available(lua_State* L) {
  RuntimeState& rt = runtime_of(L);
  lua_pushboolean(L, rt.host.proc_events && rt.host.proc_events->available());
  return 1;
}

int l_on(lua_State* L) {
  const char* kind = luaL_checkstring(L, 1);
  ProcSubscription::Kind k;
  if (strcmp(kind, "spawn") == 0)
    k = ProcSubscription::Kind::Spawn;
  else if (strcmp(kind, "exec") == 0)
    k = ProcSubscription::Kind::Exec;
  else if (strcmp(kind, "exit") == 0)
    k = ProcSubscription::Kind::Exit;
  else
    return luaL_error(L, "proc.on: unknown kind '%s' (spawn, exec or exit)", kind);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  RuntimeState& rt = runtime_of(L);
  if (rt.host.loop && !(rt.host.proc_events && rt.host.proc_events->available())) {
    lua_pushnil(L);
    lua_pushstring(L, "proc.on: kernel process events are not available here");
    return 2;
  }
  int match = copy_keys(L, 2, kMatchKeys);
  return guarded(L, [&](Raise& raise) -> int {
    std::optional<Matcher> m;
    std::string err = read_match_table(L, match, m);
    if (!m) return raise("proc.on: %s", err.c_str());
    lua_pushvalue(L, 3);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    auto sub = std::make_shared<ProcSubscription>(ProcSubscription{k, std::move(*m), ref, {}});
    rt.proc_subs.push_back(sub);
    if (rt.live) {
      start_subscription(rt, *sub);
      if (rt.host.supervisor) rt.host.supervisor->set_rule_interest(proc_events_wanted(rt));
    }
    auto** handle = static_cast<std::weak_ptr<ProcSubscription>**>(
        lua_newuserdatauv(L, sizeof(std::weak_ptr<ProcSubscription>*), 0));
    *handle = new std::weak_ptr<ProcSubscription>(sub);
    luaL_setmetatable(L, kSubMeta);
    return 1;
  });
}

int l_sub_cancel(lua_State* L) {
  auto** handle = static_cast<std::weak_ptr<ProcSubscription>**>(luaL_checkudata(L, 1, kSubMeta));
  RuntimeState& rt = runtime_of(L);
  if (auto sub = (*handle)->lock()) {
    std::erase(rt.proc_subs, sub);
    luaL_unref(L, LUA_REGISTRYINDEX, sub->ref);
    if (rt.live && rt.host.supervisor)
      rt.host.supervisor->set_rule_interest(proc_events_wanted(rt));
  }
  return 0;
}

int l_sub_gc(lua_State* L) {
  auto** handle = static_cast<std::weak_ptr<ProcSubscription>**>(luaL_checkudata(L, 1, kSubMeta));
  delete *handle;
  *handle = nullptr;
  return 0;
}

const luaL_Reg kProcFns[] = {{"find", l_find},  {"info", l_info}, {"children", l_children},
                             {"kill", l_kill},  {"on", l_on},     {"available", l_available},
                             {nullptr, nullptr}};

// Calls sub's function with info, from the loop after the kernel event's
// callback has returned (and only if sub is still subscribed then).
void deliver(RuntimeState& rt, const ProcSubscription& sub, nlohmann::json info) {
  auto j = std::make_shared<nlohmann::json>(std::move(info));
  RuntimeState* rtp = &rt;
  std::weak_ptr<ProcSubscription> which;
  for (const auto& s : rt.proc_subs)
    if (s.get() == &sub) which = s;
  int ref = sub.ref;
  enqueue_delivery(rt, Delivery{"vigil.proc.on handler", ref, false,
                                [j](lua_State* L) {
                                  push_json(L, *j);
                                  return 1;
                                },
                                [rtp, which] {
                                  // Cancelled meanwhile: gone from the list, its ref released.
                                  auto sub = which.lock();
                                  return sub &&
                                         std::find(rtp->proc_subs.begin(), rtp->proc_subs.end(),
                                                   sub) != rtp->proc_subs.end();
                                }});
}

// A fork's child starts as a copy of its parent, so a spawn matches on the
// parent: the child may have exec'd something else, or exited, before its
// event is read. The info is the child's while it still is that copy, else
// the parent's under the child's pid.
void deliver_spawn(RuntimeState& rt, const ProcSubscription& sub, const ProcEvent& ev,
                   ProcReader& r) {
  ProcStat parent, child;
  if (!r.stat(ev.parent, parent) || !sub.match.matches(parent, r)) return;
  if (r.stat(ev.pid, child) && child.comm == parent.comm && sub.match.matches(child, r)) {
    if (nlohmann::json j = info_json(ev.pid, r); !j.is_null())
      return deliver(rt, sub, std::move(j));
  }
  nlohmann::json j = info_json(ev.parent, r);
  if (j.is_null()) return;
  j["pid"] = ev.pid;
  j["ppid"] = ev.parent;
  j["threads"] = 1;
  j.erase("start_time");
  deliver(rt, sub, std::move(j));
}

}  // namespace

std::string read_match_table(lua_State* L, int idx, std::optional<Matcher>& out) {
  auto str = [&](const char* key) {
    raw_field(L, idx, key);
    std::string v = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    lua_pop(L, 1);
    return v;
  };
  auto num = [&](const char* key) -> std::optional<lua_Integer> {
    raw_field(L, idx, key);
    std::optional<lua_Integer> v;
    if (lua_isinteger(L, -1)) v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
  };
  MatchSpec m;
  m.name = str("name");
  m.exe = str("exe");
  m.cmdline = str("cmdline");
  m.cmdline_re = str("cmdline_re");
  m.user = str("user");
  m.parent = str("parent");
  m.cgroup = str("cgroup");
  raw_field(L, idx, "kernel");
  m.kernel = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (auto uid = num("uid"); uid && *uid >= 0) m.uid = static_cast<uid_t>(*uid);
  if (auto ppid = num("ppid"); ppid && *ppid >= 0) m.ppid = static_cast<pid_t>(*ppid);
  std::string select = str("select");
  if (select == "newest")
    m.select = MatchSpec::Select::Newest;
  else if (select == "all")
    m.select = MatchSpec::Select::All;
  std::string err;
  out = Matcher::compile(m, err);
  return out ? std::string() : err;
}

void start_subscription(RuntimeState& rt, ProcSubscription& sub) {
  if (sub.kind != ProcSubscription::Kind::Exit) return;
  // Exits are reported for processes that matched while alive: those
  // running now, and those that fork or exec into a match later.
  ProcReader& r = reader_of(rt);
  ProcStat st;
  for (const auto& f : find_processes(sub.match, r, 0, {getpid()}))
    sub.members[f.pid] = r.stat(f.pid, st) ? st.comm : "";
}

// spawn: forks; exec: execs; exit: every exit, and forks and execs to
// know which processes match while they live.
unsigned proc_events_wanted(const RuntimeState& rt) {
  unsigned want = 0;
  for (const auto& sub : rt.proc_subs) {
    switch (sub->kind) {
      case ProcSubscription::Kind::Spawn: want |= ProcEvents::Forks; break;
      case ProcSubscription::Kind::Exec: want |= ProcEvents::Execs; break;
      case ProcSubscription::Kind::Exit:
        want |= ProcEvents::Exits | ProcEvents::Forks | ProcEvents::Execs;
        break;
    }
  }
  return want;
}

void proc_event(RuntimeState& rt, const ProcEvent& ev) {
  if (!rt.live || rt.proc_subs.empty()) return;
  ProcReader& r = reader_of(rt);
  ProcStat st;
  bool have = false;
  auto load = [&] {
    if (!have) have = r.stat(ev.pid, st);
    return have;
  };
  auto subs = rt.proc_subs;  // a callback may cancel
  for (const auto& sub : subs) {
    using K = ProcSubscription::Kind;
    switch (ev.kind) {
      case ProcEvent::Kind::Fork:
        if (sub->kind == K::Exit && sub->members.contains(ev.parent) &&
            sub->match.inherited_by_fork())
          sub->members[ev.pid] = sub->members[ev.parent];
        if (sub->kind == K::Spawn) deliver_spawn(rt, *sub, ev, r);
        break;
      case ProcEvent::Kind::Exec:
      case ProcEvent::Kind::Comm:
        if (!load()) break;
        if (sub->kind == K::Exit) {
          if (sub->match.matches(st, r))
            sub->members[ev.pid] = st.comm;
          else
            sub->members.erase(ev.pid);
        } else if (sub->kind == K::Exec && ev.kind == ProcEvent::Kind::Exec &&
                   sub->match.matches(st, r)) {
          deliver(rt, *sub, info_json(ev.pid, r));
        }
        break;
      case ProcEvent::Kind::Exit:
        if (sub->kind == K::Exit) {
          auto it = sub->members.find(ev.pid);
          if (it == sub->members.end()) break;
          ExitStatus es = ExitStatus::from_wait(ev.status);
          nlohmann::json info = {{"pid", ev.pid}, {"name", it->second}};
          info["code"] = es.signal ? nlohmann::json() : nlohmann::json(es.code);
          info["signal"] = es.signal ? nlohmann::json(signal_name(es.signal)) : nlohmann::json();
          sub->members.erase(it);
          deliver(rt, *sub, std::move(info));
        }
        break;
    }
  }
}

int luaopen_vigil_proc(lua_State* L) {
  if (luaL_newmetatable(L, kSubMeta)) {
    lua_newtable(L);
    lua_pushcfunction(L, l_sub_cancel);
    lua_setfield(L, -2, "cancel");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_sub_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, kProcFns);
  return 1;
}

}  // namespace vigil

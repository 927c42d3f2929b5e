// vigil.exec: watches (units) and one-shot commands.
//   exec.declare(name, spec) -> true | nil, err
//       Declares a watch (spec is the stdlib's normalized table: argv (may
//       be absent when match is given), env, cwd, user, group, umask,
//       stop_signal, stop_timeout, stop_command, capture_output,
//       log_max_bytes, log_keep, where, match = {name, exe, cmdline,
//       cmdline_re, user, uid, parent, ppid, cgroup, kernel, select},
//       restart_script (argv), script_timeout, find_within, kill ("tree"|"process"),
//       count = {min, max}, checks = {every, zombie, stopped, blocked},
//       autostart (default true), oneshot, limits, nice, ioprio,
//       oom_score_adj, env_file, supplementary_groups, no_new_privs,
//       pidfile, pidfile_timeout: see read_resources).
//       Expected problems (program not found, unknown user, bad regex)
//       return nil, err.
//   exec.info(name) -> table | nil      state, pid, restarts, history, ...
//   exec.members(name) -> { {pid=, start_time=}, ... } oldest first
//   exec.restart_later(name, delay)     decision: restart after delay s
//   exec.exhaust(name [, rearm])        decision: give up (re-arm after s)
//   exec.lose(name)                     decision: nothing to start; wait for
//                                       a matching process to appear
//   exec.finish(name, ok [, why])       decision: not restarted; the watch is
//                                       done (ok: the exit was a success)
//   exec.kill(name, signal, reason) -> boolean   kill the watched process
//                                       (true: it has one; the signal is sent
//                                       once the current callback returns)
//   exec.set_count(name, min, max)      change a count's limits (max -1: none),
//                                       once the current callback returns
//   exec.probe_answer(name, index, token, ok [, reason [, evidence]])
//                                       a rule probe's answer (entry.probe)
//   exec.order(name, after, settle, group)   at load: what the watch requires
//                                       (watch names), its settle time and
//                                       its innermost group
//   exec.declare_group(name, {where=, strategy=, parent=, description=,
//                             members={...}, units={...}}) -> true | nil, err
//   exec.group_info(name) -> table | nil  state, restarts, history, steps, ...
//   exec.ledger(name) -> {history=, steps=} | nil   a watch's restart history
//                                       and step uses (info's, alone)
//   exec.recent(name, since) -> n, last_uptime | nil   restarts recorded
//                                       after `since`, the newest one's uptime
//   exec.restart_set(cause, names, delay [, group [, reason]])
//                                       decision: restart the watches together
//                                       in dependency order (cause: the watch
//                                       whose end this decides, or nil)
//   exec.exhaust_group(group [, rearm [, cause]])
//                                       decision: the group gives up; its
//                                       watches are stopped in order
//   exec.step(owner, key [, uptime])    records a use of an escalation step
//                                       (owner: a watch or a group)
//   exec.explain(owner, table)          the reasons of the last decision
//                                       (`vigil explain`)
//   exec.dump(name, trigger [, {core=, environ=, max_size=, keep=, lines=,
//             timeout=, extra={{name=, file=} | {name=, command=argv}}}])
//       -> dir | nil, err   an evidence dump of the watch's process now
//   exec.run(argv [, {timeout=, env={K=V}, on_exit=fn(code, signal)}]) -> pid | nil, err
//       A one-shot command in its own process group, stdio to /dev/null,
//       KILLed (with its group) after timeout seconds (default 60).
//       on_exit runs from the loop after the command has been reaped.
// Decisions, kill and run() act on the live state only.
//
// Decisions (restart_later, exhaust, lose, finish, restart_set, exhaust_group) are
// the answer to the policy question being asked (entry.exit): they are
// taken at once; the supervisor defers their effects itself. Other actions
// on a watch (kill, set_count) are queued and run once the callback that
// asked for them has returned, so that they never act on a unit the
// supervisor is in the middle of updating, nor re-enter the rules.
#include <signal.h>

#include <cmath>

#include "host/core/strings.hpp"
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

std::vector<std::string> string_list(lua_State* L, int idx, const char* what, std::string& err) {
  std::vector<std::string> out;
  if (lua_isnoneornil(L, idx)) return out;
  if (!lua_istable(L, idx)) {
    err = std::string(what) + ": expected a list of strings";
    return out;
  }
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      err = std::string(what) + "[" + std::to_string(i) + "]: expected a string";
      lua_pop(L, 1);
      return out;
    }
    out.emplace_back(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return out;
}

// The normalized probe list at idx (stdlib/vigil/probes.lua makes it).
std::string read_probes(lua_State* L, int idx, std::vector<ProbeSpec>& out) {
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    int t = lua_gettop(L);
    std::string where = "probes[" + std::to_string(i) + "]";
    if (!lua_istable(L, t)) {
      lua_pop(L, 1);
      return where + ": expected a probe";
    }
    ProbeSpec p;
    std::string kind = field_string(L, t, "kind");
    std::string err;
    if (kind == "http") {
      p.kind = ProbeSpec::Kind::Http;
      err = read_http_check(L, t, p.http);
    } else if (kind == "tcp") {
      p.kind = ProbeSpec::Kind::Tcp;
      err = read_tcp_check(L, t, p.tcp);
    } else if (kind == "script") {
      p.kind = ProbeSpec::Kind::Script;
      raw_field(L, t, "command");
      p.command = string_list(L, -1, "command", err);
      lua_pop(L, 1);
      if (err.empty() && p.command.empty()) err = "command: required";
      if (err.empty()) {
        const char* path = getenv("PATH");
        auto prog = resolve_program(p.command[0], "", path ? path : "");
        if (!prog)
          err = "command: '" + p.command[0] + "' not found";
        else
          p.command[0] = *prog;
      }
    } else if (kind == "file") {
      p.kind = ProbeSpec::Kind::File;
      p.path = field_string(L, t, "path");
      p.max_age = field_number(L, t, "max_age", 0);
      if (p.path.empty()) err = "path: required";
      if (err.empty() && p.max_age <= 0) err = "max_age: required (a duration)";
    } else if (kind == "notify") {
      p.kind = ProbeSpec::Kind::Notify;
      raw_field(L, t, "ready");
      p.ready = lua_toboolean(L, -1);
      lua_pop(L, 1);
      p.watchdog = field_number(L, t, "watchdog", 0);
      if (!p.ready && p.watchdog <= 0) err = "notify: needs ready = true or a watchdog";
    } else if (kind == "rule") {
      p.kind = ProbeSpec::Kind::Rule;
    } else if (kind == "exec") {
      // Run in the container through the engine: no program to resolve here.
      p.kind = ProbeSpec::Kind::Exec;
      raw_field(L, t, "command");
      p.command = string_list(L, -1, "command", err);
      lua_pop(L, 1);
      raw_field(L, t, "healthcheck");
      p.healthcheck = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (err.empty() && p.command.empty() && !p.healthcheck) err = "cmd: required";
    } else {
      err = "unknown probe kind '" + kind + "'";
    }
    if (err.empty()) {
      p.name = field_string(L, t, "name");
      if (p.name.empty()) p.name = kind;
      p.every = field_number(L, t, "every", p.every);
      p.startup = field_number(L, t, "startup", p.startup);
      p.fails =
          static_cast<int>(field_integer(L, t, "fails", p.kind == ProbeSpec::Kind::Notify ? 1 : 3));
      p.success = static_cast<int>(field_integer(L, t, "success", 1));
      p.timeout = field_number(L, t, "timeout", p.timeout);
      raw_field(L, t, "readiness");
      p.readiness = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (p.every <= 0) err = "every: must be positive";
      if (p.fails < 1 || p.success < 1) err = "fails and success: at least 1";
    }
    lua_pop(L, 1);
    if (!err.empty()) return where + " (" + kind + "): " + err;
    out.push_back(std::move(p));
  }
  int notify = 0;
  for (const auto& p : out) notify += p.kind == ProbeSpec::Kind::Notify;
  if (notify > 1) return "probes: one notify probe per watch";
  return {};
}

// Limits and environment (issue 14): limits = { {resource=, soft=, hard=} }
// (-1: unlimited), nice, ioprio (encoded), oom_score_adj, env_file,
// supplementary_groups, no_new_privs; all checked by stdlib/vigil/watch.lua.
std::string read_resources(lua_State* L, int idx, ProcessSpec& spec) {
  std::string err;
  raw_field(L, idx, "limits");
  if (lua_istable(L, -1)) {
    lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
    for (lua_Integer i = 1; i <= n && err.empty(); ++i) {
      lua_rawgeti(L, -1, i);
      std::string name = field_string(L, -1, "resource");
      int res = rlimit_by_name(name);
      auto value = [&](const char* key) {
        lua_Integer v = field_integer(L, -1, key, -1);
        return v < 0 ? static_cast<uint64_t>(RLIM_INFINITY) : static_cast<uint64_t>(v);
      };
      if (res < 0)
        err = "limits: unknown limit '" + name + "'";
      else
        spec.limits.push_back({res, value("soft"), value("hard")});
      lua_pop(L, 1);
    }
    std::sort(spec.limits.begin(), spec.limits.end(),
              [](const auto& a, const auto& b) { return a.resource < b.resource; });
  }
  lua_pop(L, 1);
  if (!err.empty()) return err;
  spec.nice = static_cast<int>(field_integer(L, idx, "nice", ProcessSpec::kInherit));
  spec.ioprio = static_cast<int>(field_integer(L, idx, "ioprio", -1));
  spec.oom_score_adj = static_cast<int>(field_integer(L, idx, "oom_score_adj", ProcessSpec::kInherit));
  spec.env_file = field_string(L, idx, "env_file");
  raw_field(L, idx, "supplementary_groups");
  spec.supplementary_groups = string_list(L, -1, "supplementary_groups", err);
  lua_pop(L, 1);
  raw_field(L, idx, "no_new_privs");
  spec.no_new_privs = lua_toboolean(L, -1);
  lua_pop(L, 1);
  spec.pidfile = field_string(L, idx, "pidfile");
  spec.pidfile_timeout = field_number(L, idx, "pidfile_timeout", spec.pidfile_timeout);
  return err;
}

// A container watch's part (stdlib/vigil/watch.lua's declare_container normalized it):
// { match = { name, id, image, labels, compose_project, compose_service },
//   take_over, stop_timeout, engine_grace }.
std::string read_container(lua_State* L, int idx, Declaration& d) {
  ContainerDecl c;
  raw_field(L, idx, "match");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return "container: needs a match";
  }
  int m = lua_gettop(L);
  c.match.name = field_string(L, m, "name");
  c.match.id = field_string(L, m, "id");
  c.match.image = field_string(L, m, "image");
  c.match.compose_project = field_string(L, m, "compose_project");
  c.match.compose_service = field_string(L, m, "service");
  std::vector<std::pair<std::string, std::string>> labels;
  std::string err = field_string_pairs(L, m, "label", labels);
  lua_pop(L, 1);
  if (!err.empty()) return "container: match." + err;
  c.match.labels.insert(labels.begin(), labels.end());
  raw_field(L, idx, "take_over");
  c.take_over = lua_toboolean(L, -1);
  lua_pop(L, 1);
  c.stop_timeout = field_number(L, idx, "stop_timeout", c.stop_timeout);
  c.engine_grace = field_number(L, idx, "engine_grace", c.engine_grace);
  // Same-image counts: { count = { min, max, hold }, fill, create = {
  // image, cmd = {...}, label = {...} } }.
  raw_field(L, idx, "count");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    CountLimits lim;
    lim.min = static_cast<int64_t>(field_number(L, t, "min", 0));
    lim.max = static_cast<int64_t>(field_number(L, t, "max", -1));
    lim.hold = field_number(L, t, "hold", lim.hold);
    c.count = lim;
  }
  lua_pop(L, 1);
  raw_field(L, idx, "fill");
  c.fill = lua_toboolean(L, -1);
  lua_pop(L, 1);
  raw_field(L, idx, "create");
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    ContainerTemplate tp;
    tp.image = field_string(L, t, "image");
    raw_field(L, t, "cmd");
    if (lua_istable(L, -1)) {
      lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) == LUA_TSTRING) tp.cmd.emplace_back(lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    err = field_string_pairs(L, t, "label", labels);
    if (!err.empty()) {
      lua_pop(L, 1);
      return "container: create." + err;
    }
    tp.labels = {labels.begin(), labels.end()};
    c.create = std::move(tp);
  }
  lua_pop(L, 1);
  d.container = std::move(c);
  return {};
}

// Reads the normalized spec table at idx; returns an error text or "".
std::string read_spec(lua_State* L, int idx, Declaration& d) {
  ProcessSpec& spec = d.spec;
  std::string err;
  raw_field(L, idx, "argv");
  spec.argv = string_list(L, -1, "start", err);
  lua_pop(L, 1);
  if (!err.empty()) return err;
  raw_field(L, idx, "stop_command");
  spec.stop_command = string_list(L, -1, "stop.command", err);
  lua_pop(L, 1);
  if (!err.empty()) return err;
  if (std::string e = field_string_pairs(L, idx, "env", spec.env); !e.empty()) return e;
  spec.cwd = field_string(L, idx, "cwd");
  spec.user = field_string(L, idx, "user");
  spec.group = field_string(L, idx, "group");
  spec.umask = static_cast<int>(field_integer(L, idx, "umask", -1));
  spec.stop_signal = static_cast<int>(field_integer(L, idx, "stop_signal", SIGTERM));
  spec.stop_timeout = field_number(L, idx, "stop_timeout", 10);
  raw_field(L, idx, "capture_output");
  spec.capture_output = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  spec.log_max_bytes = static_cast<uint64_t>(field_integer(L, idx, "log_max_bytes", 1 << 20));
  spec.log_keep = static_cast<int>(field_integer(L, idx, "log_keep", 3));
  err = read_resources(L, idx, spec);
  if (!err.empty()) return err;
  d.where = field_string(L, idx, "where");

  raw_field(L, idx, "container");
  if (lua_istable(L, -1)) err = read_container(L, lua_gettop(L), d);
  lua_pop(L, 1);
  if (!err.empty()) return err;

  raw_field(L, idx, "match");
  if (lua_istable(L, -1) && !d.container) err = read_match_table(L, lua_gettop(L), d.match);
  lua_pop(L, 1);
  if (!err.empty()) return err;
  if (spec.argv.empty() && !d.match && !d.container) return "needs 'start' or 'match'";

  raw_field(L, idx, "restart_script");
  d.adopt.restart_script = string_list(L, -1, "restart_script", err);
  lua_pop(L, 1);
  if (!err.empty()) return err;
  if (!d.adopt.restart_script.empty()) {
    const char* path = getenv("PATH");
    auto prog = resolve_program(d.adopt.restart_script[0], "", path ? path : "");
    if (!prog) return "restart_script: command '" + d.adopt.restart_script[0] + "' not found";
    d.adopt.restart_script[0] = *prog;
  }
  d.adopt.script_timeout = field_number(L, idx, "script_timeout", d.adopt.script_timeout);
  d.adopt.find_within = field_number(L, idx, "find_within", d.adopt.find_within);
  raw_field(L, idx, "stop_on_remove");
  d.stop_on_remove = lua_toboolean(L, -1);
  lua_pop(L, 1);
  raw_field(L, idx, "autostart");
  d.autostart = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  raw_field(L, idx, "oneshot");
  d.oneshot = lua_toboolean(L, -1);
  lua_pop(L, 1);
  raw_field(L, idx, "observe");
  d.observe = lua_toboolean(L, -1);
  lua_pop(L, 1);
  d.adopt.kill_tree = field_string(L, idx, "kill") != "process";

  raw_field(L, idx, "count");
  if (lua_istable(L, -1)) {
    CountLimits c;
    c.min = static_cast<int64_t>(field_integer(L, -1, "min", 0));
    c.max = static_cast<int64_t>(field_integer(L, -1, "max", -1));
    c.hold = field_number(L, -1, "hold", c.hold);
    d.count = c;
  }
  lua_pop(L, 1);

  raw_field(L, idx, "checks");
  if (lua_istable(L, -1)) {
    StateChecks& c = d.checks;
    c.every = field_number(L, -1, "every", c.every);
    c.zombie = field_number(L, -1, "zombie", c.zombie);
    c.stopped = field_number(L, -1, "stopped", c.stopped);
    c.blocked = field_number(L, -1, "blocked", c.blocked);
    c.cpu_percent = field_number(L, -1, "cpu_percent", c.cpu_percent);
    c.cpu_for = field_number(L, -1, "cpu_for", c.cpu_for);
    c.no_progress = field_number(L, -1, "no_progress", c.no_progress);
    c.fds = field_number(L, -1, "fds", c.fds);
    c.close_wait = static_cast<int64_t>(field_integer(L, -1, "close_wait", 0));
    c.threads = static_cast<int64_t>(field_integer(L, -1, "threads", 0));
    c.rss = static_cast<uint64_t>(field_integer(L, -1, "rss", 0));
    c.rss_growth = static_cast<uint64_t>(field_integer(L, -1, "rss_growth", 0));
  } else if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
    d.checks.every = 0;
  }
  lua_pop(L, 1);

  raw_field(L, idx, "probes");
  if (lua_istable(L, -1)) err = read_probes(L, lua_gettop(L), d.probes);
  lua_pop(L, 1);
  if (!err.empty()) return err;

  if (spec.argv.empty()) return {};
  if (auto e = validate_spec(spec)) return *e;
  return {};
}

int l_declare(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "exec.declare: watches are declared while rules load");
  return guarded(L, [&](Raise&) -> int {
    if (rt.declared_names.contains(name)) {
      lua_pushnil(L);
      lua_pushfstring(L, "watch '%s' is declared twice", name);
      return 2;
    }
    Declaration d;
    d.name = name;
    std::string err = read_spec(L, 2, d);
    if (!err.empty()) {
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      return 2;
    }
    rt.declared_names.insert(d.name);
    rt.decls.push_back(std::move(d));
    lua_pushboolean(L, 1);
    return 1;
  });
}

Unit* unit_or_nil(lua_State* L, int idx) {
  const char* name = luaL_checkstring(L, idx);
  RuntimeState& rt = runtime_of(L);
  if (!rt.host.supervisor) return nullptr;
  return rt.host.supervisor->find(name);
}

int l_info(lua_State* L) {
  Unit* u = unit_or_nil(L, 1);
  if (!u) {
    lua_pushnil(L);
    return 1;
  }
  return guarded(L, [&](Raise&) -> int {
    nlohmann::json j = u->to_json();
    j.update(u->ledger.to_json());
    push_json(L, j);
    return 1;
  });
}

// The restart history and step uses of a watch alone (what the policy
// reads on every exit; info's whole status object is ten times the work).
int l_ledger(lua_State* L) {
  Unit* u = unit_or_nil(L, 1);
  if (!u) {
    lua_pushnil(L);
    return 1;
  }
  return guarded(L, [&](Raise&) -> int {
    push_json(L, u->ledger.to_json());
    return 1;
  });
}

// exec.recent(name, since) -> restarts after `since` (monotonic seconds),
// uptime of the newest run recorded (or nil): what the standing order
// needs, without building a table per start.
int l_recent(lua_State* L) {
  Unit* u = unit_or_nil(L, 1);
  double since = luaL_checknumber(L, 2);
  if (!u) {
    lua_pushnil(L);
    return 1;
  }
  lua_Integer n = 0;
  for (const auto& r : u->ledger.history) n += r.mono > since;
  lua_pushinteger(L, n);
  if (u->ledger.history.empty())
    lua_pushnil(L);
  else
    lua_pushnumber(L, u->ledger.history.back().uptime);
  return 2;
}

Unit& live_unit(lua_State* L, const char* what) {
  require_live(L, what);
  Unit* u = unit_or_nil(L, 1);
  if (!u) luaL_error(L, "%s: no watch named '%s'", what, lua_tostring(L, 1));
  return *u;
}

int l_restart_later(lua_State* L) {
  double delay = luaL_checknumber(L, 2);
  Unit& u = live_unit(L, "exec.restart_later");
  if (u.child && !u.child->unconfirmed)  // unconfirmed: the standing order's restart
    return luaL_error(L, "exec.restart_later: watch '%s' has a running process", u.name.c_str());
  runtime_of(L).host.supervisor->restart_later(u, delay);
  return 0;
}

int l_exhaust(lua_State* L) {
  std::optional<double> rearm;
  if (!lua_isnoneornil(L, 2)) rearm = luaL_checknumber(L, 2);
  Unit& u = live_unit(L, "exec.exhaust");
  runtime_of(L).host.supervisor->exhaust(u, rearm);
  return 0;
}

int l_lose(lua_State* L) {
  Unit& u = live_unit(L, "exec.lose");
  runtime_of(L).host.supervisor->lose(u);
  return 0;
}

int l_finish(lua_State* L) {
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  bool ok = lua_toboolean(L, 2);
  std::string why = luaL_optstring(L, 3, "");
  Unit& u = live_unit(L, "exec.finish");
  runtime_of(L).host.supervisor->finish(u, ok, why);
  return 0;
}

int l_members(lua_State* L) {
  Unit* u = unit_or_nil(L, 1);
  lua_newtable(L);
  if (!u) return 1;
  return guarded(L, [&](Raise&) -> int {
    std::vector<std::pair<uint64_t, pid_t>> by_age;
    if (u->m)
      for (const auto& [pid, st] : u->m->members) by_age.emplace_back(st, pid);
    std::sort(by_age.begin(), by_age.end());
    lua_Integer i = 1;
    for (const auto& [st, pid] : by_age) {
      lua_createtable(L, 0, 2);
      lua_pushinteger(L, pid);
      lua_setfield(L, -2, "pid");
      lua_pushinteger(L, static_cast<lua_Integer>(st));
      lua_setfield(L, -2, "start_time");
      lua_rawseti(L, -2, i++);
    }
    return 1;
  });
}

int l_kill(lua_State* L) {
  const char* signame = luaL_optstring(L, 2, "TERM");
  const char* reason = luaL_optstring(L, 3, "killed by the rules");
  Unit& u = live_unit(L, "exec.kill");
  auto sig = parse_signal(signame);
  if (!sig) return luaL_error(L, "exec.kill: unknown signal '%s'", signame);
  RuntimeState& rt = runtime_of(L);
  bool has = u.child.has_value();
  if (has && rt.host.loop) {
    // After the callback: the process the rule saw, or none.
    Supervisor* sup = rt.host.supervisor;
    rt.host.loop->post([sup, n = u.name, pid = u.child->pid, s = *sig, r = std::string(reason)] {
      Unit* unit = sup->find(n);
      if (unit && unit->child && unit->child->pid == pid) sup->kill_process(*unit, s, r);
    });
  }
  lua_pushboolean(L, has);
  return 1;
}

// exec.stop_container(name, id): a counted container watch's member stopped
// through the engine (on_over = "stop_newest"). After the callback, like
// exec.kill; true when `id` is a member now.
int l_stop_container(lua_State* L) {
  Unit& u = live_unit(L, "exec.stop_container");
  std::string id = luaL_checkstring(L, 2);
  RuntimeState& rt = runtime_of(L);
  bool member = u.ct && u.ct->members.count(id) > 0;
  if (member && rt.host.loop) {
    Supervisor* sup = rt.host.supervisor;
    rt.host.loop->post([sup, n = u.name, id] {
      std::string error;
      if (Unit* unit = sup->find(n)) sup->stop_member_container(*unit, id, error);
    });
  }
  lua_pushboolean(L, member);
  return 1;
}

// exec.probe_answer(name, index, token, ok [, reason [, evidence]]): the
// answer to a rule probe's check (entry.probe). Taken after the current
// callback, so the rules are never re-entered from inside one.
int l_probe_answer(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  lua_Integer index = luaL_checkinteger(L, 2);
  lua_Integer token = luaL_checkinteger(L, 3);
  bool ok = lua_toboolean(L, 4);
  const char* reason = luaL_optstring(L, 5, "the check failed");
  const char* evidence = luaL_optstring(L, 6, "");
  require_live(L, "exec.probe_answer");
  RuntimeState& rt = runtime_of(L);
  if (rt.host.loop && rt.host.supervisor && index >= 1 && token > 0) {
    ProbeResult r;
    r.ok = ok;
    if (!ok) r.reason = reason;
    r.excerpt = std::string(evidence).substr(0, 512);
    Supervisor* sup = rt.host.supervisor;
    rt.host.loop->post([sup, n = std::string(name), i = static_cast<size_t>(index - 1),
                        t = static_cast<uint64_t>(token), r] {
      if (Unit* u = sup->find(n)) sup->probe_answer(*u, i, t, r);
    });
  }
  return 0;
}

int l_set_count(lua_State* L) {
  lua_Integer min = luaL_checkinteger(L, 2);
  lua_Integer max = luaL_checkinteger(L, 3);
  Unit& u = live_unit(L, "exec.set_count");
  RuntimeState& rt = runtime_of(L);
  if (!rt.host.loop) return 0;
  // After the callback: a change of limits asks the rules again (entry.count).
  Supervisor* sup = rt.host.supervisor;
  CountLimits limits{min, max};
  if (u.m && u.m->count) limits.hold = u.m->count->hold;  // only the limits change
  rt.host.loop->post([sup, n = u.name, limits] {
    if (Unit* unit = sup->find(n)) sup->set_count_limits(*unit, limits);
  });
  return 0;
}

const char* const kRunKeys[] = {"timeout", "env", "on_exit", nullptr};

// Stack: [argv, opts?] -> [pid] | [nil, err].
int l_run(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  require_live(L, "exec.run");
  RuntimeState& rt = runtime_of(L);
  int opts = lua_istable(L, 2) ? copy_keys(L, 2, kRunKeys) : 0;
  return guarded(L, [&](Raise&) -> int {
    double timeout = opts ? field_number(L, opts, "timeout", 60) : 60;
    std::string err;
    std::vector<std::string> argv = string_list(L, 1, "command", err);
    std::vector<std::pair<std::string, std::string>> env;
    int cb_ref = LUA_NOREF;
    if (opts) {
      if (std::string e = field_string_pairs(L, opts, "env", env); !e.empty() && err.empty())
        err = "exec.run: " + e;
    }
    if (err.empty() && !rt.host.supervisor) err = "no supervisor";
    std::optional<pid_t> started;
    if (err.empty()) {
      if (opts) {
        raw_field(L, opts, "on_exit");
        if (lua_isfunction(L, -1))
          cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        else
          lua_pop(L, 1);
      }
      std::weak_ptr<int> alive = rt.alive;
      RuntimeState* rtp = &rt;
      Supervisor::CommandDone done;
      if (cb_ref != LUA_NOREF)
        done = [alive, rtp, cb_ref](const ExitStatus& st, bool) {
          if (alive.expired()) return;
          // From the loop, after the reaper's callback has returned.
          enqueue_delivery(*rtp, Delivery{"exec.run on_exit",
                                          cb_ref,
                                          true,
                                          [st](lua_State* Ls) {
                                            if (st.signal) {
                                              lua_pushnil(Ls);
                                              lua_pushstring(Ls, signal_name(st.signal).c_str());
                                            } else {
                                              lua_pushinteger(Ls, st.code);
                                              lua_pushnil(Ls);
                                            }
                                            return 2;
                                          },
                                          {}});
        };
      started = rt.host.supervisor->run_command(argv, env, timeout, std::move(done), err);
    }
    if (!started) {
      if (cb_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      return 2;
    }
    lua_pushinteger(L, *started);
    return 1;
  });
}

// exec.order(name, after, settle, group): the watch's dependencies, set by
// the rules once every file is loaded (groups are known then).
int l_order(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  double settle = luaL_optnumber(L, 3, 0);
  const char* group = luaL_optstring(L, 4, "");
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "exec.order: dependencies are declared while rules load");
  return guarded(L, [&](Raise& raise) -> int {
    std::string err;
    std::vector<std::string> after = string_list(L, 2, "after", err);
    if (!err.empty()) return raise("exec.order: %s", err.c_str());
    for (auto& d : rt.decls) {
      if (d.name != name) continue;
      d.after = std::move(after);
      d.settle = settle;
      d.group = group;
      return 0;
    }
    return raise("exec.order: no watch named '%s'", name);
  });
}

int l_declare_group(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "exec.declare_group: groups are declared while rules load");
  return guarded(L, [&](Raise&) -> int {
    std::string err;
    GroupDecl g;
    g.name = name;
    g.where = field_string(L, 2, "where");
    g.strategy = field_string(L, 2, "strategy", "one_for_one");
    g.parent = field_string(L, 2, "parent");
    g.description = field_string(L, 2, "description");
    raw_field(L, 2, "clustered");
    g.clustered = lua_toboolean(L, -1);
    lua_pop(L, 1);
    raw_field(L, 2, "members");
    g.members = string_list(L, -1, "members", err);
    lua_pop(L, 1);
    raw_field(L, 2, "units");
    if (err.empty()) g.units = string_list(L, -1, "units", err);
    lua_pop(L, 1);
    for (const auto& other : rt.groups)
      if (other.name == g.name) err = "group '" + g.name + "' is declared twice";
    if (!err.empty()) {
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      return 2;
    }
    rt.groups.push_back(std::move(g));
    lua_pushboolean(L, 1);
    return 1;
  });
}

Group* group_or_nil(lua_State* L, int idx) {
  const char* name = luaL_checkstring(L, idx);
  RuntimeState& rt = runtime_of(L);
  return rt.host.supervisor ? rt.host.supervisor->find_group(name) : nullptr;
}

int l_group_info(lua_State* L) {
  Group* g = group_or_nil(L, 1);
  if (!g) {
    lua_pushnil(L);
    return 1;
  }
  return guarded(L, [&](Raise&) -> int {
    nlohmann::json j = runtime_of(L).host.supervisor->group_json(*g);
    j.update(g->ledger.to_json());
    j["exhausted"] = g->exhausted;
    push_json(L, j);
    return 1;
  });
}

// The watch or group named at idx (live), or an error.
Ledger& owner_ledger(lua_State* L, int idx, const char* what) {
  require_live(L, what);
  RuntimeState& rt = runtime_of(L);
  const char* name = luaL_checkstring(L, idx);
  if (rt.host.supervisor) {
    if (Unit* u = rt.host.supervisor->find(name)) return u->ledger;
    if (Group* g = rt.host.supervisor->find_group(name)) return g->ledger;
  }
  luaL_error(L, "%s: no watch or group named '%s'", what, name);
  std::abort();  // not reached: luaL_error does not return
}

int l_restart_set(lua_State* L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  double delay = luaL_checknumber(L, 3);
  const char* reason = luaL_optstring(L, 5, "restart in dependency order");
  require_live(L, "exec.restart_set");
  Supervisor* sup = runtime_of(L).host.supervisor;
  Unit* cause = lua_isnoneornil(L, 1) ? nullptr : unit_or_nil(L, 1);
  if (!lua_isnoneornil(L, 1) && !cause)
    return luaL_error(L, "exec.restart_set: no watch named '%s'", lua_tostring(L, 1));
  Group* group = lua_isnoneornil(L, 4) ? nullptr : group_or_nil(L, 4);
  if (!lua_isnoneornil(L, 4) && !group)
    return luaL_error(L, "exec.restart_set: no group named '%s'", lua_tostring(L, 4));
  return guarded(L, [&](Raise& raise) -> int {
    std::string err;
    std::vector<std::string> names = string_list(L, 2, "names", err);
    if (err.empty())
      for (const auto& n : names)
        if (!sup->find(n)) err = "no watch named '" + n + "'";
    if (!err.empty()) return raise("exec.restart_set: %s", err.c_str());
    sup->restart_set(cause, names, delay, group, reason);
    return 0;
  });
}

int l_exhaust_group(lua_State* L) {
  std::optional<double> rearm;
  if (!lua_isnoneornil(L, 2)) rearm = luaL_checknumber(L, 2);
  require_live(L, "exec.exhaust_group");
  Group* g = group_or_nil(L, 1);
  if (!g) return luaL_error(L, "exec.exhaust_group: no group named '%s'", lua_tostring(L, 1));
  Unit* cause = lua_isnoneornil(L, 3) ? nullptr : unit_or_nil(L, 3);
  runtime_of(L).host.supervisor->exhaust_group(*g, rearm, cause);
  return 0;
}

int l_step(lua_State* L) {
  const char* key = luaL_checkstring(L, 2);
  double uptime = luaL_optnumber(L, 3, 0);
  Ledger& ledger = owner_ledger(L, 1, "exec.step");
  return guarded(L, [&](Raise&) -> int {
    ledger.add(ledger.steps[std::string(key)], mono_seconds(MonoClock::now()), uptime);
    return 0;
  });
}

int l_explain(lua_State* L) {
  luaL_checktype(L, 2, LUA_TTABLE);
  Ledger& ledger = owner_ledger(L, 1, "exec.explain");
  return guarded(L, [&](Raise&) -> int {
    nlohmann::json j = to_json(L, 2);
    j["at"] = rfc3339(wall_seconds());
    ledger.decision = std::move(j);
    return 0;
  });
}

// The options table at idx (stdlib/vigil/watch.lua normalizes it).
std::string read_dump_options(lua_State* L, int idx, DumpOptions& o) {
  if (!lua_istable(L, idx)) return {};
  raw_field(L, idx, "core");
  o.core = lua_toboolean(L, -1);
  raw_field(L, idx, "environ");
  o.environ = lua_toboolean(L, -1);
  lua_pop(L, 2);
  o.max_bytes =
      static_cast<uint64_t>(field_integer(L, idx, "max_size", static_cast<int64_t>(o.max_bytes)));
  o.keep = static_cast<int>(field_integer(L, idx, "keep", o.keep));
  o.lines = static_cast<int>(field_integer(L, idx, "lines", o.lines));
  o.command_timeout = field_number(L, idx, "timeout", o.command_timeout);
  raw_field(L, idx, "extra");
  std::string err;
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, t));
    for (lua_Integer i = 1; i <= n && err.empty(); ++i) {
      lua_rawgeti(L, t, i);
      DumpItem item;
      std::string where = "extra[" + std::to_string(i) + "]";
      if (!lua_istable(L, -1)) {
        err = where + ": expected { name = ..., file = ... } or { name = ..., command = ... }";
      } else {
        item.name = field_string(L, -1, "name");
        item.file = field_string(L, -1, "file");
        raw_field(L, -1, "command");
        item.command = string_list(L, -1, "command", err);
        lua_pop(L, 1);
        if (err.empty() &&
            (item.name.empty() || item.name.find('/') != std::string::npos || item.name[0] == '.'))
          err = where + ".name: a plain file name is required";
        if (err.empty() && item.file.empty() == item.command.empty())
          err = where + ": one of file or command";
        if (err.empty()) o.extra.push_back(std::move(item));
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return err;
}

const char* const kDumpKeys[] = {"core",  "environ", "max_size", "keep",
                                 "lines", "timeout", "extra",    nullptr};

int l_dump(lua_State* L) {
  require_live(L, "exec.dump");
  Unit* u = unit_or_nil(L, 1);
  if (!u) return luaL_error(L, "exec.dump: no watch named '%s'", lua_tostring(L, 1));
  int opts = lua_istable(L, 3) ? copy_keys(L, 3, kDumpKeys) : 0;
  return guarded(L, [&](Raise&) -> int {
    std::string err;
    std::optional<std::string> dir;
    nlohmann::json trigger = lua_istable(L, 2) ? to_json(L, 2) : nlohmann::json::object();
    DumpOptions o;
    if (opts) err = read_dump_options(L, opts, o);
    if (err.empty()) dir = runtime_of(L).host.supervisor->dump(*u, trigger, o, err);
    if (!dir) {
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      return 2;
    }
    lua_pushstring(L, dir->c_str());
    return 1;
  });
}

const luaL_Reg kExecFns[] = {{"order", l_order},
                             {"dump", l_dump},
                             {"declare_group", l_declare_group},
                             {"group_info", l_group_info},
                             {"restart_set", l_restart_set},
                             {"exhaust_group", l_exhaust_group},
                             {"step", l_step},
                             {"explain", l_explain},
                             {"declare", l_declare},
                             {"info", l_info},
                             {"ledger", l_ledger},
                             {"recent", l_recent},
                             {"members", l_members},
                             {"restart_later", l_restart_later},
                             {"exhaust", l_exhaust},
                             {"lose", l_lose},
                             {"finish", l_finish},
                             {"kill", l_kill},
                             {"stop_container", l_stop_container},
                             {"set_count", l_set_count},
                             {"run", l_run},
                             {"probe_answer", l_probe_answer},
                             {nullptr, nullptr}};

}  // namespace

int luaopen_vigil_exec(lua_State* L) {
  luaL_newlib(L, kExecFns);
  return 1;
}

}  // namespace vigil

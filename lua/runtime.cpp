#include "lua/runtime.hpp"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

// Hard cap on memory: a rule cannot grow the daemon without bound.
void* limited_alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* a = static_cast<Allocator*>(ud);
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    a->used -= old;
    return nullptr;
  }
  size_t limit = a->guards > 0 ? a->limit + a->reserve : a->limit;
  if (nsize > old && a->used - old + nsize > limit) return nullptr;
  void* p = realloc(ptr, nsize);
  if (p) a->used = a->used - old + nsize;
  return p;
}

constexpr int kStrictMask = LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET;

// "file:line" of the innermost Lua frame (a hook's level 0 may be a C
// function being called).
std::string innermost_lua_line(lua_State* L) {
  lua_Debug ar;
  for (int level = 0; lua_getstack(L, level, &ar); ++level)
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline >= 0)
      return std::string(ar.short_src) + ":" + std::to_string(ar.currentline);
  return "?";
}

// Marks the budget expired (the first time: records where) and makes the
// running thread strict.
void expire(RuntimeState& rt, lua_State* L) {
  Budget& b = rt.budget;
  if (!b.expired) {
    b.expired = true;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: rule budget exceeded (ran over %.0f ms)",
             innermost_lua_line(L).c_str(), b.seconds * 1000);
    b.message = msg;
  }
  budget_strict(L);
}

[[noreturn]] void raise_budget(RuntimeState& rt, lua_State* L) {
  lua_pushstring(L, rt.budget.message.c_str());
  lua_error(L);
  abort();  // not reached: lua_error does not return
}

// The deadline timer. One signal for every runtime; the handler touches
// only the runtime armed on its own thread, and only through lua_sethook,
// which Lua documents as safe to call from a signal handler.
thread_local RuntimeState* t_armed = nullptr;

int deadline_signal() {
  return SIGRTMIN + 5;
}

void on_deadline_signal(int, siginfo_t* si, void*) {
  RuntimeState* rt = t_armed;
  if (!rt || si->si_value.sival_ptr != rt || !rt->budget.running) return;
  rt->budget.fired = 1;
  lua_sethook(rt->budget.running, budget_hook, kStrictMask, 1);
}

void create_deadline_timer(RuntimeState& rt) {
  static std::once_flag installed;
  static bool handler_ok = false;
  std::call_once(installed, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_deadline_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    handler_ok = sigaction(deadline_signal(), &sa, nullptr) == 0;
  });
  if (!handler_ok) return;
  sigset_t blocked;
  if (pthread_sigmask(SIG_BLOCK, nullptr, &blocked) != 0 || sigismember(&blocked, deadline_signal()))
    return;
  sigevent sev{};
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev._sigev_un._tid = static_cast<pid_t>(gettid());
  sev.sigev_signo = deadline_signal();
  sev.sigev_value.sival_ptr = &rt;
  if (timer_create(CLOCK_MONOTONIC, &sev, &rt.budget.timer) != 0) return;
  rt.budget.has_timer = true;
  rt.budget.timer_thread = pthread_self();
}

// Arms (seconds > 0) or disarms (0) the deadline timer; true when armed.
bool set_deadline_timer(RuntimeState& rt, double seconds) {
  Budget& b = rt.budget;
  if (!b.has_timer || !pthread_equal(pthread_self(), b.timer_thread)) return false;
  itimerspec its{};
  if (seconds > 0) {
    its.it_value.tv_sec = static_cast<time_t>(seconds);
    its.it_value.tv_nsec = static_cast<long>((seconds - static_cast<double>(its.it_value.tv_sec)) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  }
  return timer_settime(b.timer, 0, &its, nullptr) == 0;
}

void log_failure(RuntimeState& rt, const CallResult& r, const char* what);

}  // namespace

// With the deadline timer there is no hook at all before the deadline:
// in Lua 5.4 any count hook makes every instruction trap (a tight loop
// runs at less than half speed). Without it (timer_create failed, or the
// state runs on another thread than the one that made it), a count hook
// looks at the clock every kBudgetCount instructions.
void budget_normal(lua_State* L) {
  const Budget& b = runtime_of(L).budget;
  if (b.has_timer && pthread_equal(pthread_self(), b.timer_thread))
    lua_sethook(L, nullptr, 0, 0);
  else
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, kBudgetCount);
}

void budget_strict(lua_State* L) {
  if (lua_gethookmask(L) != kStrictMask || lua_gethookcount(L) != 1)
    lua_sethook(L, budget_hook, kStrictMask, 1);
}

// Before the deadline (only without the timer, see budget_normal): looks
// at the clock every kBudgetCount instructions. After it: fires on every instruction, call and return of every thread
// that runs, and raises each time, so neither pcall nor xpcall, a message
// handler, __close, __tostring nor a coroutine gets to run on. The only
// Lua-visible function it lets through is the host's traceback handler.
void budget_hook(lua_State* L, lua_Debug* ar) {
  RuntimeState& rt = runtime_of(L);
  Budget& b = rt.budget;
  if (!b.armed) {
    // Strict left over from a cut (or a late timer signal): back to normal.
    if (lua_gethookmask(L) != LUA_MASKCOUNT) budget_normal(L);
    return;
  }
  if (!b.expired) {
    if (!b.fired && MonoClock::now() < b.deadline) {
      if (lua_gethookmask(L) != LUA_MASKCOUNT) budget_normal(L);
      return;
    }
    expire(rt, L);
  }
  budget_strict(L);
  if (ar->event == LUA_HOOKCALL || ar->event == LUA_HOOKRET) {
    lua_getinfo(L, "f", ar);
    bool handler = lua_tocfunction(L, -1) == traceback_handler;
    lua_pop(L, 1);
    if (handler) return;
  }
  raise_budget(rt, L);
}

void budget_check(lua_State* L) {
  RuntimeState& rt = runtime_of(L);
  Budget& b = rt.budget;
  if (!b.armed) return;
  if (!b.expired && !b.fired && MonoClock::now() < b.deadline) return;
  expire(rt, L);
  raise_budget(rt, L);
}

// Message handler of every protected call. A string or number error is
// used as it is; another object's __tostring runs only while the budget
// has not expired (and then under the hook, like any rule code).
int traceback_handler(lua_State* L) {
  RuntimeState& rt = runtime_of(L);
  const char* msg = lua_tostring(L, 1);  // converts numbers, never a metamethod
  if (!msg) {
    if (!rt.budget.expired && luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
      lua_pop(L, 1);
      msg = luaL_tolstring(L, 1, nullptr);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

namespace {

void log_failure(RuntimeState& rt, const CallResult& r, const char* what) {
  if (!rt.host.log) return;
  Msg m = r.status == CallStatus::Budget ? Msg::RuleBudget : Msg::RuleError;
  rt.host.log->emit(m, "", {{"callback", what}, {"error", r.error}, {"traceback", r.traceback}});
}

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

// Removes what rules must not have: process exit, shelling out, native
// code, bytecode, finalizers, the daemon's stdin; bounds what is left
// (harden_base, install_bounded_patterns).
void sandbox(lua_State* L) {
  lua_pushnil(L);
  lua_setglobal(L, "dofile");
  lua_pushnil(L);
  lua_setglobal(L, "loadfile");

  lua_getglobal(L, "os");
  for (const char* k : {"execute", "exit", "remove", "rename", "setlocale", "tmpname"}) {
    lua_pushnil(L);
    lua_setfield(L, -2, k);
  }
  lua_pop(L, 1);

  lua_getglobal(L, "io");
  for (const char* k : {"popen", "input", "output", "tmpfile", "stdin"}) {
    lua_pushnil(L);
    lua_setfield(L, -2, k);
  }
  lua_pop(L, 1);

  // Bytecode is never loaded, so rules need not make any.
  lua_getglobal(L, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);

  lua_getglobal(L, "package");
  lua_pushnil(L);
  lua_setfield(L, -2, "loadlib");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");
  // Keep the preload searcher; drop the C ones (harden_base replaces the
  // Lua-file one with a text-only one).
  lua_getfield(L, -1, "searchers");
  lua_pushnil(L);
  lua_rawseti(L, -2, 4);
  lua_pushnil(L);
  lua_rawseti(L, -2, 3);
  lua_pop(L, 1);

  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_vigil_log);
  lua_setfield(L, -2, "vigil.log");
  lua_pushcfunction(L, luaopen_vigil_timer);
  lua_setfield(L, -2, "vigil.timer");
  lua_pushcfunction(L, luaopen_vigil_exec);
  lua_setfield(L, -2, "vigil.exec");
  lua_pushcfunction(L, luaopen_vigil_runtime);
  lua_setfield(L, -2, "vigil.runtime");
  lua_pushcfunction(L, luaopen_vigil_proc);
  lua_setfield(L, -2, "vigil.proc");
  lua_pushcfunction(L, luaopen_vigil_probe);
  lua_setfield(L, -2, "vigil.probe");
  lua_pushcfunction(L, luaopen_vigil_cluster);
  lua_setfield(L, -2, "vigil.cluster_host");
  lua_pushcfunction(L, luaopen_vigil_remote);
  lua_setfield(L, -2, "vigil.remote");
  lua_pop(L, 2);

  harden_base(L);
  install_bounded_patterns(L);
  install_bounded_loops(L);
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> rule_files(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  if (!d) return files;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 4 && n.ends_with(".lua") && n[0] != '.') files.push_back(dir + "/" + n);
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

namespace {
// The errors the declaration functions recorded while a file loaded (they
// record and carry on, so that a check shows every error of a file):
// entry.errors() -> { "file:line: message", ... }.
void take_recorded_errors(RuntimeState& rt, std::vector<std::string>& out) {
  DispatchOptions o;
  o.nresults = 1;
  o.results = [&out](lua_State* L) {
    if (!lua_istable(L, -1)) return;
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; ++i) {
      out.emplace_back(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);  // the nil that ended the list
  };
  CallResult r = call_entry(rt, "errors", {}, o);
  if (!r.ok()) out.push_back(r.error);
}
}  // namespace

RuntimeState& runtime_of(lua_State* L) {
  return **static_cast<RuntimeState**>(lua_getextraspace(L));
}

std::string lua_where(lua_State* L, int level) {
  lua_Debug ar;
  if (!lua_getstack(L, level, &ar) || !lua_getinfo(L, "Sl", &ar) || ar.currentline < 0) return "?";
  return std::string(ar.short_src) + ":" + std::to_string(ar.currentline);
}

void require_live(lua_State* L, const char* what) {
  RuntimeState& rt = runtime_of(L);
  if (!rt.live) luaL_error(L, "%s is not allowed while rules are being loaded or checked", what);
  if (rt.formatting) luaL_error(L, "%s is not allowed in a log sink formatter", what);
}

GuardScope::GuardScope(lua_State* L) : alloc(runtime_of(L).alloc) {
  ++alloc.guards;
}

GuardScope::~GuardScope() {
  --alloc.guards;
}

CallResult protected_call(RuntimeState& rt, int nargs, int nresults, const char* what,
                          double budget_seconds, bool report) {
  lua_State* L = rt.L;
  int base = lua_gettop(L) - nargs;  // index of the function
  lua_pushcfunction(L, traceback_handler);
  lua_insert(L, base);
  bool outer = rt.depth == 0;
  Budget& b = rt.budget;
  if (outer) {
    b.armed = true;
    b.expired = false;
    b.message.clear();
    b.seconds = budget_seconds;
    b.deadline = MonoClock::now() + from_seconds(budget_seconds);
    b.running = L;
    b.fired = 0;
    t_armed = &rt;
    if (!set_deadline_timer(rt, budget_seconds))
      lua_sethook(L, budget_hook, LUA_MASKCOUNT, kBudgetCount);  // the clock, then
  }
  ++rt.depth;
  int rc = lua_pcall(L, nargs, nresults, base);
  --rt.depth;
  bool cut = b.expired;
  if (outer) {
    set_deadline_timer(rt, 0);
    t_armed = nullptr;
    b.armed = false;
    b.expired = false;
    b.fired = 0;
    b.running = L;
    budget_normal(L);  // other threads go back to normal at their next hook
  }
  CallResult r;
  if (rc == LUA_OK && outer && cut) {
    // The rule caught the cut and finished before the hook fired again:
    // still a failure.
    lua_pop(L, nresults == LUA_MULTRET ? 0 : nresults);
    r.status = CallStatus::Budget;
    r.error = b.message + " (caught by the rule, cut off anyway)";
    r.traceback = r.error;
  } else if (rc != LUA_OK) {
    std::string full = lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)";
    r.status = cut ? CallStatus::Budget : rc == LUA_ERRMEM ? CallStatus::Memory : CallStatus::Error;
    // A cut may surface as "error in error handling" or as the rule's own
    // error raised while unwinding: the first cut is what happened.
    r.error = cut ? b.message : first_line(full);
    r.traceback = cut && full.find(b.message) == std::string::npos ? b.message + "\n" + full : full;
    lua_pop(L, 1);
  }
  lua_remove(L, base);  // the handler
  if (!r.ok() && report) log_failure(rt, r, what);
  return r;
}

CallResult dispatch(RuntimeState& rt, Callee callee, const char* what,
                    const std::function<int(lua_State*)>& push, const DispatchOptions& o) {
  lua_State* L = rt.L;
  // No C function runs between outermost calls: a guard count left over
  // by a raise through guarded work (outside a dispatch: load) is stale.
  if (rt.depth == 0) rt.alloc.guards = 0;
  int guards = rt.alloc.guards;
  // The stack as the caller left it (a chunk on the stack is the call's).
  int top = lua_gettop(L) - (callee.entry == nullptr && callee.ref == LUA_NOREF ? 1 : 0);
  CallResult r;
  if (!lua_checkstack(L, 8)) {
    r.status = CallStatus::Memory;
    r.error = std::string(what) + ": no room on the Lua stack";
    lua_settop(L, top);
    return r;
  }
  if (callee.entry) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt.entry_ref);
    lua_getfield(L, -1, callee.entry);
    lua_remove(L, -2);
  } else if (callee.ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, callee.ref);
  }
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, top);
    r.status = CallStatus::Error;
    r.error = std::string(what) + ": the callback is gone";
    return r;
  }
  int nargs = push ? push(L) : 0;
  r = protected_call(rt, nargs, o.nresults, what,
                     o.budget < 0 ? rt.options.callback_budget : o.budget, o.report);
  rt.alloc.guards = guards;  // a raise inside guarded work skipped its scope's end
  if (r.ok() && o.nresults > 0) {
    if (o.results) o.results(L);
    lua_pop(L, o.nresults);
  }
  if (int now = lua_gettop(L); now != top) {
    // A host bug, not the rule's: say so once per call and put it right,
    // so that a leak cannot grow the stack call after call.
    if (rt.host.log)
      rt.host.log->emit(Msg::StackImbalance, "",
                        {{"callback", what}, {"expected", top}, {"found", now}});
    lua_settop(L, top);
  }
  if (rt.depth == 0 && !rt.deliveries.empty()) enqueue_delivery(rt, {});
  return r;
}

CallResult call_entry(RuntimeState& rt, const char* name,
                      const std::function<int(lua_State*)>& push, const DispatchOptions& o) {
  if (rt.entry_ref == LUA_NOREF) return {CallStatus::Error, "no rules loaded", {}};
  return dispatch(rt, Callee::entry_fn(name), name, push, o);
}

void enqueue_delivery(RuntimeState& rt, Delivery d) {
  if (d.what) rt.deliveries.push_back(std::move(d));
  if (rt.deliveries.empty() || rt.drain_posted) return;
  if (!rt.host.loop) {
    // A host without a loop (tests, `vigil check`): after the outermost call.
    if (rt.depth == 0) drain_events(rt);
    return;
  }
  rt.drain_posted = true;
  std::weak_ptr<int> alive = rt.alive;
  RuntimeState* rtp = &rt;
  rt.host.loop->post([alive, rtp] {
    if (alive.expired()) return;
    rtp->drain_posted = false;
    drain_events(*rtp);
  });
}

void drain_events(RuntimeState& rt) {
  if (rt.depth > 0) return;
  // This batch only: what its callbacks queue goes to the next task, so a
  // handler that causes events cannot hold the loop.
  std::vector<Delivery> batch;
  batch.swap(rt.deliveries);
  bool no_loop = !rt.host.loop;
  if (no_loop) rt.drain_posted = true;  // deliveries queued meanwhile wait for this loop
  for (auto& d : batch) {
    if (d.wanted && !d.wanted()) continue;
    Callee c = d.ref == LUA_NOREF ? Callee::entry_fn("event") : Callee::registry(d.ref);
    if (c.entry && rt.entry_ref == LUA_NOREF) continue;
    int ref = d.ref;
    bool unref = d.unref;
    dispatch(rt, c, d.what, d.push);
    if (unref) luaL_unref(rt.L, LUA_REGISTRYINDEX, ref);
  }
  if (no_loop) {
    rt.drain_posted = false;
    if (!rt.deliveries.empty()) drain_events(rt);
  }
}

int raw_field(lua_State* L, int idx, const char* key) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, key);
  return lua_rawget(L, idx);
}

std::string field_string(lua_State* L, int idx, const char* key, const std::string& dflt) {
  raw_field(L, idx, key);
  std::string v = lua_isstring(L, -1) ? lua_tostring(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

std::string field_string_pairs(lua_State* L, int idx, const char* key,
                               std::vector<std::pair<std::string, std::string>>& out) {
  idx = lua_absindex(L, idx);
  out.clear();
  raw_field(L, idx, key);
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      // lua_isstring is true of numbers too; lua_tostring would then turn
      // the key in place and confuse lua_next: keys must be strings.
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
        lua_pop(L, 3);
        out.clear();
        return std::string(key) + ": keys and values must be strings";
      }
      out.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    std::sort(out.begin(), out.end());
  }
  lua_pop(L, 1);
  return {};
}

double field_number(lua_State* L, int idx, const char* key, double dflt) {
  raw_field(L, idx, key);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

int copy_keys(lua_State* L, int idx, const char* const* keys) {
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 6, "copy_keys");
  lua_newtable(L);
  int copy = lua_gettop(L);
  for (const char* const* k = keys; *k; ++k) {
    lua_getfield(L, idx, *k);
    if (lua_istable(L, -1)) {
      int inner = lua_gettop(L);
      lua_newtable(L);
      lua_pushnil(L);
      while (lua_next(L, inner)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
      }
      lua_remove(L, inner);
    }
    lua_setfield(L, copy, *k);
  }
  return copy;
}

int64_t field_integer(lua_State* L, int idx, const char* key, int64_t dflt) {
  double v = field_number(L, idx, key, static_cast<double>(dflt));
  // Casting a double outside int64's range (or NaN) is undefined: clamp.
  if (!(v == v)) return dflt;
  if (v >= 9.2e18) return INT64_C(9200000000000000000);
  if (v <= -9.2e18) return -INT64_C(9200000000000000000);
  return static_cast<int64_t>(v);
}

void push_json(lua_State* L, const nlohmann::json& j) {
  luaL_checkstack(L, 4, "json nesting");
  switch (j.type()) {
    case nlohmann::json::value_t::null: lua_pushnil(L); break;
    case nlohmann::json::value_t::boolean: lua_pushboolean(L, j.get<bool>()); break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: lua_pushinteger(L, j.get<lua_Integer>()); break;
    case nlohmann::json::value_t::number_float: lua_pushnumber(L, j.get<double>()); break;
    case nlohmann::json::value_t::string:
      lua_pushlstring(L, j.get_ref<const std::string&>().data(),
                      j.get_ref<const std::string&>().size());
      break;
    case nlohmann::json::value_t::array: {
      lua_createtable(L, static_cast<int>(j.size()), 0);
      lua_Integer i = 1;
      for (const auto& v : j) {
        push_json(L, v);
        lua_rawseti(L, -2, i++);
      }
      break;
    }
    case nlohmann::json::value_t::object: {
      lua_createtable(L, 0, static_cast<int>(j.size()));
      // Plain iterators (no items() proxy, which holds strings): a raise
      // here skips nothing that owns memory.
      for (auto it = j.cbegin(); it != j.cend(); ++it) {
        push_json(L, *it);
        lua_setfield(L, -2, it.key().c_str());
      }
      break;
    }
    default: lua_pushnil(L);
  }
}

nlohmann::json to_json(lua_State* L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return static_cast<bool>(lua_toboolean(L, idx));
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) return static_cast<int64_t>(lua_tointeger(L, idx));
      return lua_tonumber(L, idx);
    case LUA_TSTRING: {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      return std::string(s, n);
    }
    case LUA_TTABLE: {
      if (depth > 16) return "<nested too deep>";
      lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
      if (n > 0) {
        nlohmann::json arr = nlohmann::json::array();
        for (lua_Integer i = 1; i <= n; ++i) {
          lua_rawgeti(L, idx, i);
          arr.push_back(to_json(L, -1, depth + 1));
          lua_pop(L, 1);
        }
        return arr;
      }
      nlohmann::json obj = nlohmann::json::object();
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING) obj[lua_tostring(L, -2)] = to_json(L, -1, depth + 1);
        lua_pop(L, 1);
      }
      return obj;
    }
    case LUA_TFUNCTION: return "<function>";
    default: return nullptr;
  }
}

RuleRuntime::RuleRuntime(RuntimeOptions options, HostContext host)
    : state_(std::make_unique<RuntimeState>()) {
  RuntimeState& rt = *state_;
  rt.options = std::move(options);
  rt.host = host;
  rt.alloc.limit = rt.options.memory_limit;
  // A state is also made off the loop's thread (the daemon's discovery
  // runs its policy on a worker).
  static std::atomic<uint64_t> tokens = 0;
  rt.token = ++tokens;
  rt.L = lua_newstate(limited_alloc, &rt.alloc);
  if (!rt.L) throw std::runtime_error("cannot create Lua state");
  *static_cast<RuntimeState**>(lua_getextraspace(rt.L)) = &rt;
  luaL_openlibs(rt.L);
  // The debug library is for the host only (traceback); rules do not get it.
  lua_pushnil(rt.L);
  lua_setglobal(rt.L, "debug");
  lua_getglobal(rt.L, "package");
  lua_getfield(rt.L, -1, "loaded");
  lua_pushnil(rt.L);
  lua_setfield(rt.L, -2, "debug");
  lua_pop(rt.L, 2);
  sandbox(rt.L);
  rt.budget.running = rt.L;
  create_deadline_timer(rt);
  budget_normal(rt.L);  // coroutines inherit it from the thread that makes them
}

RuleRuntime::~RuleRuntime() {
  RuntimeState& rt = *state_;
  cancel_timers(rt);
  cancel_probes(rt);
  rt.deliveries.clear();
  // Closing runs only the host's C finalizers (rules cannot set a __gc,
  // see harden_base); a dying state acts no more.
  rt.live = false;
  if (rt.L) lua_close(rt.L);
  if (rt.budget.has_timer) timer_delete(rt.budget.timer);
}

LoadResult RuleRuntime::load(const std::string& path) {
  RuntimeState& rt = *state_;
  lua_State* L = rt.L;
  LoadResult result;
  std::string dir = path;
  std::vector<std::string> files;
  if (is_dir(path)) {
    files = rule_files(path);
  } else {
    files = {path};
    size_t slash = path.rfind('/');
    dir = slash == std::string::npos ? "." : path.substr(0, slash);
  }
  result.files = files;

  std::string lib = dir + "/lib";
  rt.lib_dir = lib + "/";
  std::string lua_path = lib + "/?.lua;" + lib + "/?/init.lua;" + rt.options.stdlib_dir +
                         "/?.lua;" + rt.options.stdlib_dir + "/?/init.lua";
  lua_getglobal(L, "package");
  lua_pushstring(L, lua_path.c_str());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);

  // The prelude defines the rule language (watch, vigil.on, ...) and
  // returns the entry table through which the host calls the rules.
  lua_getglobal(L, "require");
  lua_pushstring(L, "vigil.rules");
  CallResult r = protected_call(rt, 1, 1, "require vigil.rules", rt.options.load_budget);
  if (!r.ok()) {
    result.ok = false;
    result.errors.push_back("cannot load the standard rule library from " + rt.options.stdlib_dir +
                            " (see --stdlib / VIGIL_STDLIB): " + r.error);
    return result;
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    result.ok = false;
    result.errors.push_back("vigil.rules did not return its entry table");
    return result;
  }
  // The host keeps a raw copy: rules can reach the module's table
  // (package.loaded) but not this one, so no metamethod of theirs runs
  // when the host looks an entry up outside a protected call.
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, -3)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
  rt.entry_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  if (files.empty() && !is_dir(path)) {
    result.ok = false;
    result.errors.push_back(path + ": no such file or directory");
    return result;
  }
  // vigil run --api-listen: declared before the rule files (one of the
  // two, or a "declared twice" error naming both).
  if (!rt.options.api.is_null()) {
    CallResult ar = call_entry(rt, "preset_api", [&](lua_State* S) {
      push_json(S, rt.options.api);
      return 1;
    });
    take_recorded_errors(rt, result.errors);
    if (!ar.ok()) result.errors.push_back(ar.error);
  }
  for (const auto& file : files) {
    if (load_text_file(L, file.c_str()) != LUA_OK) {
      result.errors.push_back(lua_tostring(L, -1));
      lua_pop(L, 1);
      continue;
    }
    CallResult fr = protected_call(rt, 0, 0, file.c_str(), rt.options.load_budget);
    take_recorded_errors(rt, result.errors);
    if (!fr.ok()) result.errors.push_back(fr.error);
  }
  if (result.errors.empty()) {
    CallResult fr = call_entry(rt, "finish", {});
    take_recorded_errors(rt, result.errors);
    if (!fr.ok()) result.errors.push_back(fr.error);
  }
  result.ok = result.errors.empty();
  // Loading leaves the spec tables handed to the host as garbage.
  lua_gc(L, LUA_GCCOLLECT);
  return result;
}

std::vector<GroupDecl> RuleRuntime::take_groups() {
  return std::move(state_->groups);
}

std::vector<Declaration> RuleRuntime::take_declarations() {
  std::vector<Declaration> out = std::move(state_->decls);
  state_->decls.clear();
  // Only loading declares (watch() refuses once live): the duplicate check
  // has done its work.
  std::set<std::string>().swap(state_->declared_names);
  return out;
}

const std::vector<Declaration>& RuleRuntime::declarations() const {
  return state_->decls;
}

void RuleRuntime::go_live() {
  RuntimeState& rt = *state_;
  rt.live = true;
  arm_pending_timers(rt);
  for (auto& sub : rt.proc_subs) start_subscription(rt, *sub);
}

void RuleRuntime::on_proc_event(const ProcEvent& ev) {
  proc_event(*state_, ev);
}

unsigned RuleRuntime::wants_proc_events() const {
  return proc_events_wanted(*state_);
}

// Policy questions: the host asks and the rules answer synchronously
// (on_exit must decide before it returns). What the rules ask the host for
// besides the decision (kill, set_count) is queued by the module functions;
// events the answer causes are delivered from the loop afterwards.
namespace {
std::function<int(lua_State*)> name_and(const std::string& name, const nlohmann::json& ev) {
  return [&name, &ev](lua_State* L) {
    lua_pushlstring(L, name.data(), name.size());
    push_json(L, ev);
    return 2;
  };
}
}  // namespace

void RuleRuntime::on_exit(Unit& unit, const ExitInfo& exit) {
  RuntimeState& rt = *state_;
  if (rt.entry_ref == LUA_NOREF) return;
  nlohmann::json ev = exit.to_json();
  ev["uptime"] = exit.uptime;
  ev["restarts"] = unit.restarts;
  call_entry(rt, "exit", name_and(unit.name, ev));
}

bool RuleRuntime::arm(Unit& unit) {
  RuntimeState& rt = *state_;
  if (rt.entry_ref == LUA_NOREF || !rt.live) return false;
  bool yes = false;
  DispatchOptions o;
  o.nresults = 1;
  o.results = [&](lua_State* L) { yes = lua_toboolean(L, -1); };
  CallResult r = call_entry(
      rt, "arm",
      [&](lua_State* L) {
        lua_pushlstring(L, unit.name.data(), unit.name.size());
        return 1;
      },
      o);
  return r.ok() && yes;
}

void RuleRuntime::on_count(Unit& unit, const nlohmann::json& ev) {
  RuntimeState& rt = *state_;
  if (rt.entry_ref == LUA_NOREF || !rt.live) return;
  call_entry(rt, "count", name_and(unit.name, ev));
}

void RuleRuntime::on_state(Unit& unit, const nlohmann::json& ev) {
  RuntimeState& rt = *state_;
  if (rt.entry_ref == LUA_NOREF || !rt.live) return;
  call_entry(rt, "state", name_and(unit.name, ev));
}

void RuleRuntime::on_hung(Unit& unit, const nlohmann::json& ev) {
  RuntimeState& rt = *state_;
  if (rt.entry_ref == LUA_NOREF || !rt.live) return;
  call_entry(rt, "hung", name_and(unit.name, ev));
}

void RuleRuntime::run_probe(Unit& unit, size_t index, uint64_t token) {
  RuntimeState& rt = *state_;
  if (rt.entry_ref == LUA_NOREF || !rt.live) return;
  call_entry(rt, "probe", [&](lua_State* L) {
    lua_pushlstring(L, unit.name.data(), unit.name.size());
    lua_pushinteger(L, static_cast<lua_Integer>(index) + 1);
    lua_pushinteger(L, static_cast<lua_Integer>(token));
    return 3;
  });
}

namespace {
// An entry point that answers a text or nil, err (set, reset).
std::optional<std::string> text_answer(RuntimeState& rt, const char* entry,
                                       const std::vector<std::string>& args, std::string& error) {
  std::optional<std::string> out;
  DispatchOptions o;
  o.nresults = 2;
  o.results = [&](lua_State* L) {
    if (lua_isstring(L, -2))
      out = lua_tostring(L, -2);
    else
      error = lua_isstring(L, -1) ? lua_tostring(L, -1) : "rejected";
  };
  CallResult r = call_entry(
      rt, entry,
      [&](lua_State* L) {
        for (const auto& a : args) lua_pushstring(L, a.c_str());
        return static_cast<int>(args.size());
      },
      o);
  if (!r.ok()) error = r.error;
  return r.ok() ? out : std::nullopt;
}
}  // namespace

std::optional<std::string> RuleRuntime::set_param(const std::string& watch, const std::string& key,
                                                  const std::string& value, std::string& error) {
  return text_answer(*state_, "set", {watch, key, value}, error);
}

std::optional<std::string> RuleRuntime::reset_param(const std::string& name, const std::string& key,
                                                    std::string& error) {
  return text_answer(*state_, "reset", {name, key}, error);
}

namespace {
// entry[name](args...) -> the table it returns, as JSON; null when it
// returns something else (or fails).
nlohmann::json table_answer(RuntimeState& rt, const char* name,
                            const std::function<int(lua_State*)>& push = {}) {
  nlohmann::json out;
  DispatchOptions o;
  o.nresults = 1;
  o.results = [&](lua_State* L) {
    if (lua_istable(L, -1)) out = to_json(L, -1);
  };
  call_entry(rt, name, push, o);
  return out;
}
}  // namespace

nlohmann::json RuleRuntime::budget(const std::string& name) {
  return table_answer(*state_, "budget", [&](lua_State* L) {
    lua_pushstring(L, name.c_str());
    return 1;
  });
}

nlohmann::json RuleRuntime::api() { return table_answer(*state_, "api"); }

nlohmann::json RuleRuntime::schema(const std::string& kind) {
  return table_answer(*state_, "schema", [&](lua_State* L) {
    lua_pushstring(L, kind.c_str());
    return 1;
  });
}

nlohmann::json RuleRuntime::docker() { return table_answer(*state_, "docker"); }

nlohmann::json RuleRuntime::discover_schedule() { return table_answer(*state_, "discover"); }

nlohmann::json RuleRuntime::discover_tuning() { return table_answer(*state_, "discover_tuning"); }

nlohmann::json RuleRuntime::peers() {
  nlohmann::json out = table_answer(*state_, "peers");
  return out.is_array() ? out : nlohmann::json::array();  // no peers: an empty table
}

nlohmann::json RuleRuntime::remote_watches() {
  nlohmann::json out = table_answer(*state_, "remotes");
  return out.is_array() ? out : nlohmann::json::array();
}

const std::optional<ClusterConfig>& RuleRuntime::cluster_config() const {
  return state_->cluster.config;
}

void RuleRuntime::set_cluster_hub(ClusterHub* hub) { state_->cluster.hub = hub; }

RuleRuntime::Verdict RuleRuntime::authorize(const nlohmann::json& identity,
                                            const std::string& method, const std::string& path) {
  RuntimeState& rt = *state_;
  Verdict v{false, "vigil.api.authorize did not answer"};
  DispatchOptions o;
  o.nresults = 2;
  o.results = [&](lua_State* L) {
    v.allowed = lua_toboolean(L, -2);
    const char* why = lua_tostring(L, -1);
    v.reason = v.allowed ? "" : (why ? why : "not authorized");
  };
  CallResult r = call_entry(
      rt, "authorize",
      [&](lua_State* L) {
        push_json(L, identity);
        lua_pushlstring(L, method.data(), method.size());
        lua_pushlstring(L, path.data(), path.size());
        return 3;
      },
      o);
  if (!r.ok()) v = {false, "vigil.api.authorize: " + r.error};
  return v;
}

nlohmann::json event_for_lua(const Event& ev) {
  nlohmann::json j = ev.fields;
  const MessageDef& def = message_def(ev.msg);
  j["id"] = def.id;
  j["event"] = def.name;
  j["severity"] = severity_name(ev.severity);
  j["message"] = ev.text;
  j["time"] = ev.time;
  if (!ev.watch.empty()) j["watch"] = ev.watch;
  return j;
}

std::vector<SinkSpec> RuleRuntime::take_sinks() {
  return std::move(state_->sinks);
}

void RuleRuntime::on_event(const Event& ev) {
  RuntimeState& rt = *state_;
  if (!rt.live || !rt.want_events || rt.entry_ref == LUA_NOREF) return;
  // Rule messages are not fed back to rules: a subscriber that logs would
  // otherwise feed itself forever.
  if (ev.msg == Msg::RuleMessage || ev.msg == Msg::RuleError || ev.msg == Msg::RuleBudget) return;
  // Delivered from the loop once the host callback that emitted it (and
  // the policy's decision it may be waiting for) has returned.
  auto j = std::make_shared<nlohmann::json>(event_for_lua(ev));
  enqueue_delivery(rt, Delivery{"vigil.on handler",
                                LUA_NOREF,
                                false,
                                [j](lua_State* L) {
                                  push_json(L, *j);
                                  return 1;
                                },
                                {}});
}

bool RuleRuntime::run_string(const std::string& code, const std::string& chunkname,
                             std::string& error) {
  RuntimeState& rt = *state_;
  if (luaL_loadbufferx(rt.L, code.data(), code.size(), chunkname.c_str(), "t") != LUA_OK) {
    error = lua_tostring(rt.L, -1);
    lua_pop(rt.L, 1);
    return false;
  }
  CallResult r = dispatch(rt, Callee::on_stack(), chunkname.c_str());
  error = r.error;
  return r.ok();
}

void RuleRuntime::collect() {
  if (state_ && state_->L) lua_gc(state_->L, LUA_GCCOLLECT);
}

size_t RuleRuntime::memory_used() const {
  return state_->alloc.used;
}

int RuleRuntime::stack_top() const {
  return lua_gettop(state_->L);
}

// vigil.runtime: what the stdlib needs from the runtime itself.
namespace {

// where(level) -> "file:line" of the caller `level` frames above the caller.
// Frames in the stdlib or in the rules' lib/ are skipped, so a watch
// declared through a shared helper points at the rule file that called it.
// A second result names the innermost skipped frame in lib/ (the
// library line that made the declaration), for error messages.
int l_where(lua_State* L) {
  int level = static_cast<int>(luaL_optinteger(L, 1, 1)) + 1;
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise&) -> int {
    lua_Debug ar;
    std::string via;
    for (int l = level; lua_getstack(L, l, &ar); ++l) {
      if (!lua_getinfo(L, "Sl", &ar) || ar.currentline < 0 || ar.source[0] != '@') continue;
      std::string_view src(ar.source + 1);
      bool in_lib = !rt.lib_dir.empty() && src.starts_with(rt.lib_dir);
      if (in_lib && via.empty())
        via = std::string(ar.short_src) + ":" + std::to_string(ar.currentline);
      if (in_lib || (!rt.options.stdlib_dir.empty() && src.starts_with(rt.options.stdlib_dir)))
        continue;
      lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
      if (via.empty()) return 1;
      lua_pushlstring(L, via.data(), via.size());
      return 2;
    }
    std::string w = lua_where(L, level);
    lua_pushstring(L, w.c_str());
    return 1;
  });
}

// live() -> boolean: false while loading or checking.
int l_live(lua_State* L) {
  lua_pushboolean(L, runtime_of(L).live);
  return 1;
}

// want_events(): a subscriber exists; the host starts delivering events.
int l_want_events(lua_State* L) {
  runtime_of(L).want_events = true;
  return 0;
}

// now() -> monotonic seconds (the clock restart history uses).
int l_now(lua_State* L) {
  lua_pushnumber(L, mono_seconds(MonoClock::now()));
  return 1;
}

const luaL_Reg kRuntimeFns[] = {{"where", l_where},
                                {"live", l_live},
                                {"want_events", l_want_events},
                                {"now", l_now},
                                {nullptr, nullptr}};
}  // namespace

int luaopen_vigil_runtime(lua_State* L) {
  luaL_newlib(L, kRuntimeFns);
  return 1;
}

}  // namespace vigil

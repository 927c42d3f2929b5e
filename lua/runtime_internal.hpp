// Internals of the rule runtime shared by the lua_*.cpp module files. Only
// files under lua/ include this (and lua.h).
//
// Keeping C++ safe from Lua's longjmp (HAProxy's hlua.c is the model): a
// lua_CFunction checks its arguments first (luaL_check* may raise), does
// its C++ work inside guarded() (below), which builds the error message,
// lets every C++ object of the work die, and raises last. Lua API calls
// inside guarded work run with the memory reserve (no cap error there).
#pragma once

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

#include <cstdarg>
#include <cstdio>
#include <functional>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "host/log/sink.hpp"
#include "host/loop/event_loop.hpp"
#include "lua/runtime.hpp"

namespace vigil {

struct Allocator {
  size_t used = 0;
  size_t limit = 0;
  // Inside guarded() C++ work the cap is raised by `reserve`, so that a
  // push of a result cannot raise (longjmp) over the work's C++ objects;
  // the next allocation outside finds the state over its cap.
  int guards = 0;
  size_t reserve = 16u << 20;
};

// The time budget of the outermost protected call. A POSIX timer fires at
// the deadline and its signal switches the running thread's hook to
// strict, so before the deadline rule code runs with no hook at all, and
// a loop of long C calls is cut within one C call. (Without the timer, a
// count hook looks at the clock every kBudgetCount instructions.) Once
// expired the hook is strict (every instruction, call and return) on
// every thread that runs, and raises until the outermost protected call
// returns.
struct Budget {
  bool armed = false;
  bool expired = false;
  MonoTime deadline;
  double seconds = 0;
  std::string message;      // the first cut, with the rule's file:line
  lua_State* running = nullptr;  // the thread running now (main or a coroutine)
  // Set by the timer's signal handler: the deadline has passed. Lets the
  // coroutine wrappers make the right thread strict when the signal came
  // while `running` was being switched.
  volatile sig_atomic_t fired = 0;
  bool has_timer = false;        // the deadline timer exists (see arm_deadline_timer)
  timer_t timer{};
  pthread_t timer_thread{};  // the thread the timer signals
};

constexpr int kBudgetCount = 1000;

enum class CallStatus { Ok, Error, Budget, Memory };

struct CallResult {
  CallStatus status = CallStatus::Ok;
  std::string error;  // first line: "file:line: message"
  std::string traceback;
  bool ok() const { return status == CallStatus::Ok; }
};

// A vigil.timer timer. Lua holds only a handle (userdata: serial and
// the state's token), so a rule cannot forge or alter someone else's.
struct RuleTimer {
  double delay;
  double interval;      // 0 = one-shot
  int ref;              // registry ref of the callback
  TimerId loop_id = 0;  // 0: not armed yet (created while loading)
};

// A vigil.probe check in flight, by the serial its handle carries.
struct RuleProbe {
  ProbeId id = 0;     // in the engine; 0: none (no engine, or done)
  int ref;            // registry ref of the callback
  bool done = false;  // the result is queued for delivery
};

// A callback the host owes the rules (an event for vigil.on, a
// vigil.proc.on match, a probe result, an exec.run exit), queued and
// delivered from the loop after the host callback that produced it has
// returned: handlers see the host after its decision, never in the middle
// of one, and never re-enter the host from inside it.
struct Delivery {
  const char* what;                     // names the callback in VGL0005/VGL0006
  int ref;                              // registry ref of the function; LUA_NOREF: entry.event
  bool unref;                           // a one-shot: the ref is released once called (not when
                                        // unwanted: whoever cancelled it released it)
  std::function<int(lua_State*)> push;  // pushes the arguments, returns how many
  std::function<bool()> wanted;         // empty or true: still wanted (not cancelled)
};

// A vigil.proc.on subscription.
struct ProcSubscription {
  enum class Kind { Spawn, Exec, Exit };
  Kind kind;
  Matcher match;
  int ref;  // registry ref of the function
  // Exit: processes that matched while alive (pid -> name).
  std::unordered_map<pid_t, std::string> members;
};

struct RuntimeState {
  lua_State* L = nullptr;
  RuntimeOptions options;
  std::string lib_dir;  // the rules' lib/, with a trailing slash
  HostContext host;
  Allocator alloc;
  Budget budget;
  bool live = false;
  int entry_ref = LUA_NOREF;
  int depth = 0;  // nesting of protected calls
  bool want_events = false;
  bool formatting = false;   // inside a log sink formatter: no actions, no events
  uint64_t token = 0;        // unique per state: handles of another state are refused
  uint64_t next_serial = 1;  // timer and probe handle serials
  std::vector<Declaration> decls;
  std::vector<GroupDecl> groups;
  struct {
    // cluster { ... } (checked by stdlib/vigil/cluster.lua): an adapter,
    // "command" when the block gives only a failover command; nullopt
    // when the rules declare none.
    std::optional<ClusterConfig> config;
    std::vector<std::string> reboot;  // argv; empty: none configured
    ClusterHub* hub = nullptr;        // the daemon's, once live (null: none)
  } cluster;
  std::set<std::string> declared_names;
  std::vector<Delivery> deliveries;  // queued for the loop (drain_events)
  bool drain_posted = false;         // one drain task per batch
  std::vector<std::shared_ptr<ProcSubscription>> proc_subs;
  std::unordered_map<uint64_t, RuleTimer> timers;         // by handle serial
  std::unordered_map<uint64_t, RuleProbe> probes;         // by handle serial
  std::shared_ptr<int> alive = std::make_shared<int>(0);  // expires with the state
  std::vector<SinkSpec> sinks;                            // vigil.log.sink, while loading
};

RuntimeState& runtime_of(lua_State* L);

// The one path from C++ into Lua: function and nargs on the stack; arms the
// budget (seconds), installs a traceback handler, pcalls, logs failures as
// VGL0005/VGL0006 naming `what`, and leaves nresults (or nothing on error).
// `report` false: the caller reports the failure itself (a sink
// formatter, whose failure must not become an event per event).
CallResult protected_call(RuntimeState& rt, int nargs, int nresults, const char* what,
                          double budget_seconds, bool report = true);

// An event as rules see it (vigil.on handlers, sink formatters): its
// fields plus id, event, severity, message, time, watch.
nlohmann::json event_for_lua(const Event& ev);

// What dispatch() calls: a function of the entry table, a registry ref,
// or the function already on top of the stack (a chunk).
struct Callee {
  const char* entry = nullptr;
  int ref = LUA_NOREF;
  static Callee entry_fn(const char* name) { return {name, LUA_NOREF}; }
  static Callee registry(int ref) { return {nullptr, ref}; }
  static Callee on_stack() { return {nullptr, LUA_NOREF}; }
};

struct DispatchOptions {
  int nresults = 0;
  // Reads the results (at -nresults..-1) when the call succeeded; dispatch
  // pops them afterwards.
  std::function<void(lua_State*)> results;
  double budget = -1;  // seconds; < 0: the state's callback budget
  bool report = true;  // false: the caller reports a failure itself
};

// The one path from the host into a rule callback (the only caller of
// protected_call outside load): pushes the callee and its arguments (`push`
// returns how many it pushed), runs it protected, hands the results to
// `o.results`, checks that the stack is as it was before (a mismatch is
// logged as VGL0045 and repaired), and, once the outermost call returns,
// schedules what the callback queued for delivery from the loop.
CallResult dispatch(RuntimeState& rt, Callee callee, const char* what,
                    const std::function<int(lua_State*)>& push = {}, const DispatchOptions& o = {});

// entry[name](args...): a policy question (exit, count, state, hung, probe,
// set), answered synchronously.
CallResult call_entry(RuntimeState& rt, const char* name,
                      const std::function<int(lua_State*)>& push, const DispatchOptions& o = {});

// Queues a callback for delivery from the loop (one drain task per batch;
// without a loop, a test host, at once when no rule is running).
void enqueue_delivery(RuntimeState& rt, Delivery d);
// Delivers the batch queued so far.
void drain_events(RuntimeState& rt);

// The idiom "check arguments first, build the error message, destroy C++
// objects, raise last", for the C++ work of a lua_CFunction:
//   return guarded(L, [&](Raise& raise) -> int {
//     std::vector<std::string> argv = ...;           // C++ objects live here
//     if (bad) return raise("exec.run: %s", err.c_str());
//     lua_pushinteger(L, pid);                      // results
//     return 1;
//   });
// raise() formats the message into a buffer that is no C++ object and
// returns -1; guarded() raises it (with the caller's file:line, as
// luaL_error does) only after the work's scope, and every object in it, is
// gone. A C++ exception escaping the work becomes the same kind of error.
// While the work runs, the memory cap has its reserve (see Allocator), so
// pushing results does not raise either.
class Raise {
 public:
  explicit Raise(bool where = true) : where_(where) {}
  [[gnu::format(printf, 2, 3)]] int operator()(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text_, sizeof text_, fmt, ap);
    va_end(ap);
    raised_ = true;
    return -1;
  }
  // The message already names its place (no file:line prefix added).
  [[gnu::format(printf, 2, 3)]] int plain(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text_, sizeof text_, fmt, ap);
    va_end(ap);
    raised_ = true;
    where_ = false;
    return -1;
  }
  bool raised() const { return raised_; }
  const char* text() const { return text_; }
  bool where() const { return where_; }

 private:
  char text_[1024] = {};
  bool raised_ = false;
  bool where_ = true;
};

struct GuardScope {
  explicit GuardScope(lua_State* L);
  ~GuardScope();
  GuardScope(const GuardScope&) = delete;
  GuardScope& operator=(const GuardScope&) = delete;
  Allocator& alloc;
};

template <class Work>
int guarded(lua_State* L, Work&& work) {
  Raise raise;
  int n = -1;
  {
    GuardScope scope(L);
    try {
      n = work(raise);
    } catch (const std::exception& e) {
      raise("internal error: %s", e.what());
    } catch (...) {
      raise("internal error");
    }
  }
  // Every C++ object of the work is gone: raising is safe now.
  if (raise.raised()) {
    if (raise.where()) return luaL_error(L, "%s", raise.text());
    lua_pushstring(L, raise.text());
    return lua_error(L);
  }
  return n;
}
// The budget's count/call/return hook, and the message handler of every
// protected call (never runs a metamethod once the budget has expired).
void budget_hook(lua_State* L, lua_Debug* ar);
int traceback_handler(lua_State* L);
// Hook modes: normal (count only) before expiry, strict after.
void budget_normal(lua_State* L);
void budget_strict(lua_State* L);
// For C functions that can run long (the pattern functions): raises the
// budget error, naming the Lua caller's file:line, once the budget has run
// out. Cheap: call it every few thousand steps.
void budget_check(lua_State* L);

// lua/sandbox.cpp: the base-library replacements that keep the budget and
// the text-only rule unescapable (setmetatable without __gc, hidden
// userdata metatables, coroutines that follow the budget, text-only load
// and require, io without side effects while not live).
void harden_base(lua_State* L);
// luaL_loadfilex(L, filename, "t"), parsed in pieces with a budget check
// between them: the loader of rule files and of require.
int load_text_file(lua_State* L, const char* filename);
// lua/pattern.cpp: string.find/match/gmatch/gsub with a step-counted
// matcher that calls budget_check.
void install_bounded_patterns(lua_State* L);
// lua/bounded.cpp: string.rep, table.move, insert, remove and sort, whose
// loops a rule sizes, checking the budget as they go.
void install_bounded_loops(lua_State* L);

// Raises a "not allowed while rules are being validated" error when the
// state is not live (or in a log sink formatter). Use at the top of
// functions with side effects, before any C++ object exists.
void require_live(lua_State* L, const char* what);

// "file:line" of the Lua function `level` frames up (1 = caller of the C
// function), or "?".
std::string lua_where(lua_State* L, int level);

// lua_getfield without metamethods (so it cannot raise from a rule's
// __index): pushes t[key], returns its type. The readers of the C++ side
// use it; a rule's own table is first copied with copy_keys.
int raw_field(lua_State* L, int idx, const char* key);

// Fields of the table at idx (raw): the value, or `dflt` when absent or
// of another type.
std::string field_string(lua_State* L, int idx, const char* key, const std::string& dflt = {});
double field_number(lua_State* L, int idx, const char* key, double dflt);
// A table of strings at t[key] (raw), as sorted pairs: "" when absent or
// read, else "KEY: keys and values must be strings" (nothing is kept).
std::string field_string_pairs(lua_State* L, int idx, const char* key,
                               std::vector<std::pair<std::string, std::string>>& out);
// An integer field, clamped to about +-9.2e18 (NaN: dflt), so that no
// value a rule passes converts with overflow.
int64_t field_integer(lua_State* L, int idx, const char* key, int64_t dflt);

// A rule's table at idx, as a plain copy of `keys` (nullptr-terminated)
// pushed on the stack; returns its index. Reading the rule's table may run
// its metamethods (which may raise): call this before any C++ object
// exists, then read the copy inside guarded(). A value that is a table is
// copied too, one level, by raw access.
int copy_keys(lua_State* L, int idx, const char* const* keys);

void push_json(lua_State* L, const nlohmann::json& j);
// Converts the value at idx (tables with 1..n keys become arrays).
nlohmann::json to_json(lua_State* L, int idx, int depth = 0);

int luaopen_vigil_log(lua_State* L);
int luaopen_vigil_timer(lua_State* L);
int luaopen_vigil_exec(lua_State* L);
int luaopen_vigil_runtime(lua_State* L);
int luaopen_vigil_proc(lua_State* L);
int luaopen_vigil_probe(lua_State* L);
int luaopen_vigil_cluster(lua_State* L);
int luaopen_vigil_remote(lua_State* L);

// lua_probe.cpp: an HTTP or TCP check's keys (the vigil.probe and probe
// spec keys) at idx; returns the error naming the key, or "".
std::string read_http_check(lua_State* L, int idx, HttpCheck& c);
std::string read_tcp_check(lua_State* L, int idx, TcpCheck& c);
// Cancels every check of the state (its destruction).
void cancel_probes(RuntimeState& rt);

// lua_proc.cpp: a match table (the keys of a watch's `match`) at idx,
// compiled; returns the error when it is not valid.
std::string read_match_table(lua_State* L, int idx, std::optional<Matcher>& out);
// Starts a subscription once its state is live (exit: finds the members).
void start_subscription(RuntimeState& rt, ProcSubscription& sub);
// Matches a kernel process event against the state's subscriptions.
void proc_event(RuntimeState& rt, const ProcEvent& ev);
// What the state's subscriptions need to hear (ProcEvents bits).
unsigned proc_events_wanted(const RuntimeState& rt);

// lua_timer.cpp: arms the timers created while loading (go_live), and
// cancels every timer of the state (its destruction).
void arm_pending_timers(RuntimeState& rt);
void cancel_timers(RuntimeState& rt);

// A handle given to Lua for a timer or a probe check: a full userdata
// holding its serial and the state's token, with a protected metatable.
struct Handle {
  uint64_t serial;
  uint64_t token;
};
// Pushes a new handle with the metatable `meta`.
void push_handle(lua_State* L, const char* meta, uint64_t serial);
// The handle at idx: raises (argument error) when it is not a `meta`
// handle; nullptr when it is one of another state. Call before any C++
// object exists.
Handle* check_handle(lua_State* L, int idx, const char* meta);

}  // namespace vigil

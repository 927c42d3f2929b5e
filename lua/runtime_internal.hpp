// Internals of the rule runtime shared by the lua_*.cpp module files. Only
// files under lua/ include this (and lua.h).
//
// Keeping C++ safe from Lua's longjmp: a lua_CFunction checks its arguments
// first (luaL_check* may raise), does its C++ work inside a scope that
// catches every exception and leaves an error message on the Lua stack, and
// raises only after that scope has closed, so no destructor is skipped.
#pragma once

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

#include <pthread.h>
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
};

// The time budget of the outermost protected call. Before the deadline a
// count hook looks at the clock every kBudgetCount instructions (the only
// cost a normal callback pays); a POSIX timer also fires at the deadline
// and switches the running thread's hook to strict, so a loop of long C
// calls is cut within one C call. Once expired the hook is strict (every
// instruction, call and return) on every thread that runs, and raises
// until the outermost protected call returns.
struct Budget {
  bool armed = false;
  bool expired = false;
  MonoTime deadline;
  double seconds = 0;
  std::string message;      // the first cut, with the rule's file:line
  lua_State* running = nullptr;  // the thread running now (main or a coroutine)
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

struct PendingTimer {
  double delay;
  double interval;  // 0 = one-shot
  int ref;          // registry ref of the callback
  int handle_ref;   // registry ref of the handle table
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
  std::vector<Declaration> decls;
  std::vector<GroupDecl> groups;
  struct {
    std::vector<std::string> failover, reboot;  // argv; empty: none configured
    double failover_timeout = 60;
  } cluster;
  std::set<std::string> declared_names;
  std::vector<nlohmann::json> queued_events;
  std::vector<std::shared_ptr<ProcSubscription>> proc_subs;
  std::vector<std::pair<int, nlohmann::json>> proc_calls;  // queued subscription calls
  std::set<TimerId> timers;                                // armed timers owned by this state
  std::vector<PendingTimer> pending_timers;                // created while loading
  std::shared_ptr<int> alive = std::make_shared<int>(0);   // expires with the state
  std::set<ProbeId> probes;                                // vigil.probe checks in flight
  std::vector<std::pair<int, ProbeResult>> probe_calls;    // their results, queued
  std::vector<SinkSpec> sinks;                             // vigil.log.sink, while loading
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

// Calls entry[name](args...) (args already pushed); results are popped.
CallResult call_entry(RuntimeState& rt, const char* name, int nargs, int nresults);

// Delivers events queued during a callback (outermost call only).
void drain_events(RuntimeState& rt);

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
// lua/pattern.cpp: string.find/match/gmatch/gsub with a step-counted
// matcher that calls budget_check.
void install_bounded_patterns(lua_State* L);

// Raises a "not allowed while rules are being validated" error when the
// state is not live. Use at the top of functions with side effects.
void require_live(lua_State* L, const char* what);

// "file:line" of the Lua function `level` frames up (1 = caller of the C
// function), or "?".
std::string lua_where(lua_State* L, int level);

// Fields of the table at idx: the value, or `dflt` when absent or of
// another type.
std::string field_string(lua_State* L, int idx, const char* key, const std::string& dflt = {});
double field_number(lua_State* L, int idx, const char* key, double dflt);

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

// lua_probe.cpp: an HTTP or TCP check's keys (the vigil.probe and probe
// spec keys) at idx; returns the error naming the key, or "".
std::string read_http_check(lua_State* L, int idx, HttpCheck& c);
std::string read_tcp_check(lua_State* L, int idx, TcpCheck& c);
// Calls the functions of finished vigil.probe checks.
void deliver_probe_calls(RuntimeState& rt);

// lua_proc.cpp: a match table (the keys of a watch's `match`) at idx,
// compiled; returns the error when it is not valid.
std::string read_match_table(lua_State* L, int idx, std::optional<Matcher>& out);
// Starts a subscription once its state is live (exit: finds the members).
void start_subscription(RuntimeState& rt, ProcSubscription& sub);
// Matches a kernel process event against the state's subscriptions.
void proc_event(RuntimeState& rt, const ProcEvent& ev);

// Timer support for lua_timer.cpp: arms a pending timer in the live state.
void arm_timer(RuntimeState& rt, const PendingTimer& t);

}  // namespace vigil

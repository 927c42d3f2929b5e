// vigil.timer: timers owned by the rule state that created them; a reload
// cancels them with the old state. Created while rules load, they are armed
// when the state goes live (never, under `vigil check`).
//   vigil.timer.after(seconds, fn) -> handle    one-shot
//   vigil.timer.every(seconds, fn) -> handle    repeating
//   handle:cancel() -> true | nil, err   err when it has fired (one-shot)
//                                        or was cancelled already
//   handle:active() -> boolean           still armed (or waiting to be)
//   tostring(handle)                     "vigil.timer 3 (armed)", ...
//   vigil.timer.now() -> monotonic seconds
// A handle is a userdata (its serial and its state's token) with a
// protected metatable: a rule cannot make one, change one, or reach
// another rule's timer through a table that looks like one. Once its timer
// has fired (one-shot) or been cancelled, or its state was replaced, the
// handle is expired and says so.
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

constexpr const char* kHandleMeta = "vigil.timer.handle";

void arm(RuntimeState& rt, uint64_t serial, RuleTimer& t);

// The loop's timer task: runs the callback, then re-arms (every) or
// expires the handle (after).
void fire(RuntimeState& rt, uint64_t serial) {
  auto it = rt.timers.find(serial);
  if (it == rt.timers.end()) return;  // cancelled meanwhile
  it->second.loop_id = 0;
  int ref = it->second.ref;
  bool repeat = it->second.interval > 0;
  if (!repeat) rt.timers.erase(it);
  dispatch(rt, Callee::registry(ref), "timer");
  if (!repeat) {
    luaL_unref(rt.L, LUA_REGISTRYINDEX, ref);
    return;
  }
  // The callback may have cancelled its own timer.
  it = rt.timers.find(serial);
  if (it != rt.timers.end() && it->second.loop_id == 0) {
    it->second.delay = it->second.interval;
    arm(rt, serial, it->second);
  }
}

void arm(RuntimeState& rt, uint64_t serial, RuleTimer& t) {
  if (!rt.host.loop) return;
  std::weak_ptr<int> alive = rt.alive;
  RuntimeState* rtp = &rt;
  t.loop_id = rt.host.loop->after(from_seconds(t.delay), [alive, rtp, serial] {
    if (!alive.expired()) fire(*rtp, serial);
  });
}

int create(lua_State* L, bool repeat) {
  double seconds = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  // Written so that NaN fails too; the bound is the rules' (100 days, as
  // vigil.duration), far inside what the clocks convert without overflow.
  if (!(seconds >= (repeat ? 0.001 : 0.0) && seconds <= 100.0 * 86400))
    return luaL_error(L, "vigil.timer: %s %f is not between %s and 100 days",
                      repeat ? "interval" : "delay", seconds, repeat ? "1ms" : "0");
  RuntimeState& rt = runtime_of(L);
  if (rt.formatting) return luaL_error(L, "vigil.timer is not allowed in a log sink formatter");
  uint64_t serial = rt.next_serial++;
  push_handle(L, kHandleMeta, serial);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  RuleTimer& t = rt.timers[serial];
  t = RuleTimer{seconds, repeat ? seconds : 0, ref, 0};
  if (rt.live) arm(rt, serial, t);
  return 1;
}

int l_after(lua_State* L) {
  return create(L, false);
}
int l_every(lua_State* L) {
  return create(L, true);
}

// handle:cancel() -> true | nil, err. Stack: [handle] -> [result...].
int l_handle_cancel(lua_State* L) {
  Handle* h = check_handle(L, 1, kHandleMeta);
  RuntimeState& rt = runtime_of(L);
  auto it = h ? rt.timers.find(h->serial) : rt.timers.end();
  if (it == rt.timers.end()) {
    lua_pushnil(L);
    lua_pushfstring(L,
                    "vigil.timer %d: expired (it fired, was cancelled, or the rules were reloaded)",
                    h ? static_cast<int>(h->serial) : 0);
    return 2;
  }
  if (it->second.loop_id && rt.host.loop) rt.host.loop->cancel(it->second.loop_id);
  luaL_unref(L, LUA_REGISTRYINDEX, it->second.ref);
  rt.timers.erase(it);
  lua_pushboolean(L, 1);
  return 1;
}

// handle:active() -> boolean. Stack: [handle] -> [boolean].
int l_handle_active(lua_State* L) {
  Handle* h = check_handle(L, 1, kHandleMeta);
  lua_pushboolean(L, h && runtime_of(L).timers.contains(h->serial));
  return 1;
}

// tostring(handle). Stack: [handle] -> [string].
int l_handle_tostring(lua_State* L) {
  Handle* h = check_handle(L, 1, kHandleMeta);
  RuntimeState& rt = runtime_of(L);
  if (!h) {
    lua_pushstring(L, "vigil.timer (expired: its rules were replaced)");
    return 1;
  }
  auto it = rt.timers.find(h->serial);
  lua_pushfstring(L, "vigil.timer %d (%s)", static_cast<int>(h->serial),
                  it == rt.timers.end() ? "expired"
                  : it->second.loop_id  ? "armed"
                                        : "pending");
  return 1;
}

int l_now(lua_State* L) {
  lua_pushnumber(L, mono_seconds(MonoClock::now()));
  return 1;
}

const luaL_Reg kTimerFns[] = {
    {"after", l_after}, {"every", l_every}, {"now", l_now}, {nullptr, nullptr}};

}  // namespace

void arm_pending_timers(RuntimeState& rt) {
  for (auto& [serial, t] : rt.timers)
    if (!t.loop_id) arm(rt, serial, t);
}

void cancel_timers(RuntimeState& rt) {
  if (rt.host.loop)
    for (auto& [serial, t] : rt.timers)
      if (t.loop_id) rt.host.loop->cancel(t.loop_id);
  rt.timers.clear();
}

void push_handle(lua_State* L, const char* meta, uint64_t serial) {
  auto* h = static_cast<Handle*>(lua_newuserdatauv(L, sizeof(Handle), 0));
  h->serial = serial;
  h->token = runtime_of(L).token;
  luaL_setmetatable(L, meta);
}

Handle* check_handle(lua_State* L, int idx, const char* meta) {
  auto* h = static_cast<Handle*>(luaL_checkudata(L, idx, meta));
  return h->token == runtime_of(L).token ? h : nullptr;
}

int luaopen_vigil_timer(lua_State* L) {
  if (luaL_newmetatable(L, kHandleMeta)) {
    lua_newtable(L);
    lua_pushcfunction(L, l_handle_cancel);
    lua_setfield(L, -2, "cancel");
    lua_pushcfunction(L, l_handle_active);
    lua_setfield(L, -2, "active");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_handle_tostring);
    lua_setfield(L, -2, "__tostring");
    // getmetatable(handle) gives this string, not the table: a rule cannot
    // change the methods of every handle.
    lua_pushstring(L, kHandleMeta);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_newlib(L, kTimerFns);
  return 1;
}

}  // namespace vigil

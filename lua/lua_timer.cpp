// vigil.timer: timers owned by the rule state that created them; a reload
// cancels them with the old state. Created while rules load, they are armed
// when the state goes live (never, under `vigil check`).
//   vigil.timer.after(seconds, fn) -> handle    one-shot
//   vigil.timer.every(seconds, fn) -> handle    repeating
//   handle:cancel()
//   vigil.timer.now() -> monotonic seconds
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

constexpr const char* kHandleMeta = "vigil.timer.handle";

// Handle table: { id = TimerId or 0, cancelled = bool }.
void fire(std::weak_ptr<int> alive, RuntimeState* rt, PendingTimer t, TimerId self) {
  if (alive.expired()) return;
  rt->timers.erase(self);
  lua_State* L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t.handle_ref);
  lua_getfield(L, -1, "cancelled");
  bool cancelled = lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (cancelled) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t.ref);
  protected_call(*rt, 0, 0, "timer", rt->options.callback_budget);
  if (rt->depth == 0) drain_events(*rt);
  if (t.interval > 0) {
    PendingTimer next = t;
    next.delay = t.interval;
    arm_timer(*rt, next);
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, t.ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t.handle_ref);
  }
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
  lua_newtable(L);  // handle
  luaL_setmetatable(L, kHandleMeta);
  lua_pushvalue(L, -1);
  int handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  PendingTimer t{seconds, repeat ? seconds : 0, ref, handle_ref};
  if (rt.live)
    arm_timer(rt, t);
  else
    rt.pending_timers.push_back(t);
  return 1;
}

int l_after(lua_State* L) {
  return create(L, false);
}
int l_every(lua_State* L) {
  return create(L, true);
}

int l_handle_cancel(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushboolean(L, 1);
  lua_setfield(L, 1, "cancelled");
  return 0;
}

int l_now(lua_State* L) {
  lua_pushnumber(L, mono_seconds(MonoClock::now()));
  return 1;
}

const luaL_Reg kTimerFns[] = {
    {"after", l_after}, {"every", l_every}, {"now", l_now}, {nullptr, nullptr}};

}  // namespace

void arm_timer(RuntimeState& rt, const PendingTimer& t) {
  if (!rt.host.loop) return;
  std::weak_ptr<int> alive = rt.alive;
  RuntimeState* rtp = &rt;
  auto id = std::make_shared<TimerId>(0);
  *id =
      rt.host.loop->after(from_seconds(t.delay), [alive, rtp, t, id] { fire(alive, rtp, t, *id); });
  rt.timers.insert(*id);
}

int luaopen_vigil_timer(lua_State* L) {
  if (luaL_newmetatable(L, kHandleMeta)) {
    lua_newtable(L);
    lua_pushcfunction(L, l_handle_cancel);
    lua_setfield(L, -2, "cancel");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, kTimerFns);
  return 1;
}

}  // namespace vigil

// vigil.exec: supervised processes (units) and one-shot commands.
//   exec.declare(name, spec) -> true | nil, err
//       Declares a watch's process (spec is the stdlib's normalized table:
//       argv, env, cwd, user, group, umask, stop_signal, stop_timeout,
//       stop_command, capture_output, log_max_bytes, log_keep, where).
//       Expected problems (program not found, unknown user) return nil, err.
//   exec.info(name) -> table | nil      state, pid, restarts, history, ...
//   exec.restart_later(name, delay)     decision: restart after delay s
//   exec.exhaust(name [, rearm])        decision: give up (re-arm after s)
//   exec.run(argv [, {timeout=, env={K=V}, on_exit=fn(code, signal)}]) -> pid | nil, err
//       A one-shot command in its own process group, stdio to /dev/null,
//       KILLed (with its group) after timeout seconds (default 60).
// Decisions and run() act on the live state only.
#include <signal.h>

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

std::string field_string(lua_State* L, int idx, const char* key) {
  lua_getfield(L, idx, key);
  std::string v = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  return v;
}

double field_number(lua_State* L, int idx, const char* key, double dflt) {
  lua_getfield(L, idx, key);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

// Reads the normalized spec table at idx; returns an error text or "".
std::string read_spec(lua_State* L, int idx, ProcessSpec& spec, std::string& where) {
  std::string err;
  lua_getfield(L, idx, "argv");
  spec.argv = string_list(L, -1, "start", err);
  lua_pop(L, 1);
  if (!err.empty()) return err;
  lua_getfield(L, idx, "stop_command");
  spec.stop_command = string_list(L, -1, "stop.command", err);
  lua_pop(L, 1);
  if (!err.empty()) return err;
  lua_getfield(L, idx, "env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
        lua_pop(L, 3);
        return "env: keys and values must be strings";
      }
      spec.env.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    std::sort(spec.env.begin(), spec.env.end());
  }
  lua_pop(L, 1);
  spec.cwd = field_string(L, idx, "cwd");
  spec.user = field_string(L, idx, "user");
  spec.group = field_string(L, idx, "group");
  spec.umask = static_cast<int>(field_number(L, idx, "umask", -1));
  spec.stop_signal = static_cast<int>(field_number(L, idx, "stop_signal", SIGTERM));
  spec.stop_timeout = field_number(L, idx, "stop_timeout", 10);
  lua_getfield(L, idx, "capture_output");
  spec.capture_output = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  spec.log_max_bytes = static_cast<uint64_t>(field_number(L, idx, "log_max_bytes", 1 << 20));
  spec.log_keep = static_cast<int>(field_number(L, idx, "log_keep", 3));
  where = field_string(L, idx, "where");
  if (auto e = validate_spec(spec)) return *e;
  return {};
}

int l_declare(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "exec.declare: watches are declared while rules load");
  {
    if (rt.declared_names.contains(name)) {
      lua_pushnil(L);
      lua_pushfstring(L, "watch '%s' is declared twice", name);
      return 2;
    }
    Declaration d;
    d.name = name;
    std::string err = read_spec(L, 2, d.spec, d.where);
    if (!err.empty()) {
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      return 2;
    }
    rt.declared_names.insert(d.name);
    rt.decls.push_back(std::move(d));
  }
  lua_pushboolean(L, 1);
  return 1;
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
  nlohmann::json j = u->to_json();
  nlohmann::json hist = nlohmann::json::array();
  for (const auto& h : u->history) hist.push_back({{"at", h.mono}, {"uptime", h.uptime}});
  j["history"] = std::move(hist);
  push_json(L, j);
  return 1;
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
  if (u.child)
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

int l_run(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  require_live(L, "exec.run");
  RuntimeState& rt = runtime_of(L);
  double timeout = lua_istable(L, 2) ? field_number(L, 2, "timeout", 60) : 60;
  int cb_ref = LUA_NOREF;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "on_exit");
    if (lua_isfunction(L, -1))
      cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
      lua_pop(L, 1);
  }
  pid_t pid = -1;
  {
    std::string err;
    std::vector<std::string> argv = string_list(L, 1, "command", err);
    std::vector<std::pair<std::string, std::string>> env;
    if (lua_istable(L, 2)) {
      lua_getfield(L, 2, "env");
      if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
          if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1))
            env.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
          lua_pop(L, 1);
        }
      }
      lua_pop(L, 1);
    }
    std::optional<Spawned> sp;
    if (err.empty() && rt.host.supervisor) sp = spawn_command(argv, err, env);
    if (!sp) {
      if (err.empty()) err = "no supervisor";
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      if (cb_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
      return 2;
    }
    pid = sp->pid;
    EventLoop* loop = rt.host.loop;
    Reaper& reaper = rt.host.supervisor->reaper();
    TimerId kill_timer = loop->after(from_seconds(timeout), [&reaper, pid] {
      if (::kill(-pid, SIGKILL) != 0) reaper.signal(pid, SIGKILL);
    });
    std::weak_ptr<int> alive = rt.alive;
    RuntimeState* rtp = &rt;
    reaper.track(pid, std::move(sp->pidfd),
                 [alive, rtp, loop, kill_timer, cb_ref, pid](const ExitStatus& st) {
                   loop->cancel(kill_timer);
                   ::kill(-pid, SIGKILL);
                   if (alive.expired() || cb_ref == LUA_NOREF) return;
                   lua_State* Ls = rtp->L;
                   lua_rawgeti(Ls, LUA_REGISTRYINDEX, cb_ref);
                   luaL_unref(Ls, LUA_REGISTRYINDEX, cb_ref);
                   if (st.signal)
                     lua_pushnil(Ls);
                   else
                     lua_pushinteger(Ls, st.code);
                   if (st.signal)
                     lua_pushstring(Ls, signal_name(st.signal).c_str());
                   else
                     lua_pushnil(Ls);
                   protected_call(*rtp, 2, 0, "exec.run on_exit", rtp->options.callback_budget);
                   if (rtp->depth == 0) drain_events(*rtp);
                 });
  }
  lua_pushinteger(L, pid);
  return 1;
}

const luaL_Reg kExecFns[] = {
    {"declare", l_declare}, {"info", l_info}, {"restart_later", l_restart_later},
    {"exhaust", l_exhaust}, {"run", l_run},   {nullptr, nullptr}};

}  // namespace

int luaopen_vigil_exec(lua_State* L) {
  luaL_newlib(L, kExecFns);
  return 1;
}

}  // namespace vigil

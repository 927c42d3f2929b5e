// vigil.cluster: handing over when the node cannot recover by itself.
//   cluster.configure{ failover = argv, failover_timeout = s, reboot = argv }
//       at load: the commands the ladder's failover and reboot steps run
//   cluster.failover(owner, reason [, argv]) -> true | nil, err
//       VGL0152 now; the failover command (VIGIL_OWNER, VIGIL_REASON,
//       VIGIL_NODE in its environment) starts once every process of the
//       owner has been stopped and reaped; VGL0153/VGL0154 when it ends
//   cluster.reboot(owner, reason [, argv]) -> true | nil, err
//       refused (VGL0156) unless the daemon allows reboots and none
//       happened within the interval; else VGL0155 and the command runs
#include <unistd.h>

#include "host/cluster/cluster.hpp"
#include "host/core/clock.hpp"
#include "host/core/strings.hpp"
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

std::vector<std::string> argv_at(lua_State* L, int idx) {
  std::vector<std::string> out;
  if (!lua_istable(L, idx)) return out;
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  for (lua_Integer i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    if (lua_isstring(L, -1)) out.emplace_back(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return out;
}

// true, or nil and the error.
int push_result(lua_State* L, const std::string& err) {
  if (err.empty()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err.c_str());
  return 2;
}

int l_configure(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "cluster.configure: configured while rules load");
  static const char* const keys[] = {"failover", "reboot", "failover_timeout", nullptr};
  int spec = copy_keys(L, 1, keys);
  return guarded(L, [&](Raise&) -> int {
    raw_field(L, spec, "failover");
    rt.cluster.failover = argv_at(L, -1);
    lua_pop(L, 1);
    raw_field(L, spec, "reboot");
    rt.cluster.reboot = argv_at(L, -1);
    lua_pop(L, 1);
    rt.cluster.failover_timeout = field_number(L, spec, "failover_timeout", 60);
    return 0;
  });
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// Runs `argv` for owner; the events say how it went.
void run_handover(EventLog* log, Supervisor* sup, const std::string& owner,
                  const std::string& reason, const std::vector<std::string>& argv, double timeout) {
  std::string err;
  auto pid = sup->run_command(
      argv, {{"VIGIL_OWNER", owner}, {"VIGIL_REASON", reason}, {"VIGIL_NODE", hostname()}}, timeout,
      [log, owner, argv](const ExitStatus& st, bool timed_out) {
        if (st.known && !st.signal && st.code == 0)
          log->emit(Msg::FailoverDone, owner, {{"how", "exited 0"}, {"command", join(argv, " ")}});
        else
          log->emit(
              Msg::FailoverFailed, owner,
              {{"error", join(argv, " ") + (timed_out   ? ": timed out"
                                            : st.signal ? ": killed by " + signal_name(st.signal)
                                                        : ": exited " + std::to_string(st.code))}});
      },
      err);
  if (!pid) log->emit(Msg::FailoverFailed, owner, {{"error", err}});
}

int l_failover(lua_State* L) {
  const char* owner = luaL_checkstring(L, 1);
  const char* reason = luaL_checkstring(L, 2);
  require_live(L, "cluster.failover");
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise&) -> int {
    std::string err;
    std::vector<std::string> argv = argv_at(L, 3);
    if (argv.empty()) argv = rt.cluster.failover;
    if (rt.host.log)
      rt.host.log->emit(Msg::FailoverRequested, owner, {{"reason", reason}, {"node", hostname()}});
    if (argv.empty())
      err = "no failover command configured (cluster { failover = \"...\" } in the rules)";
    else if (!rt.host.supervisor || !rt.host.log)
      err = "no supervisor";
    if (!err.empty()) {
      if (rt.host.log) rt.host.log->emit(Msg::FailoverFailed, owner, {{"error", err}});
      return push_result(L, err);
    }
    // The command starts once nothing of the owner runs here any more
    // (issue 12.10): a command-driven cluster must never find the service
    // running on two nodes. The callback outlives this Lua state (a reload
    // may come first), so it holds only host objects and copies.
    EventLog* log = rt.host.log;
    Supervisor* sup = rt.host.supervisor;
    double timeout = rt.cluster.failover_timeout;
    sup->after_stopped(
        owner, [log, sup, owner = std::string(owner), reason = std::string(reason), argv, timeout] {
          run_handover(log, sup, owner, reason, argv, timeout);
        });
    return push_result(L, err);
  });
}

int l_reboot(lua_State* L) {
  const char* owner = luaL_checkstring(L, 1);
  const char* reason = luaL_checkstring(L, 2);
  require_live(L, "cluster.reboot");
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise&) -> int {
    std::string err;
    std::vector<std::string> argv = argv_at(L, 3);
    if (argv.empty()) argv = rt.cluster.reboot;
    if (argv.empty())
      err = "no reboot command configured (cluster { reboot = \"...\" } in the rules)";
    else if (!rt.host.cluster || !rt.host.supervisor)
      err = "reboots are disabled";
    else
      err = claim_reboot(*rt.host.cluster, wall_seconds());
    if (err.empty()) {
      rt.host.log->emit(Msg::RebootRequested, owner,
                        {{"reason", reason}, {"command", join(argv, " ")}});
      auto pid = rt.host.supervisor->run_command(
          argv, {{"VIGIL_OWNER", owner}, {"VIGIL_REASON", reason}}, 300, {}, err);
      if (pid) err.clear();
    }
    if (!err.empty() && rt.host.log) rt.host.log->emit(Msg::RebootRefused, owner, {{"error", err}});
    return push_result(L, err);
  });
}

const luaL_Reg kClusterFns[] = {
    {"configure", l_configure}, {"failover", l_failover}, {"reboot", l_reboot}, {nullptr, nullptr}};

}  // namespace

int luaopen_vigil_cluster(lua_State* L) {
  luaL_newlib(L, kClusterFns);
  return 1;
}

}  // namespace vigil

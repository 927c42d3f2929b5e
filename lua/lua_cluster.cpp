// vigil.cluster_host: the host side of vigil.cluster (the rule-facing
// module and its policy are stdlib/vigil/cluster.lua).
//   configure(spec)
//       at load: the checked cluster { } block (adapter, node, endpoints,
//       ttl, ..., failover, failover_timeout, reboot)
//   check(spec) -> nil | err
//       what the adapter says of the block (etcd: its fencing budget)
//   failover(owner, reason [, argv [, to_node]]) -> true | nil, err
//       VGL0152 now; once every process of the owner has been stopped and
//       reaped, the cluster adapter hands it over (argv: this command
//       instead, with VIGIL_GROUP, VIGIL_OWNER, VIGIL_NODE, VIGIL_REASON in
//       its environment); VGL0153/VGL0154 when that ends
//   reboot(owner, reason [, argv]) -> true | nil, err
//       refused (VGL0156) unless the daemon allows reboots and none
//       happened within the interval; else VGL0155 and the command runs
//   adapter() -> name | nil;  node() -> this node's name
//   info(group) -> { role, holder, lease_left, failed_on } | nil
//   nodes() -> { { node, holds = { groups }, ... }, ... }
#include "host/cluster/cluster.hpp"
#include "host/cluster/hub.hpp"
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

std::vector<std::string> argv_field(lua_State* L, int spec, const char* key) {
  raw_field(L, spec, key);
  auto out = argv_at(L, -1);
  lua_pop(L, 1);
  return out;
}

const char* const kConfigKeys[] = {
    "adapter", "node",     "endpoints",  "ttl",      "self_fence_after", "avoid_for",
    "prefix",  "ca",       "cert",       "key",      "resource",         "track_file",
    "failover", "failover_timeout", "reboot", nullptr};

// The checked block (a copy, at `spec`) as the host takes it; `adapter`
// empty: no adapter (a reboot command alone).
ClusterConfig config_from(lua_State* L, int spec) {
  ClusterConfig c;
  c.adapter = field_string(L, spec, "adapter");
  c.failover = argv_field(L, spec, "failover");
  // The block of before adapters (a failover command): the command adapter.
  if (c.adapter.empty() && !c.failover.empty()) c.adapter = "command";
  c.node = field_string(L, spec, "node");
  if (c.node.empty()) c.node = node_name();
  c.endpoints = argv_field(L, spec, "endpoints");
  c.ttl = field_number(L, spec, "ttl", 4);
  c.self_fence_after = field_number(L, spec, "self_fence_after", 0);
  c.avoid_for = field_number(L, spec, "avoid_for", 1800);
  c.prefix = field_string(L, spec, "prefix", "vigil");
  c.ca = field_string(L, spec, "ca");
  c.cert = field_string(L, spec, "cert");
  c.key = field_string(L, spec, "key");
  c.resource = field_string(L, spec, "resource");
  c.track_file = field_string(L, spec, "track_file");
  c.failover_timeout = field_number(L, spec, "failover_timeout", 60);
  return c;
}

int l_configure(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "cluster.configure: configured while rules load");
  int spec = copy_keys(L, 1, kConfigKeys);
  return guarded(L, [&](Raise&) -> int {
    ClusterConfig c = config_from(L, spec);
    rt.cluster.reboot = argv_field(L, spec, "reboot");
    if (c.adapter.empty())
      rt.cluster.config.reset();
    else
      rt.cluster.config = std::move(c);
    return 0;
  });
}

// check(spec) -> nil | err: what the adapter itself says of the block
// (etcd: its fencing budget, EtcdCluster::check).
int l_check(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int spec = copy_keys(L, 1, kConfigKeys);
  return guarded(L, [&](Raise&) -> int {
    ClusterConfig c = config_from(L, spec);
    std::string err = check_cluster_config(c);
    if (err.empty()) return 0;
    lua_pushstring(L, err.c_str());
    return 1;
  });
}

int l_failover(lua_State* L) {
  const char* owner = luaL_checkstring(L, 1);
  const char* reason = luaL_checkstring(L, 2);
  const char* to = luaL_optstring(L, 4, "");
  require_live(L, "cluster.failover");
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise&) -> int {
    std::vector<std::string> argv = argv_at(L, 3);
    if (rt.cluster.hub) return push_result(L, rt.cluster.hub->failover(owner, reason, to, argv));
    if (!rt.host.supervisor || !rt.host.log) return push_result(L, "no supervisor");
    if (!argv.empty()) {
      // A step's own command and no cluster block: run it as the
      // command adapter would.
      hand_over_by_command(*rt.host.supervisor, *rt.host.log,
                           FailoverRun{owner, rt.host.supervisor->find_group(owner) != nullptr,
                                       node_name(), reason, to, argv, 60});
      return push_result(L, "");
    }
    std::string err = "no failover command configured (cluster { failover = \"...\" } in the rules)";
    rt.host.log->emit(Msg::FailoverRequested, owner, {{"reason", reason}, {"node", node_name()}});
    rt.host.log->emit(Msg::FailoverFailed, owner, {{"error", err}});
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

int l_adapter(lua_State* L) {
  RuntimeState& rt = runtime_of(L);
  if (!rt.cluster.config) return 0;
  lua_pushstring(L, rt.cluster.config->adapter.c_str());
  return 1;
}

int l_node(lua_State* L) {
  RuntimeState& rt = runtime_of(L);
  std::string node = rt.cluster.config ? rt.cluster.config->node : node_name();
  lua_pushstring(L, node.c_str());
  return 1;
}

int l_info(lua_State* L) {
  const char* group = luaL_checkstring(L, 1);
  RuntimeState& rt = runtime_of(L);
  if (!rt.cluster.hub || !rt.cluster.hub->adapter()) return 0;
  return guarded(L, [&](Raise&) -> int {
    push_json(L, rt.cluster.hub->group_json(group));
    return 1;
  });
}

int l_nodes(lua_State* L) {
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise&) -> int {
    const ClusterAdapter* a = rt.cluster.hub ? rt.cluster.hub->adapter() : nullptr;
    push_json(L, a ? a->nodes() : nlohmann::json::array());
    return 1;
  });
}

const luaL_Reg kClusterFns[] = {{"configure", l_configure}, {"check", l_check},
                                {"failover", l_failover},
                                {"reboot", l_reboot},       {"adapter", l_adapter},
                                {"node", l_node},           {"info", l_info},
                                {"nodes", l_nodes},         {nullptr, nullptr}};

}  // namespace

int luaopen_vigil_cluster(lua_State* L) {
  luaL_newlib(L, kClusterFns);
  return 1;
}

}  // namespace vigil

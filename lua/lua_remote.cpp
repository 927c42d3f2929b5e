// vigil.remote (the host side): acting on another node's watches.
//   remote.act(node, verb, watch) -> true | nil, err
//       POSTs /v1/watches/WATCH/VERB to the peer `node` (verb: start,
//       stop, restart, pause, resume); returns at once. The node decides
//       (its vigil.api.authorize); how it went is an event: VGL0244 done,
//       VGL0245 failed. nil, err at once for an unknown peer or verb.
// The rule-facing API, vigil.remote(node):restart(watch), is
// stdlib/vigil/remote_watch.lua.
#include "host/remote/remote_hub.hpp"
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

int l_act(lua_State* L) {
  const char* node = luaL_checkstring(L, 1);
  const char* verb = luaL_checkstring(L, 2);
  const char* watch = luaL_checkstring(L, 3);
  require_live(L, "vigil.remote");
  RuntimeState& rt = runtime_of(L);
  return guarded(L, [&](Raise&) -> int {
    std::string err;
    bool ok = false;
    if (!rt.host.remote)
      err = "no peers here (this vigil runs no remote links)";
    else
      ok = rt.host.remote->act(node, verb, watch, err);
    if (ok) {
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, err.c_str());
    return 2;
  });
}

const luaL_Reg kRemoteFns[] = {{"act", l_act}, {nullptr, nullptr}};

}  // namespace

int luaopen_vigil_remote(lua_State* L) {
  luaL_newlib(L, kRemoteFns);
  return 1;
}

}  // namespace vigil

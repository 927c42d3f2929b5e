// The crossing of `vigil discover` (host/cli/discover.cpp): the observed
// processes go to vigil.discover.run in one protected call and its answer
// comes back as JSON. The policy (scoring, grouping, the rule text) is
// stdlib/vigil/discover.lua.
#include "lua/runtime_internal.hpp"

namespace vigil {

nlohmann::json RuleRuntime::discover(const nlohmann::json& input, std::string& error) {
  RuntimeState& rt = *state_;
  lua_State* L = rt.L;
  if (rt.entry_ref == LUA_NOREF) {
    // No rules loaded: the stdlib alone on the require path.
    std::string path = rt.options.stdlib_dir + "/?.lua;" + rt.options.stdlib_dir + "/?/init.lua";
    lua_getglobal(L, "package");
    lua_pushstring(L, path.c_str());
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
  }
  int top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "vigil.discover");
  CallResult r = protected_call(rt, 1, 1, "require vigil.discover", rt.options.load_budget, false);
  if (!r.ok()) {
    error = "cannot load vigil.discover from " + rt.options.stdlib_dir + ": " + r.error;
    lua_settop(L, top);
    return nullptr;
  }
  if (!lua_istable(L, -1)) {
    lua_settop(L, top);
    error = "vigil.discover did not return its module table";
    return nullptr;
  }
  lua_getfield(L, -1, "run");
  lua_remove(L, -2);
  nlohmann::json out;
  DispatchOptions o;
  o.nresults = 1;
  o.budget = rt.options.load_budget;
  o.report = false;
  o.results = [&](lua_State* S) {
    if (lua_istable(S, -1)) out = to_json(S, -1, 0);
  };
  r = dispatch(rt, Callee::on_stack(), "vigil.discover.run",
               [&](lua_State* S) {
                 push_json(S, input);
                 return 1;
               },
               o);
  lua_settop(L, top);
  if (!r.ok()) {
    error = r.traceback.empty() ? r.error : r.traceback;
    return nullptr;
  }
  if (out.is_null()) error = "vigil.discover.run answered no table";
  return out;
}

}  // namespace vigil

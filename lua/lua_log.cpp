// vigil.log: the event log as seen from rules.
//   vigil.log.info(text [, fields])   -- also debug/notice/warn/error/critical
//     emits VGL0900 (rule_message) with the given severity; fields.watch, if
//     present, names the watch the message is about.
//   vigil.log.event(name, watch, fields)
//     emits a catalog event by its name (e.g. "restart_scheduled"); used by
//     the stdlib so that policy decisions carry their stable ids. Only
//     policy events and rule_error; the others are the host's.
//   vigil.log.is_event(name) -> boolean
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

template <Severity S>
int l_message(lua_State* L) {
  size_t n;
  const char* text = luaL_checklstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (!rt.host.log) return 0;
  {
    nlohmann::json fields = lua_istable(L, 2) ? to_json(L, 2) : nlohmann::json::object();
    if (!fields.is_object()) fields = nlohmann::json{{"values", fields}};
    fields["message"] = std::string(text, n);
    fields["where"] = lua_where(L, 1);
    std::string watch;
    if (auto it = fields.find("watch"); it != fields.end() && it->is_string()) watch = *it;
    rt.host.log->emit(Msg::RuleMessage, S, watch, std::move(fields), std::string(text, n));
  }
  return 0;
}

// Catalog events a rule library may emit: policy decisions and rule
// errors. The rest are the host's to report.
bool rule_may_emit(Msg m) {
  return m == Msg::RestartScheduled || m == Msg::BudgetExhausted || m == Msg::ExhaustedHook ||
         m == Msg::RuleError || m == Msg::CountKilled || m == Msg::StateAction ||
         m == Msg::HungAction || m == Msg::GroupExhausted || m == Msg::EscalationStep;
}

int l_event(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  const char* watch = luaL_optstring(L, 2, "");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  const MessageDef* def = nullptr;
  for (const auto& d : message_catalog())
    if (std::string_view(d.name) == name) def = &d;
  if (!def) return luaL_error(L, "vigil.log.event: unknown event name '%s'", name);
  if (!rule_may_emit(def->msg))
    return luaL_error(L, "vigil.log.event: '%s' is reported by the host, not by rules", name);
  if (!rt.host.log) return 0;
  {
    nlohmann::json fields = lua_istable(L, 3) ? to_json(L, 3) : nlohmann::json::object();
    if (!fields.is_object()) fields = nlohmann::json::object();
    rt.host.log->emit(def->msg, watch, std::move(fields));
  }
  return 0;
}

// is_event(name) -> boolean: a catalog event name (for vigil.on).
int l_is_event(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  bool found = false;
  for (const auto& d : message_catalog()) found = found || std::string_view(d.name) == name;
  lua_pushboolean(L, found);
  return 1;
}

const luaL_Reg kLogFns[] = {{"debug", l_message<Severity::Debug>},
                            {"info", l_message<Severity::Info>},
                            {"notice", l_message<Severity::Notice>},
                            {"warn", l_message<Severity::Warning>},
                            {"error", l_message<Severity::Error>},
                            {"critical", l_message<Severity::Critical>},
                            {"event", l_event},
                            {"is_event", l_is_event},
                            {nullptr, nullptr}};

}  // namespace

int luaopen_vigil_log(lua_State* L) {
  luaL_newlib(L, kLogFns);
  return 1;
}

}  // namespace vigil

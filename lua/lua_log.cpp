// vigil.log: the event log as seen from rules.
//   vigil.log.info(text [, fields])   -- also debug/notice/warn/error/critical
//     emits VGL0900 (rule_message) with the given severity; fields.watch, if
//     present, names the watch the message is about.
//   vigil.log.event(name, watch, fields)
//     emits a catalog event by its name (e.g. "restart_scheduled"); used by
//     the stdlib so that policy decisions carry their stable ids. Only
//     policy events and rule_error; the others are the host's.
//   vigil.log.is_event(name) -> boolean
//   vigil.log.sink{ kind = "syslog"|"journald"|"json"|"file"|"console",
//                   address, facility, path, max_size, keep, queue, level,
//                   format = function(ev) return "text" end }
//     declares a destination for events (while the rules load only); the
//     host opens it once the rules go live. See docs/rules.md.
#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

template <Severity S>
int l_message(lua_State* L) {
  size_t n;
  const char* text = luaL_checklstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.formatting) return luaL_error(L, "vigil.log is not allowed in a log sink formatter");
  if (!rt.host.log) return 0;
  return guarded(L, [&](Raise&) -> int {
    nlohmann::json fields = lua_istable(L, 2) ? to_json(L, 2) : nlohmann::json::object();
    if (!fields.is_object()) fields = nlohmann::json{{"values", fields}};
    fields["message"] = std::string(text, n);
    fields["where"] = lua_where(L, 1);
    std::string watch;
    if (auto it = fields.find("watch"); it != fields.end() && it->is_string()) watch = *it;
    rt.host.log->emit(Msg::RuleMessage, S, watch, std::move(fields), std::string(text, n));
    return 0;
  });
}

// Catalog events a rule library may emit: policy decisions and rule
// errors. The rest are the host's to report.
bool rule_may_emit(Msg m) {
  return m == Msg::RestartScheduled || m == Msg::BudgetExhausted || m == Msg::ExhaustedHook ||
         m == Msg::RuleError || m == Msg::CountKilled || m == Msg::CountKills ||
         m == Msg::StateAction || m == Msg::HungAction || m == Msg::GroupExhausted ||
         m == Msg::EscalationStep || m == Msg::ObservedExit || m == Msg::ObservedAction;
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
  if (rt.formatting) return luaL_error(L, "vigil.log is not allowed in a log sink formatter");
  if (!rt.host.log) return 0;
  return guarded(L, [&](Raise&) -> int {
    nlohmann::json fields = lua_istable(L, 3) ? to_json(L, 3) : nlohmann::json::object();
    if (!fields.is_object()) fields = nlohmann::json::object();
    rt.host.log->emit(def->msg, watch, std::move(fields));
    return 0;
  });
}

// is_event(name) -> boolean: a catalog event name (for vigil.on).
int l_is_event(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  bool found = false;
  for (const auto& d : message_catalog()) found = found || std::string_view(d.name) == name;
  lua_pushboolean(L, found);
  return 1;
}

// The keys vigil.log.sink accepts (a closed schema).
const char* const kSinkKeys[] = {"kind", "address", "facility", "path",   "max_size",
                                 "keep", "queue",   "level",    "format", nullptr};

// Validates the spec table at 1 (its keys, by raw access) and its copy at
// `copy` (the values) into `spec`; returns the error or "".
std::string read_sink(lua_State* L, int copy, SinkSpec& spec) {
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    bool known = false;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (const char* const* k = kSinkKeys; *k; ++k)
        known = known || std::string_view(*k) == lua_tostring(L, -2);
    if (!known) {
      std::string k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "(not a name)";
      lua_pop(L, 2);
      return "unknown key '" + k + "' (keys: kind, address, facility, path, max_size, keep, " +
             "queue, level, format)";
    }
    lua_pop(L, 1);
  }
  spec.kind = field_string(L, copy, "kind");
  spec.address = field_string(L, copy, "address");
  spec.facility = field_string(L, copy, "facility", "daemon");
  spec.path = field_string(L, copy, "path");
  double max_size = field_number(L, copy, "max_size", static_cast<double>(spec.max_bytes));
  double keep = field_number(L, copy, "keep", static_cast<double>(spec.keep));
  double queue = field_number(L, copy, "queue", static_cast<double>(spec.queue));
  // Written so that NaN fails too; the bounds keep the casts below defined.
  if (!(max_size >= 0 && max_size <= 1e12 && keep >= 0 && keep <= 1e6 && queue >= 1 &&
        queue <= 1e7))
    return "max_size (0..1TB), keep (0..1000000) and queue (1..10000000) are out of range";
  spec.max_bytes = static_cast<size_t>(max_size);
  spec.keep = static_cast<size_t>(keep);
  spec.queue = static_cast<size_t>(queue);
  std::string level = field_string(L, copy, "level", "info");
  if (!parse_severity(level, spec.min_severity)) return "unknown level '" + level + "'";
  if (spec.kind == "syslog") {
    if (facility_code(spec.facility) < 0) return "unknown facility '" + spec.facility + "'";
    const std::string& a = spec.address;
    if (!a.empty() && a[0] != '/' && !a.starts_with("unix:/") && !a.starts_with("udp:") &&
        !a.starts_with("tcp:"))
      return "address must be /path, unix:/path, udp:host:port or tcp:host:port, got '" + a + "'";
  } else if (spec.kind == "json" || spec.kind == "file") {
    if (spec.path.empty() || spec.path[0] != '/')
      return spec.kind + " sink: an absolute path is required";
  } else if (spec.kind != "journald" && spec.kind != "console") {
    return "unknown kind '" + spec.kind + "' (syslog, journald, json, file, console)";
  }
  return "";
}

// Formats ev with the rule's function `ref` (synchronously: the sink needs
// the text now). A formatter is a pure function of the event: actions and
// events are refused inside it, so it cannot act from inside emit().
bool run_formatter(RuntimeState& rt, int ref, const Event& ev, std::string& out, std::string& err) {
  bool was = rt.formatting;
  rt.formatting = true;
  bool ok = false;
  DispatchOptions o;
  o.nresults = 1;
  o.budget = std::min(rt.options.callback_budget, 0.05);
  o.report = false;  // the sink reports VGL0016 once, not an event per event
  o.results = [&](lua_State* S) {
    ok = lua_type(S, -1) == LUA_TSTRING;
    if (ok)
      out = lua_tostring(S, -1);
    else
      err = std::string("returned a ") + luaL_typename(S, -1) + ", not a string";
  };
  CallResult r = dispatch(
      rt, Callee::registry(ref), "log sink formatter",
      [&](lua_State* S) {
        push_json(S, event_for_lua(ev));
        return 1;
      },
      o);
  rt.formatting = was;
  if (!r.ok()) err = r.error;
  return r.ok() && ok;
}

// sink{...}: declares a sink. Stack: [spec] -> [].
int l_sink(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  RuntimeState& rt = runtime_of(L);
  if (rt.live) return luaL_error(L, "vigil.log.sink: sinks are declared while the rules load");
  int copy = copy_keys(L, 1, kSinkKeys);
  raw_field(L, copy, "format");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    return luaL_error(L, "vigil.log.sink: format must be a function");
  int ref = lua_isfunction(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX) : (lua_pop(L, 1), LUA_NOREF);
  return guarded(L, [&](Raise& raise) -> int {
    SinkSpec spec;
    std::string error = read_sink(L, copy, spec);
    if (!error.empty()) {
      if (ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ref);
      return raise.plain("%s: vigil.log.sink: %s", lua_where(L, 1).c_str(), error.c_str());
    }
    spec.where = lua_where(L, 1);
    if (ref != LUA_NOREF) {
      RuntimeState* state = &rt;
      std::weak_ptr<int> alive = rt.alive;
      spec.format = [state, alive, ref](const Event& ev, std::string& out,
                                        std::string& err) -> bool {
        if (alive.expired() || !state->live) {
          err.clear();  // between a reload's swap and the new sinks: quietly the default
          return false;
        }
        return run_formatter(*state, ref, ev, out, err);
      };
    }
    rt.sinks.push_back(std::move(spec));
    return 0;
  });
}

const luaL_Reg kLogFns[] = {{"sink", l_sink},
                            {"debug", l_message<Severity::Debug>},
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

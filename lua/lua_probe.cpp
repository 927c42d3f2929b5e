// vigil.probe: HTTP and TCP checks as primitives, for rule libraries that
// build their own checks (stdlib/vigil/web.lua). They run on the loop; the
// callback gets the result later, never from inside the call.
//   probe.http(spec, fn) -> handle | nil, err
//       spec: url (required), method ("GET"|"HEAD"), status = {min, max},
//       body (substring), headers = {Name = "substring"},
//       send_headers = {Name = "value"}, timeout, connect_timeout (s),
//       tls_verify (default true), unix_socket
//   probe.tcp(spec, fn) -> handle | nil, err
//       spec: host (default 127.0.0.1), port (required), send, expect, timeout
//   fn(result): result = { ok, reason, elapsed (s), status (HTTP), body
//       (HTTP: the body's first 64 KB; TCP: the reply's first 4 KB) }
//   handle:cancel() -> true | nil, err   fn will not run (err: the result
//                                        was delivered already)
//   handle:active() -> boolean           the result is still to come
// The handle is a userdata (serial, the state's token) with a protected
// metatable: a rule cannot forge one to cancel another rule's check.
// Live state only: checks belong to the state that made them and a reload
// cancels them with it. fn runs from the loop, never inside the call or
// inside the probe engine's callback.
#include <string.h>

#include "lua/runtime_internal.hpp"

namespace vigil {

namespace {

constexpr const char* kCheckMeta = "vigil.probe.check";

// {Name = "value", ...} at idx's key -> pairs, sorted (stable comparison).
std::vector<std::pair<std::string, std::string>> pairs_field(lua_State* L, int idx,
                                                             const char* key) {
  std::vector<std::pair<std::string, std::string>> out;
  raw_field(L, idx, key);
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1))
        out.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  std::sort(out.begin(), out.end());
  return out;
}

void push_result(lua_State* L, const ProbeResult& r) {
  lua_createtable(L, 0, 5);
  lua_pushboolean(L, r.ok);
  lua_setfield(L, -2, "ok");
  if (!r.ok) {
    lua_pushlstring(L, r.reason.data(), r.reason.size());
    lua_setfield(L, -2, "reason");
  }
  lua_pushnumber(L, r.elapsed);
  lua_setfield(L, -2, "elapsed");
  if (r.status) {
    lua_pushinteger(L, r.status);
    lua_setfield(L, -2, "status");
  }
  // The body the rule reads, not the evidence excerpt (512 bytes, for
  // events): a status page's fields can sit well past it.
  lua_pushlstring(L, r.body.data(), r.body.size());
  lua_setfield(L, -2, "body");
}

// The result's delivery: fn(result), unless the check was cancelled.
void deliver(RuntimeState& rt, uint64_t serial, const ProbeResult& r) {
  auto it = rt.probes.find(serial);
  if (it == rt.probes.end()) return;
  int ref = it->second.ref;
  it->second.id = 0;  // done: nothing left to cancel in the engine
  it->second.done = true;
  auto result = std::make_shared<ProbeResult>(r);
  RuntimeState* rtp = &rt;
  enqueue_delivery(rt, Delivery{"probe callback", ref, true,
                                [result](lua_State* L) {
                                  push_result(L, *result);
                                  return 1;
                                },
                                [rtp, serial] {
                                  // Taken: the handle expires; cancelled: the ref is gone.
                                  return rtp->probes.erase(serial) > 0;
                                }});
}

// The keys of an HTTP or TCP check (read from the rule's table once,
// before any C++ object exists).
const char* const kSpecKeys[] = {"url",        "method",       "status",  "body",
                                 "headers",    "send_headers", "timeout", "connect_timeout",
                                 "tls_verify", "unix_socket",  "host",    "port",
                                 "send",       "expect",       nullptr};

// Stack: [spec, fn] -> [handle] | [nil, err].
int start(lua_State* L, bool http) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  require_live(L, http ? "vigil.probe.http" : "vigil.probe.tcp");
  RuntimeState& rt = runtime_of(L);
  int spec = copy_keys(L, 1, kSpecKeys);
  return guarded(L, [&](Raise&) -> int {
    HttpCheck hc;
    TcpCheck tc;
    std::string err = http ? read_http_check(L, spec, hc) : read_tcp_check(L, spec, tc);
    if (!err.empty()) {
      lua_pushnil(L);
      lua_pushstring(L, err.c_str());
      return 2;
    }
    uint64_t serial = rt.next_serial++;
    push_handle(L, kCheckMeta, serial);
    lua_pushvalue(L, 2);
    rt.probes[serial] = RuleProbe{0, luaL_ref(L, LUA_REGISTRYINDEX)};
    if (!rt.host.probes) {
      // No engine (a test host): the check fails, later, like any other.
      ProbeResult r;
      r.reason = "probes are not available here";
      deliver(rt, serial, r);
      return 1;
    }
    std::weak_ptr<int> alive = rt.alive;
    RuntimeState* rtp = &rt;
    auto done = [alive, rtp, serial](const ProbeResult& r) {
      if (!alive.expired()) deliver(*rtp, serial, r);
    };
    ProbeId id = http ? rt.host.probes->http(hc, done) : rt.host.probes->tcp(tc, done);
    if (auto it = rt.probes.find(serial); it != rt.probes.end() && !it->second.done)
      it->second.id = id;
    return 1;
  });
}

int l_http(lua_State* L) {
  return start(L, true);
}
int l_tcp(lua_State* L) {
  return start(L, false);
}

// handle:cancel() -> true | nil, err. Stack: [handle] -> [result...].
int l_cancel(lua_State* L) {
  Handle* h = check_handle(L, 1, kCheckMeta);
  RuntimeState& rt = runtime_of(L);
  auto it = h ? rt.probes.find(h->serial) : rt.probes.end();
  if (it == rt.probes.end()) {
    lua_pushnil(L);
    lua_pushfstring(L,
                    "vigil.probe check %d: expired (its result was delivered, it was "
                    "cancelled, or the rules were reloaded)",
                    h ? static_cast<int>(h->serial) : 0);
    return 2;
  }
  if (it->second.id && rt.host.probes) rt.host.probes->cancel(it->second.id);
  luaL_unref(L, LUA_REGISTRYINDEX, it->second.ref);
  rt.probes.erase(it);  // a result already queued is dropped (its delivery finds no entry)
  lua_pushboolean(L, 1);
  return 1;
}

// handle:active() -> boolean. Stack: [handle] -> [boolean].
int l_active(lua_State* L) {
  Handle* h = check_handle(L, 1, kCheckMeta);
  lua_pushboolean(L, h && runtime_of(L).probes.contains(h->serial));
  return 1;
}

int l_tostring(lua_State* L) {
  Handle* h = check_handle(L, 1, kCheckMeta);
  bool active = h && runtime_of(L).probes.contains(h->serial);
  lua_pushfstring(L, "vigil.probe check %d (%s)", h ? static_cast<int>(h->serial) : 0,
                  active ? "in flight" : "expired");
  return 1;
}

const luaL_Reg kProbeFns[] = {{"http", l_http}, {"tcp", l_tcp}, {nullptr, nullptr}};

}  // namespace

std::string read_http_check(lua_State* L, int idx, HttpCheck& c) {
  c.url = field_string(L, idx, "url");
  if (c.url.empty()) return "url: required";
  if (auto e = validate_http_url(c.url)) return "url: " + *e;
  c.method = field_string(L, idx, "method", "GET");
  if (c.method != "GET" && c.method != "HEAD")
    return "method: '" + c.method + "' (use \"GET\" or \"HEAD\")";
  raw_field(L, idx, "status");
  if (lua_istable(L, -1)) {
    c.status_min = static_cast<int>(field_number(L, -1, "min", c.status_min));
    c.status_max = static_cast<int>(field_number(L, -1, "max", c.status_max));
  } else if (lua_isinteger(L, -1)) {
    c.status_min = c.status_max = static_cast<int>(lua_tointeger(L, -1));
  }
  lua_pop(L, 1);
  if (c.status_min < 100 || c.status_max > 599 || c.status_min > c.status_max)
    return "status: " + std::to_string(c.status_min) + "-" + std::to_string(c.status_max) +
           " is not a range of HTTP statuses";
  c.body = field_string(L, idx, "body");
  c.expect_headers = pairs_field(L, idx, "headers");
  c.send_headers = pairs_field(L, idx, "send_headers");
  c.timeout = field_number(L, idx, "timeout", c.timeout);
  c.connect_timeout = field_number(L, idx, "connect_timeout", c.connect_timeout);
  if (c.timeout <= 0) return "timeout: must be positive";
  raw_field(L, idx, "tls_verify");
  c.tls_verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  c.unix_socket = field_string(L, idx, "unix_socket");
  return {};
}

std::string read_tcp_check(lua_State* L, int idx, TcpCheck& c) {
  c.host = field_string(L, idx, "host", c.host);
  raw_field(L, idx, "port");
  bool integer = lua_isinteger(L, -1);
  lua_Integer port = integer ? lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  if (!integer) return "port: required (1-65535)";
  if (port < 1 || port > 65535)
    return "port: " + std::to_string(port) + " is out of range (1-65535)";
  c.port = static_cast<int>(port);
  c.send = field_string(L, idx, "send");
  c.expect = field_string(L, idx, "expect");
  c.timeout = field_number(L, idx, "timeout", c.timeout);
  if (c.timeout <= 0) return "timeout: must be positive";
  return {};
}

void cancel_probes(RuntimeState& rt) {
  if (rt.host.probes)
    for (auto& [serial, p] : rt.probes)
      if (p.id) rt.host.probes->cancel(p.id);
  rt.probes.clear();
}

int luaopen_vigil_probe(lua_State* L) {
  if (luaL_newmetatable(L, kCheckMeta)) {
    lua_newtable(L);
    lua_pushcfunction(L, l_cancel);
    lua_setfield(L, -2, "cancel");
    lua_pushcfunction(L, l_active);
    lua_setfield(L, -2, "active");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, kCheckMeta);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  luaL_newlib(L, kProbeFns);
  return 1;
}

}  // namespace vigil

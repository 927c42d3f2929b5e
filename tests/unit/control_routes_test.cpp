// The control routes, both ways: a JSON request → method/target/body →
// (as the server parses it) → the same JSON request.
#include "host/control/routes.hpp"

#include <gtest/gtest.h>

using namespace vigil;
using nlohmann::json;

namespace {

// What HttpServer makes of a call: path, decoded query, body.
HttpRequest as_received(const ControlHttpCall& call) {
  HttpRequest r;
  r.method = call.method;
  r.target = call.target;
  std::string_view t = r.target;
  size_t q = t.find('?');
  EXPECT_TRUE(percent_decode(t.substr(0, q), r.path, false));
  if (q != std::string_view::npos) {
    std::string_view query = t.substr(q + 1);
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      size_t eq = pair.find('=');
      std::string k, v;
      EXPECT_TRUE(percent_decode(pair.substr(0, eq), k, true));
      EXPECT_TRUE(percent_decode(pair.substr(eq + 1), v, true));
      r.query[k] = v;
    }
  }
  r.body = call.body;
  return r;
}

// Routes the received request on a router holding the control routes and
// returns the JSON request the daemon would get (null on an error reply).
json round_trip(const json& request, std::string* target = nullptr) {
  std::string error;
  auto call = control_http_call(request, error);
  EXPECT_TRUE(call) << request.dump() << ": " << error;
  if (!call) return nullptr;
  if (target) *target = call->method + " " + call->target;
  HttpRouter router;
  json got;
  add_control_routes(router, [&](const json& req, HttpReply) { got = req; });
  HttpRequest r = as_received(*call);
  EXPECT_TRUE(router.dispatch(r, HttpReply())) << call->target;
  return got;
}

}  // namespace

TEST(ControlRoutes, EveryCliRequestGoesThereAndBack) {
  const json requests[] = {
      {{"cmd", "status"}},
      {{"cmd", "ping"}},
      {{"cmd", "inspect"}, {"names", {"db", "web"}}, {"events", 5}},
      {{"cmd", "inspect"}, {"name", "db"}},
      {{"cmd", "inspect"}, {"name", "orders"}, {"kind", "group"}},
      {{"cmd", "events"}, {"n", 20}, {"watch", "db"}, {"id", "VGL0101"}},
      {{"cmd", "events"}, {"since", 41}, {"max", 100}},
      {{"cmd", "explain"}, {"name", "db"}},
      {{"cmd", "logs"}, {"name", "db"}},
      {{"cmd", "wait"}, {"name", "db"}, {"until", "ready"}, {"timeout_ms", 1500}},
      {{"cmd", "dumps"}, {"watch", "db"}},
      {{"cmd", "metrics"}},
      {{"cmd", "start"}, {"name", "db"}},
      {{"cmd", "stop"}, {"name", "a b/c"}},
      {{"cmd", "restart"}, {"name", "db@nodeb"}},
      {{"cmd", "pause"}, {"name", "db"}},
      {{"cmd", "resume"}, {"name", "db"}},
      {{"cmd", "stop"}, {"name", "orders"}, {"kind", "group"}},
      {{"cmd", "pause"}, {"all", true}},
      {{"cmd", "resume"}, {"all", true}},
      {{"cmd", "signal"}, {"name", "db"}, {"signal", "HUP"}},
      {{"cmd", "set"}, {"name", "db"}, {"key", "restart.limit"}, {"value", "7"}},
      {{"cmd", "set"}, {"name", "db"}, {"key", "restart.limit"}, {"default", true}},
      {{"cmd", "failover"}, {"name", "orders"}, {"kind", "group"}},
      {{"cmd", "failover"}, {"name", "orders"}, {"kind", "group"}, {"to", "nodeb"}},
      {{"cmd", "cluster"}},
      {{"cmd", "discover"}},
      {{"cmd", "reload"}},
      {{"cmd", "quit"}},
      {{"cmd", "quit"}, {"keep", true}},
  };
  for (const auto& req : requests) EXPECT_EQ(round_trip(req), req) << req.dump();
}

TEST(ControlRoutes, TheResourceModel) {
  std::string t;
  round_trip({{"cmd", "status"}}, &t);
  EXPECT_EQ(t, "GET /v1/status");
  round_trip({{"cmd", "inspect"}, {"name", "db"}}, &t);
  EXPECT_EQ(t, "GET /v1/watches/db");
  round_trip({{"cmd", "inspect"}, {"name", "g"}, {"kind", "group"}}, &t);
  EXPECT_EQ(t, "GET /v1/groups/g");
  round_trip({{"cmd", "events"}, {"since", 3}, {"watch", "db"}}, &t);
  EXPECT_EQ(t, "GET /v1/events?since=3&watch=db");
  round_trip({{"cmd", "explain"}, {"name", "db"}}, &t);
  EXPECT_EQ(t, "GET /v1/explain/db");
  for (const char* verb : {"start", "stop", "restart", "pause", "resume"}) {
    round_trip({{"cmd", verb}, {"name", "db"}}, &t);
    EXPECT_EQ(t, std::string("POST /v1/watches/db/") + verb);
    round_trip({{"cmd", verb}, {"name", "g"}, {"kind", "group"}}, &t);
    EXPECT_EQ(t, std::string("POST /v1/groups/g/") + verb);
  }
  round_trip({{"cmd", "failover"}, {"name", "g"}, {"kind", "group"}, {"to", "nodeb"}}, &t);
  EXPECT_EQ(t, "POST /v1/groups/g/failover");  // "to" goes in the body
  round_trip({{"cmd", "cluster"}}, &t);
  EXPECT_EQ(t, "GET /v1/cluster");
  round_trip({{"cmd", "discover"}}, &t);
  EXPECT_EQ(t, "GET /v1/discover");
  round_trip({{"cmd", "reload"}}, &t);
  EXPECT_EQ(t, "POST /v1/reload");
  round_trip({{"cmd", "stop"}, {"name", "a b/c"}}, &t);
  EXPECT_EQ(t, "POST /v1/watches/a%20b%2Fc/stop");
}

TEST(ControlRoutes, BadQueriesAndBodiesAreRefusedByName) {
  auto from = [](std::string method, std::string pattern, HttpFields query, std::string body = "") {
    for (const auto& r : control_routes())
      if (r.method == method && r.pattern == pattern) {
        HttpRequest req;
        req.method = method;
        req.query = std::move(query);
        req.body = std::move(body);
        req.params["name"] = "db";
        std::string error;
        auto j = control_request_from_http(r, req, error);
        return j ? j->dump() : "error: " + error;
      }
    return std::string("no route");
  };
  EXPECT_EQ(from("GET", "/v1/events", {{"since", "x"}}),
            "error: query parameter 'since': 'x' is not an integer");
  EXPECT_EQ(from("GET", "/v1/events", {{"bogus", "1"}}).substr(0, 38),
            "error: unknown query parameter 'bogus'");
  EXPECT_EQ(from("POST", "/v1/watches/{name}/stop", {}, "[1]"),
            "error: the request body must be a JSON object, got array");
  EXPECT_EQ(from("POST", "/v1/watches/{name}/stop", {}, "{nope"), "error: the request body is not JSON");
  // The path wins over the body; cmd comes from the route.
  EXPECT_EQ(from("POST", "/v1/watches/{name}/stop", {}, R"({"name":"other","cmd":"quit"})"),
            R"({"cmd":"stop","name":"db"})");
  EXPECT_EQ(from("GET", "/v1/all/pause", {}), "no route");
  // The request as it is.
  EXPECT_EQ(from("POST", "/v1/command", {}, R"({"cmd":"ping","x":[1]})"), R"({"cmd":"ping","x":[1]})");
  EXPECT_EQ(from("POST", "/v1/command", {}, "7").substr(0, 30), "error: request must be a JSON ");
  std::string error;
  EXPECT_FALSE(control_http_call({{"cmd", "frobnicate"}}, error));
  EXPECT_EQ(error, "unknown command 'frobnicate'");
  EXPECT_FALSE(control_http_call({{"cmd", "stop"}, {"name", 5}}, error));
  EXPECT_NE(error.find("no route takes"), std::string::npos) << error;
}

TEST(ControlRoutes, ReplyStatus) {
  EXPECT_EQ(control_reply_status({{"ok", true}}), 200);
  EXPECT_EQ(control_reply_status({{"ok", false}, {"error", "x"}}), 400);
  EXPECT_EQ(control_reply_status({{"ok", false}, {"error", "x"}, {"http_status", 404}}), 404);
  EXPECT_EQ(control_reply_status({{"ok", false}, {"http_status", 200}}), 400);
  EXPECT_EQ(control_reply_status(json::array()), 500);
}

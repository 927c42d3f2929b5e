// The control commands as HTTP routes: ONE table, read both ways. The
// daemon turns an HTTP request into the JSON request Daemon::handle takes
// ({"cmd": ..., fields}); the CLI turns its JSON request into method,
// target and body. Replies stay the JSON objects the daemon makes
// ({"ok":true,...} / {"ok":false,"error":...}), with an HTTP status that
// fits (control_reply_status).
//
// The resource model (issue 15, section 2):
//   GET  /v1/status                         status
//   GET  /v1/watches/NAME                   inspect {name}   (a watch, or a group by that name)
//   GET  /v1/groups/NAME                    inspect {name, kind: group}
//   GET  /v1/events?since=&watch=&id=&max=  events (since: resume after that seq)
//   GET  /v1/explain/NAME                   explain
//   POST /v1/watches/NAME/{start,stop,restart,pause,resume}
//   POST /v1/groups/NAME/{start,stop,restart,pause,resume}   (kind: group)
//   POST /v1/reload
// and the rest (ping, quit, metrics, dumps, logs, signal, wait, set, ...)
// under /v1 too; control_routes() lists them all.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/net/http_server.hpp"

namespace vigil {

// A request field that is not a path parameter: from the query (GET) or
// the JSON body (POST; a query works there too). Query text becomes the
// field's JSON type.
struct ControlField {
  enum class Type { String, Integer, Flag, List };  // List: "a,b,c" in a query
  std::string_view name;
  Type type = Type::String;
};

struct ControlRoute {
  std::string_view cmd;      // "stop"
  std::string_view method;   // "POST"
  std::string_view pattern;  // "/v1/watches/{name}/stop": {x} is the string field x
  std::vector<ControlField> fields;  // what else it takes
  // Fields the route sets itself (JSON object text, "" for none), e.g.
  // {"kind":"group"}; a JSON request matches the route only with them.
  std::string_view fixed;
};

// Every route, in the order JSON → HTTP tries them.
const std::vector<ControlRoute>& control_routes();

// HTTP → JSON: the request for Daemon::handle. nullopt with error (400:
// a query value of the wrong type, a body that is not a JSON object, an
// unknown query key) naming the key and value.
std::optional<nlohmann::json> control_request_from_http(const ControlRoute& route,
                                                        const HttpRequest& request,
                                                        std::string& error);

// JSON → HTTP (the CLI, local or remote): the first route of cmd whose
// path fields are present and whose `fixed` fields match. nullopt with
// error for an unknown cmd or a request no route takes.
struct ControlHttpCall {
  std::string method;
  std::string target;  // path and query, percent-encoded: "/v1/events?max=20&watch=db"
  std::string body;    // JSON object text for POST ("" for GET)
};
std::optional<ControlHttpCall> control_http_call(const nlohmann::json& request, std::string& error);

// The HTTP status of a reply: 200 when ok; else the reply's "http_status"
// field when it has one (the daemon says 404 for an unknown name, 409 for a
// refused action, 500 for a failure), 400 otherwise.
int control_reply_status(const nlohmann::json& reply);

// Adds every route (or those `keep` accepts) to router: each turns the
// request into JSON (400 on failure) and calls handle, whose reply goes out
// as application/json with control_reply_status. `handle` may answer later.
// `text`: commands answered with the JSON text their maker writes itself
// instead of through handle (no JSON tree: `status` of a thousand
// watches), whichever route names them, /v1/command too.
using ControlHandle = std::function<void(const nlohmann::json& request, HttpReply reply)>;
using ControlTextHandlers =
    std::map<std::string, std::function<std::string(const nlohmann::json& request)>, std::less<>>;
void add_control_routes(HttpRouter& router, ControlHandle handle, ControlTextHandlers text = {},
                        const std::function<bool(const ControlRoute&)>& keep = {});

// Sends a reply JSON on reply (the serializer add_control_routes uses).
void send_control_reply(HttpReply& reply, const nlohmann::json& body);

// HttpListenerOptions::error_body for listeners that answer JSON (the
// control socket, the API): the server's own 4xx/503 answers in the reply
// format, so a client prints their error as any other.
std::string control_error_body(int status, const std::string& message, std::string& content_type);

}  // namespace vigil

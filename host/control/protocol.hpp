// The control protocol: HTTP/1.1 over a unix stream socket (host/net's
// HttpServer), one route per command (host/control/routes.hpp). Inside, a
// request is the JSON object {"cmd": "...", ...arguments} that
// Daemon::handle takes; the reply is {"ok": true, ...} or {"ok": false,
// "error": "..."} (with "http_status" when it is not 400).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace vigil {

inline constexpr size_t kMaxRequestBytes = 64 * 1024;

// Parses one request (a body of POST /v1/command): valid JSON (UTF-8), an object; returns the
// error text on failure. Its fields are the handler's to check
// (Daemon::handle: every field is type-checked there, "cmd" included).
std::optional<nlohmann::json> parse_request(const std::string& line, std::string& error);

nlohmann::json ok_reply(nlohmann::json fields = nlohmann::json::object());
// http_status (404 an unknown name, 409 a refused action, 500 a failure)
// is the HTTP status the reply goes out with; 0 leaves it out (400).
nlohmann::json error_reply(const std::string& error, int http_status = 0);

}  // namespace vigil

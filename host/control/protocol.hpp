// The control protocol: one JSON object per line over a unix stream socket.
// A request is {"cmd": "...", ...arguments}; the reply is {"ok": true, ...}
// or {"ok": false, "error": "..."}; then the daemon closes the connection.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace vigil {

inline constexpr size_t kMaxRequestBytes = 64 * 1024;

// Parses one request line: valid JSON (UTF-8), an object; returns the
// error text on failure. Its fields are the handler's to check
// (Daemon::handle: every field is type-checked there, "cmd" included).
std::optional<nlohmann::json> parse_request(const std::string& line, std::string& error);

nlohmann::json ok_reply(nlohmann::json fields = nlohmann::json::object());
nlohmann::json error_reply(const std::string& error);

}  // namespace vigil

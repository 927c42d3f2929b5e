// The CLI end of the control socket: HTTP/1.1 (host/control/routes.hpp
// turns the JSON request into a route), the reply parsed with http_parser.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "host/net/transport.hpp"

namespace vigil {

inline constexpr double kDefaultControlTimeout = 10;

// How long a call may wait, and how it ended.
struct ControlCall {
  // Seconds the daemon may stay silent: to accept the connection, to take
  // the request, and between two bytes of the reply. A daemon that is
  // busy with a long command (a stop waiting for its process) says so with
  // a byte every 250 ms (see ControlServer), so only a daemon that does
  // not run its loop any more is given up on.
  double timeout = kDefaultControlTimeout;
  bool timed_out = false;  // set when the call gave up for that reason
};

// Sends one request and waits for the reply. nullopt (and `error`) when the
// daemon cannot be reached, does not answer in time, or the reply is not
// JSON.
std::optional<nlohmann::json> control_request(const std::string& socket_path,
                                              const nlohmann::json& request, std::string& error,
                                              ControlCall* call = nullptr);

// The same over a connected non-blocking transport (a unix socket today,
// TLS to another node later): handshake, request, reply, each byte within
// call->timeout. `where` names the daemon in errors ("vigil at PATH").
std::optional<nlohmann::json> control_request_over(Transport& transport, const std::string& where,
                                                   const nlohmann::json& request,
                                                   std::string& error, ControlCall* call = nullptr);

}  // namespace vigil

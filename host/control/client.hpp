// The CLI end of the control socket.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace vigil {

// Sends one request and waits for the reply. nullopt (and `error`) when the
// daemon cannot be reached or the reply is not JSON.
std::optional<nlohmann::json> control_request(const std::string& socket_path,
                                              const nlohmann::json& request, std::string& error);

}  // namespace vigil

// Default places: root uses /run/vigil and /var/lib/vigil; other users
// their runtime and state directories. VIGIL_SOCKET and VIGIL_STATE_DIR
// override the defaults; command-line flags override both.
#pragma once

#include <string>

namespace vigil {

std::string default_socket_path();
std::string default_state_dir();
// mkdir -p; returns an error text or "".
std::string make_dirs(const std::string& path, unsigned mode);

}  // namespace vigil

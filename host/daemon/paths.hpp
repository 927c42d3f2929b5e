// Default places: root uses /run/vigil and /var/lib/vigil; other users
// their runtime and state directories. VIGIL_SOCKET and VIGIL_STATE_DIR
// override the defaults; command-line flags override both.
#pragma once

#include <string>

namespace vigil {

std::string default_socket_path();
std::string default_state_dir();
// The Lua stdlib, one rule: $VIGIL_STDLIB when set; for a binary in the
// build tree it was built in, the source tree's stdlib/ (edits take
// effect without a rebuild, whatever is installed); otherwise the
// installed copy: BIN/../share/vigil/stdlib beside the binary (an install
// tree moved elsewhere still works), else PREFIX/share/vigil/stdlib as
// configured at build time. `--stdlib` on the command line comes first.
std::string default_stdlib_dir();
// mkdir -p; returns an error text or "".
std::string make_dirs(const std::string& path, unsigned mode);

}  // namespace vigil

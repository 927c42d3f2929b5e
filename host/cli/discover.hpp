// `vigil discover` (host/cli/discover.cpp).
#pragma once

#include <string>

#include "host/cli/cli.hpp"

namespace vigil::cli {

struct DiscoverArgs {
  std::string window = "10m";
  std::string every = "5s";
  bool json = false;
  std::string write;  // a rule file to write; refused when it exists without force
  bool force = false;
  std::string rules;  // rules that tune the policy (optional)
  std::string stdlib;
  std::string init_dir = "/etc/init.d";
  bool last = false;  // the daemon's last discovery (discover { every = ... }), not a new one
};
int cmd_discover(const DiscoverArgs& a);
// `vigil discover --last [--json]`: GET /v1/discover of the daemon.
int cmd_discover_last(Global& g, const DiscoverArgs& a);

}  // namespace vigil::cli

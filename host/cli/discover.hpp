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
};
int cmd_discover(const DiscoverArgs& a);

}  // namespace vigil::cli

// `vigil run` and `vigil check`.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>

#include "host/cli/cli.hpp"

namespace vigil::cli {

// The daemon's options as given: values by option name ("--rules"), and
// the flags that were present. Checked and converted by cmd_run (the
// messages name the option and the value).
struct RunArgs {
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
  std::optional<std::string> option(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
  bool flag(const std::string& name) const { return flags.contains(name); }
};

int cmd_run(const RunArgs& a, const std::string& socket);
int cmd_check(const RunArgs& a, const std::string& path);

}  // namespace vigil::cli

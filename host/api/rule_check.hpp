// The check of a rule set as `vigil check` makes it: a candidate
// RuleRuntime loads the rules (nothing acts while it validates), and the
// API's certificate, key and token file load as the daemon would load
// them. The CLI's `vigil check` and the dashboard's POST /v1/rules/check
// and /v1/rules/write use this one path.
#pragma once

#include <string>
#include <vector>

#include "lua/runtime.hpp"

namespace vigil {

struct RuleCheck {
  std::vector<std::string> errors;  // "file:line: message"; empty: OK
  size_t files = 0, watches = 0;
};
RuleCheck check_rules(const RuntimeOptions& options, const std::string& path);

}  // namespace vigil

// The web dashboard (issue 18): its files, embedded in the binary
// (host/api/web/, turned into byte arrays at build time by
// cmake/embed_web.cmake), and the API routes it needs beyond the control
// routes:
//
//   GET  /, /ui/FILE           the page, its script and style: no credentials
//                              needed (they hold no data), sent with
//                              Content-Security-Policy: default-src 'self'
//   GET  /v1/whoami            the caller's identity, and whether it may act
//   GET  /v1/schema/KIND       a rule kind's closed schema as data ("watch",
//                              "group": vigil.schema.describe), the form's source
//   GET  /v1/rules             the rules directory's files and their hashes
//   GET  /v1/rules/NAME        one file: its text and hash
//   POST /v1/rules/check       {name, text}: the rule set with that file as
//                              `vigil check` loads it -> errors (file:line)
//   GET  /v1/watches/NAME/output?stream=stdout|stderr&bytes=N
//                              the tail of a started process's captured
//                              output (operators by default: output may hold
//                              secrets)
//   POST /v1/rules/write       {name, text, hash}: refused when the file's
//                              content changed since it was read (hash),
//                              checked, written into the rules directory
//                              (names [a-z0-9_-]+.lua only), then reloaded;
//                              the file is put back when the reload fails
//
// Mechanism only: who may do what is vigil.api.authorize's (the API's
// `before` hook), as for every other route.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "host/net/http_server.hpp"

namespace vigil {

// One embedded file (web_assets.cpp, generated).
struct WebAsset {
  std::string_view name;  // "app.js"
  std::string_view body;
};
const std::vector<WebAsset>& web_assets();

// The headers every dashboard file is sent with.
extern const char* const kDashboardCsp;

// GET paths served without credentials: the dashboard's files.
bool dashboard_public(std::string_view method, std::string_view path);

struct DashboardHooks {
  // The rules directory (vigil run --rules DIR); empty when the rules are
  // one file (writing is refused then).
  std::string rules_dir;
  // The errors of loading the rules at path as `vigil check` does (empty: OK).
  std::function<std::vector<std::string>(const std::string& path)> check;
  // A reload of the running rules: its errors (empty: loaded).
  std::function<std::vector<std::string>()> reload;
  // The file a watch's captured stdout (or stderr) goes to; "" with why
  // when it has none (not a watch, not started by vigil, log = false).
  std::function<std::string(const std::string& watch, bool stderr_stream, std::string& why,
                            int& status)>
      output_path;
  // RuleRuntime::schema of the running rules.
  std::function<nlohmann::json(const std::string& kind)> schema;
  // vigil.api.authorize, for whoami's "operate".
  std::function<std::pair<bool, std::string>(const nlohmann::json& identity,
                                             const std::string& method, const std::string& path)>
      authorize;
};

// Adds the routes above to router.
void add_dashboard_routes(HttpRouter& router, DashboardHooks hooks);

// The check of a candidate rule file, shared by /v1/rules/check and
// /v1/rules/write: the rules directory as it is with NAME's text replaced
// (a directory of links to the others and the new text), loaded as
// `vigil check` loads it. Errors name the rules directory's file, not the
// temporary one. Exposed for tests.
std::vector<std::string> check_candidate(const DashboardHooks& hooks, const std::string& name,
                                         const std::string& text, std::string& error);

// Whether name is a rule file name the dashboard may write: [a-z0-9_-]+.lua.
bool valid_rule_file_name(std::string_view name);

// "web.lua:3: watch 'web'.restart.limit: ..." -> {file, line, message, key}
// ("key": the dotted path after the watch's name, "" when none).
nlohmann::json parse_rule_error(const std::string& error);

}  // namespace vigil

// Environment files in systemd's EnvironmentFile= syntax (issue 14): read
// by the parent at each start of a watch with `env_file`, so an edited
// file applies at the next restart without a reload.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vigil {

using EnvList = std::vector<std::pair<std::string, std::string>>;

// Parses the text of an environment file: KEY=VALUE lines; blank lines
// and lines starting with '#' or ';' are skipped; a value may be
// 'single-quoted' (verbatim, may span lines), "double-quoted" (\" \\ \`
// \$ and backslash-newline escapes, may span lines) or bare (a backslash
// keeps the next character, a backslash at the end of a line continues
// it; leading and trailing blanks are dropped, inner ones kept). Later
// assignments of a key win. Unlike systemd, which skips them with a
// warning, a line without '=', a key that is not a variable name and an
// unterminated quote are errors: "FILE:LINE: what". `file` names the file
// in errors only.
std::optional<std::string> parse_env_text(std::string_view text, const std::string& file,
                                          EnvList& out);

// Reads and parses `spec` ("/path" or "-/path": a missing optional file
// is no error and adds nothing). Errors name the file (and line).
std::optional<std::string> read_env_file(const std::string& spec, EnvList& out);

}  // namespace vigil

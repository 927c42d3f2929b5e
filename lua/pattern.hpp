// Vigil's Lua pattern matcher (lua/pattern.cpp) seen from outside lua/:
// a differential check against the stock matcher, for tests and fuzzers.
#pragma once

#include <string>

namespace vigil {

// Runs string.find, match, gmatch and gsub (with several inits and
// replacements) on `subject` with `pattern` through both the stock Lua
// functions and Vigil's bounded ones, in a fresh plain Lua state. True when
// every result and every error message agree; otherwise false, with the
// first difference in *diff. A call on which Vigil's matcher passes two
// million steps is not compared (the stock one could run for minutes).
bool lua_pattern_differential(const std::string& pattern, const std::string& subject,
                              std::string* diff = nullptr);

}  // namespace vigil

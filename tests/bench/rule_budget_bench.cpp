// vigil_rule_budget_bench: what the rule budget and Vigil's pattern
// matcher cost a normal callback, and how long a pathological rule runs
// before it is cut. In-process (RuleRuntime, no daemon); the baseline is
// the same chunk in a plain Lua state with no hook (lua_plain_run_seconds).
#include <chrono>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "lua/pattern.hpp"
#include "lua/runtime.hpp"
#include "tests/bench/bench_util.hpp"

using namespace vigil;

namespace {

const char* kLoop = "local n = 0 for i = 1, 2e6 do n = n + i % 7 end return n";
const char* kGsub =
    "local s = string.rep('key = value; other=thing ', 40000)\n"
    "for i = 1, 5 do s:gsub('(%w+)%s*=%s*(%w+)', '%2=%1') end";

std::string empty_rules() {
  auto dir = std::filesystem::temp_directory_path() / ("vigil-budget-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "empty.lua") << "-- nothing\n";
  return (dir / "empty.lua").string();
}

}  // namespace

int main() {
  RuntimeOptions o;
  o.stdlib_dir = VIGIL_SOURCE_DIR "/stdlib";
  o.callback_budget = 30;
  RuleRuntime rt(o, HostContext{});
  if (!rt.load(empty_rules()).ok) return 1;
  std::string err;
  auto in_rule = [&](const char* code) {
    double t0 = now_s();
    if (!rt.run_string(code, "=bench", err)) fprintf(stderr, "%s\n", err.c_str());
    return now_s() - t0;
  };
  auto plain = [&](const char* code) { return lua_plain_run_seconds(code, err); };
  // Interleaved, best of N: whichever runs first on a cold core is slower.
  auto compare = [&](const char* what, const char* code, int n, int per) {
    double best_plain = 1e9, best_rule = 1e9;
    for (int i = 0; i < n; ++i) {
      best_rule = std::min(best_rule, in_rule(code));
      best_plain = std::min(best_plain, plain(code));
    }
    printf("%s, best of %d: plain Lua state (stock, no hook) %.2f ms, rule callback %.2f ms\n",
           what, n, best_plain * 1e3 / per, best_rule * 1e3 / per);
  };
  compare("tight loop (2e6 iterations)", kLoop, 10, 1);
  compare("gsub on 1 MB (stock matcher vs vigil's)", kGsub, 5, 5);

  double t0 = now_s();
  const int calls = 100000;
  for (int i = 0; i < calls; ++i) rt.run_string("return 1", "=empty", err);
  printf("empty rule callback: %.2f us (arming and disarming the budget included)\n",
         (now_s() - t0) / calls * 1e6);

  o.callback_budget = 0.5;
  RuleRuntime cut(o, HostContext{});
  if (!cut.load(empty_rules()).ok) return 1;
  for (const char* code : {
           "local s = string.rep('a', 30000) return string.find(s, ('a*'):rep(10) .. 'b')",
           "local s = string.rep('a', 30000) return s:match(('.-'):rep(4) .. 'x')",
           "local s = string.rep('a', 30000) while true do pcall(string.find, s, ('a*'):rep(10) .. "
           "'b') end",
           "while true do pcall(function() while true do end end) end",
           "while true do pcall(string.rep, 'x', 1 << 26) end",
       }) {
    t0 = now_s();
    bool ok = cut.run_string(code, "=cut", err);
    printf("budget 500 ms: %s after %.1f ms: %s\n", ok ? "NOT CUT" : "cut", (now_s() - t0) * 1e3,
           code);
  }
  return 0;
}

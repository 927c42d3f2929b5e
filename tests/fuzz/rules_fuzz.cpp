// libFuzzer target: `vigil check` on a generated rule file. The input is
// written to a temporary rules.lua and loaded by a RuleRuntime with no
// host (as `vigil check` does), under small budgets: a rule that runs too
// long must end as a budget error well before the fuzzer's -timeout, so a
// fuzzer timeout is a budget escape (a finding).
//
// Safety on a shared machine: rule code can reach the io and os libraries.
// Inputs naming them, or anything that reaches globals by a computed name
// (_G, _ENV, load, require, package, debug), are skipped, so the
// fuzzer cannot write, remove or run anything. The side effects of check
// (issue 11, item 11) are tested by the runtime's own tests instead.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "lua/runtime.hpp"

namespace {

std::string g_dir;

bool is_ident_start(unsigned char c) { return c == '_' || (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
bool is_ident(unsigned char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

// True when an identifier-like token of the text is one of the names that
// lead to the file system, processes or computed globals.
bool names_unsafe(std::string_view text) {
  static const std::string_view kUnsafe[] = {"os",     "io",      "_G",      "_ENV",  "load",
                                             "loadfile", "dofile", "require", "package", "debug"};
  for (size_t i = 0; i < text.size();) {
    if (!is_ident_start(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_ident(static_cast<unsigned char>(text[j]))) ++j;
    std::string_view tok = text.substr(i, j - i);
    for (auto u : kUnsafe)
      if (tok == u) return true;
    i = j;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/vigil-rules-fuzz.XXXXXX";
  if (!mkdtemp(tmpl)) abort();
  g_dir = tmpl;
  atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (names_unsafe(text)) return 0;
  std::string path = g_dir + "/rules.lua";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  vigil::RuntimeOptions ro;
  ro.callback_budget = 0.05;
  ro.load_budget = 0.25;
  ro.memory_limit = 64u << 20;
  vigil::RuleRuntime rt(ro, vigil::HostContext{});
  vigil::LoadResult res = rt.load(path);
  // A refusal must say where and why.
  if (!res.ok && res.errors.empty()) abort();
  for (const auto& e : res.errors)
    if (e.empty()) abort();
  return 0;
}

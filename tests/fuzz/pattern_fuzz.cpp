// libFuzzer target: Vigil's bounded Lua pattern matcher (lua/pattern.cpp,
// behind string.find/match/gmatch/gsub in rules) against the stock Lua
// 5.4 functions, through lua_pattern_differential: every result and every
// error message must agree. The input is a pattern (up to 64 bytes, any
// bytes) and the subject (the rest, up to 4 KiB).
#include <fuzzer/FuzzedDataProvider.h>
#include <stdio.h>
#include <stdlib.h>

#include <string>

#include "lua/pattern.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  std::string pattern = p.ConsumeRandomLengthString(64);
  std::string subject = p.ConsumeRemainingBytesAsString();
  if (subject.size() > 4096) subject.resize(4096);
  std::string diff;
  if (!vigil::lua_pattern_differential(pattern, subject, &diff)) {
    fprintf(stderr, "pattern_fuzz: the matchers disagree: %s\n", diff.c_str());
    abort();
  }
  return 0;
}

// Runs one tests/lua/*_test.lua inside the real rule runtime (the real
// stdlib, sandbox and budget; no supervisor, so the file is loaded as a
// candidate: it may declare, not act). The file is loaded as a rule file,
// so tests/lua/lib/ (the `testing` library) is on its require path.
// Exit 0 only when the file loaded, declared at least one test, and every
// test passed; a load error, a declaration error left over, or a file
// without tests fails.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "lua/runtime.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE_test.lua\n", argv[0]);
    return 2;
  }
  vigil::RuntimeOptions o;
  o.stdlib_dir = VIGIL_SOURCE_DIR "/stdlib";
  // Another stdlib (e.g. main's, to see a new test fail before a fix).
  if (const char* other = getenv("VIGIL_TEST_STDLIB")) o.stdlib_dir = other;
  o.load_budget = 30;  // a noisy machine; a test that loops is still cut off
  o.callback_budget = 10;
  vigil::RuleRuntime rt(o, vigil::HostContext{});
  vigil::LoadResult res = rt.load(argv[1]);
  if (!res.ok) {
    for (const auto& e : res.errors) fprintf(stderr, "%s\n", e.c_str());
    fprintf(stderr, "%s: did not load\n", argv[1]);
    return 1;
  }
  std::string err;
  if (!rt.run_string("local T = package.loaded.testing\n"
                     "if not T then error('the file does not use the testing library', 0) end\n"
                     "T.finish()",
                     "=runner", err)) {
    fprintf(stderr, "%s: %s\n", argv[1], err.c_str());
    return 1;
  }
  return 0;
}

// The rules and examples that ship with Vigil load, and the default rules
// run (README command 1 starts vigil on them).
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;

TEST(Shipped, DefaultRulesAndExamplesPassCheck) {
  // examples/system/rules: what the package installs to /etc/vigil/rules.
  std::vector<std::string> dirs = {VIGIL_SOURCE_DIR "/rules",
                                   VIGIL_SOURCE_DIR "/examples/system/rules"};
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(VIGIL_SOURCE_DIR "/examples", ec))
    if (e.is_directory()) dirs.push_back(e.path().string());
  for (const auto& dir : dirs) {
    auto r = run_command({VIGIL_BINARY, "check", dir});
    EXPECT_EQ(r.code, 0) << dir << ": " << r.err;
    EXPECT_NE(r.out.find("OK"), std::string::npos) << dir;
  }
}

TEST(Shipped, DefaultRulesRunTheDemo) {
  Daemon d;
  std::filesystem::copy(
      VIGIL_SOURCE_DIR "/rules", d.rules_dir(),
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(d.start()) << d.output();
  auto status = d.status();
  ASSERT_GE(status.size(), 2u) << status.dump();
  EXPECT_TRUE(wait_for([&] {
    for (const auto& w : d.status())
      if (w["state"] != "running") return false;
    return true;
  })) << d.status().dump(1);
}

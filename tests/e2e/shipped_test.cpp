// The rules and examples that ship with Vigil load, and the default rules
// run (README command 1 starts vigil on them).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;

TEST(Shipped, DefaultRulesAndExamplesPassCheck) {
  // examples/system/rules: what the package installs to /etc/vigil/rules.
  std::vector<std::string> dirs = {VIGIL_SOURCE_DIR "/rules",
                                   VIGIL_SOURCE_DIR "/examples/system/rules"};
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(VIGIL_SOURCE_DIR "/examples", ec))
    if (e.is_directory() && e.path().filename() != "cluster") dirs.push_back(e.path().string());
  // examples/cluster: one rule set per kind of cluster software.
  for (const auto& e :
       std::filesystem::directory_iterator(VIGIL_SOURCE_DIR "/examples/cluster", ec))
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

// Every ```lua block of docs/coming-from.md is a whole rule file that
// loads: the translations from monit, supervisord and systemd cannot rot.
TEST(Shipped, ComingFromExamplesPassCheck) {
  std::istringstream page(read_file(VIGIL_SOURCE_DIR "/docs/coming-from.md"));
  std::vector<std::pair<int, std::string>> blocks;  // first line, text
  std::string line, block;
  int n = 0, start = 0;
  bool in = false;
  while (std::getline(page, line)) {
    ++n;
    if (!in && line == "```lua") {
      in = true;
      start = n + 1;
      block.clear();
    } else if (in && line == "```") {
      in = false;
      blocks.emplace_back(start, block);
    } else if (in) {
      block += line + "\n";
    }
  }
  ASSERT_GE(blocks.size(), 5u);
  for (const auto& [at, text] : blocks) {
    auto r = check_rule(text);
    EXPECT_EQ(r.code, 0) << "docs/coming-from.md:" << at << ": " << r.err;
  }
}

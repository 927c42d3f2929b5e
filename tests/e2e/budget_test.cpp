// End-to-end: rules that try to get round the daemon's promises (the time
// budget, text-only loading, a check or a rejected reload changing
// nothing) on the real daemon. After each, the daemon still answers
// `status` within a deadline and has logged what happened.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// A CLI call that cannot hang the test when the daemon does.
CommandResult bounded(const Daemon& d, const std::vector<std::string>& args, int seconds = 10) {
  std::vector<std::string> argv = {"/usr/bin/timeout", std::to_string(seconds), VIGIL_BINARY, "--socket",
                                   d.socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

bool answers(const Daemon& d) {
  return bounded(d, {"status"}).code == 0;
}

int budget_events_naming(const Daemon& d, const std::string& where) {
  int n = 0;
  for (const auto& e : d.events())
    if (e["id"] == "VGL0006" &&
        e["fields"]["error"].get<std::string>().find(where) != std::string::npos)
      ++n;
  return n;
}

const char kBytecodeBytes[] = "\x1b\x4c\x75\x61\x54\x00\x19\x93\x0d\x0a\x1a\x0a\x04\x08\x08\x78\x56\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x28\x77\x40\x01\x80\x80\x80\x00\x01\x02\x84\x51\x00\x00\x00\x03\x00\x00\x00\x46\x00\x02\x01\x46\x00\x01\x01\x81\x04\x8d\x62\x79\x74\x65\x63\x6f\x64\x65\x20\x72\x61\x6e\x81\x01\x00\x00\x80\x80\x80\x80\x80";
const std::string kBytecode(kBytecodeBytes, sizeof kBytecodeBytes - 1);

}  // namespace

TEST(Budget, EscapesInATimerAndAHandlerAreCut) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "s" { start = { "sleep", "1000" } }
vigil.timer.after(0, function()
  while true do pcall(function() while true do end end) end
end)
vigil.on("exit", function(ev)
  local o = setmetatable({}, { __tostring = function() while true do end end })
  while true do xpcall(function() error(o) end, function() while true do end end) end
end)
vigil.timer.after(0.1, function()
  local co = coroutine.wrap(function() while true do pcall(string.rep, "x", 1 << 24) end end)
  while true do pcall(co) end
end)
vigil.timer.after(0.2, function()
  return string.find(string.rep("a", 30000), ("a*"):rep(10) .. "b")
end)
)");
  ASSERT_TRUE(d.start({"--rule-budget", "0.2"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  ASSERT_TRUE(wait_for([&] { return answers(d) && budget_events_naming(d, "a.lua:") >= 3; }, 20s))
      << d.output();
  EXPECT_EQ(budget_events_naming(d, "a.lua:4:"), 1);
  EXPECT_EQ(budget_events_naming(d, "a.lua:15:"), 1);
  pid_t pid = d.watch_pid("s");
  kill(pid, SIGKILL);
  EXPECT_TRUE(wait_for([&] { return answers(d) && budget_events_naming(d, "a.lua:") >= 4; }, 20s))
      << d.output();
  // The policy decision stands: the watch is back.
  EXPECT_TRUE(wait_for([&] { return d.watch_pid("s") != pid && d.watch_state("s") == "running"; }));
}

TEST(Budget, EscapesAtReloadAndAtCheckAreCut) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  for (const char* body : {
           "while true do pcall(function() while true do end end) end\n",
           "while true do xpcall(function() while true do end end, function() while true do end "
           "end) end\n",
           "while true do coroutine.resume(coroutine.create(function() while true do end end)) end\n",
           "local keep = setmetatable({}, { __gc = function() while true do end end })\n",
       }) {
    d.write_rule("a.lua", std::string("watch \"s\" { start = { \"sleep\", \"1000\" } }\n") + body);
    auto check = run_command({"/usr/bin/timeout", "30", VIGIL_BINARY, "check", d.rules_dir()});
    EXPECT_EQ(check.code, 1) << body << check.err;
    EXPECT_NE(check.err.find("a.lua:2:"), std::string::npos) << body << check.err;
    auto r = bounded(d, {"reload"}, 30);
    EXPECT_EQ(r.code, 1) << body << r.err;  // rejected (124 would be a hang)
    EXPECT_NE(r.err.find("a.lua:2:"), std::string::npos) << body << r.err;
    EXPECT_TRUE(answers(d)) << body;
  }
  EXPECT_EQ(d.watch_pid("s"), pid);  // the old rules go on
}

TEST(Sandbox, CheckAndARejectedReloadWriteNothing) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  std::string target = d.dir() + "/written-by-rule";
  d.write_rule("a.lua", "watch \"s\" { start = { \"sleep\", \"1000\" } }\n"
                        "local f = io.open(\"" + target + "\", \"w\")\n"
                        "f:write(\"x\")\n");
  auto check = run_command({"/usr/bin/timeout", "30", VIGIL_BINARY, "check", d.rules_dir()});
  EXPECT_EQ(check.code, 1);
  EXPECT_NE(check.err.find("a.lua:2: io.open('" + target +
                           "', 'w') is not allowed while rules are being loaded or checked"),
            std::string::npos)
      << check.err;
  EXPECT_FALSE(std::filesystem::exists(target));
  auto r = bounded(d, {"reload"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("a.lua:2:"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(target));
  EXPECT_TRUE(answers(d));
}

TEST(Sandbox, BytecodeLibrariesAreRefusedAndTheDaemonGoesOn) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  d.write_rule("a.lua", "watch \"s\" { start = { \"sleep\", \"1000\" } }\nrequire \"evil\"\n");
  d.write_rule("lib/evil.lua", "");
  uint32_t seed = 99;
  for (int round = 0; round < 30; ++round) {
    std::string b = kBytecode;
    for (int k = 0; k < round % 5; ++k) {  // round 0: the bytecode as dumped
      seed = seed * 1103515245 + 12345;
      b[1 + (seed >> 8) % (b.size() - 1)] = static_cast<char>(seed >> 24);
    }
    std::ofstream(d.rules_dir() + "/lib/evil.lua", std::ios::binary | std::ios::trunc) << b;
    auto r = bounded(d, {"reload"});
    ASSERT_EQ(r.code, 1) << round << r.err;
    EXPECT_NE(r.err.find("lib/evil.lua"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("binary chunk"), std::string::npos) << r.err;
  }
  EXPECT_TRUE(answers(d));
  EXPECT_TRUE(d.running());
  EXPECT_EQ(d.watch_pid("s"), pid);
}

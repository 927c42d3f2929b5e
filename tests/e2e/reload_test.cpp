// End-to-end: hot reload and what it keeps, and rules that misbehave.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {
const char* kTwo = R"(
watch "keep" { start = { "sleep", "1000" } }
watch "change" { start = { "sleep", "1000" } }
watch "drop" { start = { "sleep", "1000" } }
)";
}

TEST(Reload, KeepsUnchangedRestartsChangedStopsRemovedStartsAdded) {
  Daemon d;
  d.write_rule("a.lua", kTwo);
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("keep") == "running" && d.watch_state("change") == "running" &&
           d.watch_state("drop") == "running";
  }));
  pid_t keep = d.watch_pid("keep"), change = d.watch_pid("change"), drop = d.watch_pid("drop");
  // History that must survive the reload.
  kill(keep, SIGKILL);
  ASSERT_TRUE(
      wait_for([&] { return d.watch_pid("keep") != keep && d.watch_state("keep") == "running"; }));
  keep = d.watch_pid("keep");

  d.write_rule("a.lua", R"(
watch "keep" { start = { "sleep", "1000" }, restart = { limit = 9 } }
watch "change" { start = { "sleep", "2000" } }
watch "added" { start = { "sleep", "1000" } }
)");
  auto r = d.cli({"reload"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(d.watch_pid("keep"), keep);  // policy-only change keeps the process
  EXPECT_EQ(d.watch("keep")["restarts"], 1);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("change");
    return p > 0 && p != change && d.watch_state("change") == "running";
  }));
  EXPECT_FALSE(process_alive(change));
  ASSERT_TRUE(wait_for([&] { return d.watch("drop").is_null(); }));
  EXPECT_FALSE(process_alive(drop));
  ASSERT_TRUE(wait_for([&] { return d.watch_state("added") == "running"; }));
}

TEST(Reload, BrokenFileKeepsOldRulesAndReportsFileLine) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "svc" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("svc") == "running"; }));
  pid_t pid = d.watch_pid("svc");

  d.write_rule("a.lua",
               "watch \"svc\" { start = { \"sleep\", \"1000\" } }\nwatch \"new\" {\n  start = "
               "\"x\",\n  restrat = {},\n}\n");
  auto r = d.cli({"reload"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("a.lua:2:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("restrat"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did you mean 'restart'"), std::string::npos) << r.err;
  EXPECT_EQ(d.watch_pid("svc"), pid);
  EXPECT_TRUE(d.watch("new").is_null());
  EXPECT_EQ(d.count_events("VGL0004"), 1);

  d.write_rule("a.lua", "watch \"svc\" { start = { \"sleep\", \"1000\" } \n");  // syntax error
  r = d.cli({"reload"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("a.lua:"), std::string::npos) << r.err;
  EXPECT_EQ(d.watch_pid("svc"), pid);

  // The old rules still act: a death is still recovered.
  kill(pid, SIGKILL);
  EXPECT_TRUE(
      wait_for([&] { return d.watch_pid("svc") != pid && d.watch_state("svc") == "running"; }));
}

TEST(Reload, SighupAndFileChangeReload) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "one" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("one") == "running"; }));

  // inotify: a new rule file is picked up without any command.
  d.write_rule("b.lua", R"(watch "two" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(wait_for([&] { return d.watch_state("two") == "running"; }, 10s)) << d.output();
  EXPECT_GE(d.count_events("VGL0008"), 1);

  // SIGHUP.
  int loaded = d.count_events("VGL0003");
  kill(d.pid(), SIGHUP);
  EXPECT_TRUE(d.wait_event("VGL0003", "", loaded + 1));
}

TEST(Reload, RuleLibrariesAreSharedWithRequire) {
  Daemon d;
  d.write_rule("lib/mylib.lua", R"(
local M = {}
function M.sleeper(name) watch(name) { start = { "sleep", "1000" } } end
return M
)");
  d.write_rule("a.lua", R"(
local mylib = require "mylib"
mylib.sleeper "x1"
mylib.sleeper "x2"
)");
  ASSERT_TRUE(d.start()) << d.output();
  EXPECT_TRUE(wait_for(
      [&] { return d.watch_state("x1") == "running" && d.watch_state("x2") == "running"; }));
  // Declared through the library, located at the rule file's line.
  std::string where = d.watch("x2")["where"];
  EXPECT_TRUE(where.ends_with("a.lua:4")) << where;
}

TEST(Rules, InfiniteLoopInCallbackIsCutOffAndDaemonGoesOn) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "s" { start = { "sleep", "1000" } }
vigil.on("exit", function(ev)
  while true do end
end)
)");
  ASSERT_TRUE(d.start({"--rule-budget", "0.2"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  kill(pid, SIGKILL);
  ASSERT_TRUE(d.wait_event("VGL0006")) << d.output();
  auto events = d.events();
  bool names_line = false;
  for (const auto& e : events)
    if (e["id"] == "VGL0006" &&
        e["fields"]["error"].get<std::string>().find("a.lua:4:") != std::string::npos)
      names_line = true;
  EXPECT_TRUE(names_line) << events.dump(1);
  // The daemon answers and the policy decision made before the loop stands.
  EXPECT_EQ(d.cli({"status"}).code, 0);
  EXPECT_TRUE(wait_for([&] { return d.watch_pid("s") != pid && d.watch_state("s") == "running"; }));
}

TEST(Rules, LoopAtLoadTimeRejectsTheRules) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  d.write_rule("a.lua", "watch \"s\" { start = { \"sleep\", \"1000\" } }\nwhile true do end\n");
  auto r = d.cli({"reload"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("budget"), std::string::npos) << r.err;
  EXPECT_EQ(d.watch_state("s"), "running");
}

TEST(Rules, ErrorInHookIsLoggedAndWatchStillRecovers) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "s" { start = { "sleep", "1000" } }
vigil.on("exit", function(ev) error("boom") end)
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  kill(pid, SIGKILL);
  ASSERT_TRUE(d.wait_event("VGL0005", "s")) << d.output();
  EXPECT_TRUE(wait_for([&] { return d.watch_pid("s") != pid && d.watch_state("s") == "running"; }));
}

TEST(Rules, StartFailsCleanlyOnBadRules) {
  Daemon d;
  d.write_rule(
      "a.lua",
      "watch \"s\" { start = { \"sleep\", \"1000\" }, restart = { within = \"10 minutes\" } }\n");
  EXPECT_FALSE(d.start());
  EXPECT_NE(d.output().find("a.lua:1:"), std::string::npos) << d.output();
  EXPECT_NE(d.output().find("10 minutes"), std::string::npos) << d.output();
}

TEST(Rules, MisuseIsAnErrorNotSilence) {
  Daemon d;
  d.write_rule(
      "a.lua",
      "watch \"s\" { start = { \"sleep\", \"1000\" } }\nvigil.on(\"exitt\", function() end)\n");
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("a.lua:2: vigil.on: unknown event 'exitt'"), std::string::npos) << r.err;

  d.write_rule("a.lua", R"(
watch "s" { start = { "sleep", "1000" } }
vigil.timer.after(0, function() watch "late" { start = { "sleep", "1" } } end)
)");
  ASSERT_TRUE(d.start()) << d.output();
  EXPECT_TRUE(d.wait_event("VGL0005")) << d.output();
  EXPECT_TRUE(d.watch("late").is_null());
}

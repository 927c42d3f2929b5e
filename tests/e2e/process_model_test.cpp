// End-to-end: when a process is restarted at all (issue 14): restart.on
// as systemd's Restart=, success_exit, oneshot jobs (done, and ready for
// what requires them once they succeed), and autostart = false (held
// until started by an operator or by a watch that requires it).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// A shell command that exits with the code in `file` (run by vigil), or
// sleeps while the file says "sleep"; each run is counted in file.runs.
std::string exits_as(const std::string& file) {
  return "n=$(cat " + file + "); echo x >> " + file +
         ".runs; [ \"$n\" = sleep ] && exec sleep 1000; exit $n";
}

int runs(const std::string& file) {
  std::string s = read_file(file + ".runs");
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST(RestartOn, FailureRestartsAFailedExitAndEndsACleanOneAsDone) {
  Daemon d;
  std::string code = d.dir() + "/code";
  write_file(code, "3\n");
  d.write_rule("a.lua", "watch \"job\" { start = { \"sh\", \"-c\", [[" + exits_as(code) +
                            "]] }, restart = { on = \"failure\", backoff = \"1s..2s\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  // exit 3 is a failure: restarted (after the first, at once; then backoff).
  ASSERT_TRUE(wait_for([&] { return runs(code) >= 2; })) << d.output();
  write_file(code, "0\n");
  ASSERT_TRUE(wait_for([&] { return d.watch_state("job") == "done"; }, 15s)) << d.output();
  auto w = d.watch("job");
  EXPECT_EQ(w["outcome"], "success");
  EXPECT_EQ(w["last_exit"]["code"], 0);
  EXPECT_TRUE(w["pid"].is_null());
  auto ev = d.last_event("VGL0205", "job");
  ASSERT_FALSE(ev.is_null());
  EXPECT_NE(ev["message"].get<std::string>().find("restart.on = \"failure\""), std::string::npos)
      << ev.dump();
  // Done stays done: nothing restarts it, a reload of the same rules
  // neither, and an operator start runs it again.
  int before = runs(code);
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_EQ(d.watch_state("job"), "done");
  write_file(code, "sleep\n");
  ASSERT_EQ(d.cli({"start", "job"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("job") == "running"; })) << d.output();
  // "running" is set at the spawn, before the shell has counted its run.
  EXPECT_TRUE(wait_for([&] { return runs(code) >= before + 1; })) << d.output();
  EXPECT_EQ(runs(code), before + 1);
}

TEST(RestartOn, AbnormalRestartsASignalOrAHangButNotAnExitCode) {
  Daemon d;
  int port = free_port();  // nothing listens: the probe fails
  std::string hung = d.dir() + "/hung";
  d.write_rule("a.lua", R"(
watch "sig" { start = { "sh", "-c", "trap 'exit 3' USR1; sleep 1000 & wait" },
              restart = { on = "abnormal" } }
watch "probed" { start = { "sh", "-c", "trap 'exit 0' TERM; echo x >> )" +
                            hung + R"(; sleep 1000 & wait" },
                 restart = { on = "abnormal", backoff = "1s..1s" },
                 probes = { tcp { port = )" + std::to_string(port) +
                            R"(, every = "300ms", fails = 1, startup = "0s" } } }
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("sig") == "running"; })) << d.output();
  pid_t first = d.watch_pid("sig");
  // Killed by a signal: abnormal, restarted.
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("sig");
    return p > 0 && p != first && d.watch_state("sig") == "running";
  })) << d.output();
  // exit 3 (the trap): a plain failure, not abnormal: done, as a failure.
  pid_t second = d.watch_pid("sig");
  ASSERT_EQ(kill(second, SIGUSR1), 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("sig") == "done"; })) << d.output();
  EXPECT_EQ(d.watch("sig")["outcome"], "failure");
  EXPECT_EQ(d.watch("sig")["last_exit"]["code"], 3);
  EXPECT_TRUE(d.wait_event("VGL0206", "sig")) << d.output();
  EXPECT_EQ(d.cli({"status", "sig", "--check"}).code, 3);  // LSB: not running
  // The hung one exits 0 when vigil's TERM comes: that is still an end
  // vigil forced, so it is restarted (exit 0 alone would have been done).
  ASSERT_TRUE(wait_for([&] {
    std::string s = read_file(hung);
    return std::count(s.begin(), s.end(), '\n') >= 2;
  }, 20s)) << d.output();
  auto w = d.watch("probed");
  EXPECT_NE(w["state"], "done") << w.dump();
  EXPECT_EQ(d.count_events("VGL0205", "probed") + d.count_events("VGL0206", "probed"), 0);
}

TEST(RestartOn, SuccessExitListsCodesThatEndTheWatchAsDone) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "three" { start = { "sh", "-c", "exit 3" }, restart = { on = "failure" }, success_exit = { 0, 3 } }
watch "term" { start = { "sh", "-c", "kill -TERM $$" }, restart = { on = "failure" }, success_exit = { 0, "TERM" } }
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("three") == "done" && d.watch_state("term") == "done";
  })) << d.output();
  EXPECT_EQ(d.watch("three")["outcome"], "success");
  EXPECT_EQ(d.watch("term")["outcome"], "success");
  EXPECT_EQ(d.watch("three")["restarts"], 0);
  EXPECT_EQ(d.watch("term")["last_exit"]["signal"], "TERM");
  // Done as a success is fine for scripts (LSB 0), though killed by TERM.
  EXPECT_EQ(d.cli({"status", "term", "--check"}).code, 0);
}

TEST(Oneshot, ItsDependentsStartOnceItSucceedsAndAFailureHoldsThem) {
  Daemon d;
  std::string mark = d.dir() + "/migrated";
  d.write_rule("a.lua", R"(
watch "migrate" { start = { "sh", "-c", "sleep 0.3; echo ok > )" + mark + R"(" }, oneshot = true }
watch "app" { start = { "sh", "-c", "test -f )" + mark + R"( && exec sleep 1000; exit 9" },
              requires = "migrate" }
watch "broken" { start = { "sh", "-c", "exit 4" }, oneshot = true }
watch "after_broken" { start = "sleep 1000", requires = "broken" }
)");
  ASSERT_TRUE(d.start()) << d.output();
  // app ran only after the job had written its mark (else it exits 9).
  ASSERT_TRUE(wait_for([&] { return d.watch_state("app") == "running"; })) << d.output();
  EXPECT_EQ(d.watch("app")["restarts"], 0) << d.watch("app").dump();
  auto m = d.watch("migrate");
  EXPECT_EQ(m["state"], "done");
  EXPECT_EQ(m["outcome"], "success");
  EXPECT_EQ(m["oneshot"], true);
  EXPECT_EQ(m["ready"], true);
  auto ev = d.last_event("VGL0205", "migrate");
  ASSERT_FALSE(ev.is_null()) << d.output();
  EXPECT_NE(ev["message"].get<std::string>().find("ran to completion"), std::string::npos);
  // A failed oneshot is an event, is not retried, and what requires it waits.
  ASSERT_TRUE(wait_for([&] { return d.watch_state("broken") == "done"; })) << d.output();
  EXPECT_EQ(d.watch("broken")["outcome"], "failure");
  EXPECT_TRUE(d.wait_event("VGL0206", "broken"));
  EXPECT_EQ(d.watch("broken")["restarts"], 0);
  EXPECT_EQ(d.watch_state("after_broken"), "waiting");
  EXPECT_EQ(d.watch_pid("after_broken"), 0);
}

TEST(Autostart, FalseHoldsAWatchUntilStartedOrRequired) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "tool" { start = "sleep 1000", autostart = false }
watch "dep" { start = "sleep 1000", autostart = false }
watch "user" { start = "sleep 1000", requires = "dep" }
watch "other" { start = "sleep 1000" }
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("other") == "running" && d.watch_state("user") == "running";
  })) << d.output();
  // Declared, shown, not started.
  auto t = d.watch("tool");
  EXPECT_EQ(t["state"], "stopped");
  EXPECT_TRUE(t["pid"].is_null());
  EXPECT_EQ(t["autostart"], false);
  // Pulled in by what requires it, with an event saying so.
  EXPECT_EQ(d.watch_state("dep"), "running");
  auto ev = d.last_event("VGL0207", "dep");
  ASSERT_FALSE(ev.is_null()) << d.output();
  EXPECT_EQ(ev["fields"]["by"], "user") << ev.dump();
  // A reload does not start it; an operator does.
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_EQ(d.watch_state("tool"), "stopped");
  ASSERT_EQ(d.cli({"start", "tool"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("tool") == "running"; })) << d.output();
  // Once started it is supervised like any other: restarted when it dies.
  pid_t p = d.watch_pid("tool");
  ASSERT_EQ(kill(p, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] {
    pid_t q = d.watch_pid("tool");
    return q > 0 && q != p;
  })) << d.output();
}

TEST(RestartOn, BadValuesAreFileLineErrorsAtCheckTime) {
  struct Case {
    const char* rule;
    const char* error;
  } cases[] = {
      {R"(watch "w" { start = "x", restart = { on = "sometimes" } })",
       "restart.on: expected one of always, failure, abnormal, never"},
      {R"(watch "w" { start = "x", oneshot = true, restart = { on = "always" } })",
       "a oneshot runs to completion"},
      {R"(watch "w" { start = "x", success_exit = { 0, 256 } })", "exit code 256 is not in 0..255"},
      {R"(watch "w" { match = { name = "x" }, autostart = false })",
       "'autostart' applies to a watch vigil starts"},
  };
  for (const auto& c : cases) {
    auto r = check_rule(c.rule);
    EXPECT_NE(r.code, 0) << c.rule;
    EXPECT_NE(r.err.find(".lua:1:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.error), std::string::npos) << r.err;
  }
}

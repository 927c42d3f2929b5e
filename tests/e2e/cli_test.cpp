// End-to-end: the CLI's commands for people and scripts (issue 14):
// status NAME, status --json --all with groups, --check exit codes, --state,
// signal, wait, logs, set --default, and usage errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "host/core/json_read.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;
using vigil::field;

namespace {

// A CLI command left running (logs -f), its stdout read as it comes.
class Running {
 public:
  explicit Running(const std::vector<std::string>& argv) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(p[1], 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(p[1]);
    fd_ = p[0];
    fcntl(fd_, F_SETFL, O_NONBLOCK);
  }
  ~Running() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  // Everything read so far, once it holds `text` (or the deadline passed).
  const std::string& wait_for_text(const std::string& text, std::chrono::milliseconds t = 10s) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (out_.find(text) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      poll(&p, 1, 50);
      char buf[4096];
      ssize_t n;
      while ((n = read(fd_, buf, sizeof buf)) > 0) out_.append(buf, static_cast<size_t>(n));
    }
    return out_;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
};

nlohmann::json group_of(const nlohmann::json& all, const std::string& name) {
  for (const auto& g : field(all, "groups"))
    if (field(g, "group") == name) return g;
  return nullptr;
}

}  // namespace

TEST(Cli, StatusOfANameShowsProbesBudgetAndEvents) {
  Daemon d;
  std::string flag = d.dir() + "/ready.flag";
  d.write_rule("a.lua", "watch \"w\" {\n  start = { \"sleep\", \"1000\" },\n"
                        "  restart = { limit = 3, within = \"1h\" },\n"
                        "  probes = { script { name = \"flag\", command = \"test -e " + flag +
                            "\", every = \"200ms\", readiness = true } },\n}\n");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") > 0; }));
  pid_t first = d.watch_pid("w");
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") > 0 && d.watch_pid("w") != first; }));
  // The restart's bookkeeping (the budget's count) is written up after the
  // new process runs (EventLoop::lag): wait for it, not for the pid alone.
  CommandResult r;
  nlohmann::json items;
  ASSERT_TRUE(wait_for([&] {
    r = d.cli({"status", "w", "--json"});
    if (r.code != 0) return false;
    items = nlohmann::json::parse(r.out, nullptr, false);
    return items.is_array() && items.size() == 1 && items[0]["budget"]["used"] == 1;
  })) << r.out << r.err;
  ASSERT_EQ(items.size(), 1u);
  const auto& w = items[0];
  EXPECT_EQ(field(w, "kind"), "watch");
  EXPECT_EQ(field(field(w, "budget"), "used"), 1) << w.dump();
  EXPECT_EQ(field(field(w, "budget"), "left"), 2) << w.dump();
  EXPECT_EQ(field(field(w, "budget"), "limit"), 3);
  EXPECT_EQ(field(field(w, "budget"), "within"), 3600);
  ASSERT_EQ(field(w, "probes").size(), 1u);
  EXPECT_EQ(field(field(w, "probes")[0], "name"), "flag");
  EXPECT_TRUE(field(w, "checks").is_object());
  EXPECT_FALSE(field(w, "events").empty());
  // For people: the same, and an unknown name among known ones.
  r = d.cli({"status", "w", "nosuch"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("budget:    1 of 3 restarts used within 1h00m, 2 left"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("flag"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("last events:"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("no watch or group named 'nosuch'"), std::string::npos) << r.err;
  // The default state checks sample a healthy child at half the shortest
  // threshold (blocked, 60 s), not at `every`.
  EXPECT_EQ(field(field(w, "checks"), "healthy_every"), 30) << w.dump();
  EXPECT_NE(r.out.find("checks (every 30.0s while healthy, every 5.0s once one is bad):"), std::string::npos)
      << r.out;
  // Not ready yet (the flag is missing): degraded for --check.
  EXPECT_EQ(d.cli({"status", "w", "--check"}).code, 1);
  write_file(flag, "");
  EXPECT_TRUE(wait_for([&] { return d.cli({"status", "w", "--check"}).code == 0; }));
}

TEST(Cli, StatusJsonAllListsGroupsWithTheirState) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "db" { start = { "sleep", "100011" } }
watch "slow" { start = { "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done" }, stop = { timeout = "2s" } }
group "g" { restart = { limit = 5, within = "1h" }, "db", "slow" }
watch "lone" { start = { "sleep", "100012" } }
)");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  auto all = [&] {
    auto r = d.cli({"status", "--json", "--all"});
    return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  };
  auto gstate = [&] { return field(group_of(all(), "g"), "state"); };
  ASSERT_TRUE(wait_for([&] { return gstate() == "ready"; })) << all().dump();
  // The plain --json stays the array of watches.
  EXPECT_TRUE(d.status().is_array());
  EXPECT_TRUE(field(all(), "watches").is_array());
  EXPECT_TRUE(field(all(), "daemon").is_object());
  EXPECT_EQ(d.cli({"status", "g", "--check"}).code, 0);
  // A member is a watch (its "group" field names its group).
  EXPECT_EQ(d.cli({"status", "db", "--check"}).code, 0);
  EXPECT_EQ(d.cli({"status", "--check"}).code, 0);
  // A group restart in flight: `slow` takes its stop timeout to go.
  std::thread restart([&] { d.cli({"restart", "g"}); });
  EXPECT_TRUE(wait_for([&] { return gstate() == "restarting"; }, 5s)) << all().dump();
  EXPECT_EQ(d.cli({"status", "g", "--check"}).code, 1);
  restart.join();
  ASSERT_TRUE(wait_for([&] { return gstate() == "ready"; })) << all().dump();
  // One member down: degraded.
  ASSERT_EQ(d.cli({"stop", "db"}).code, 0);
  EXPECT_EQ(gstate(), "degraded");
  EXPECT_EQ(d.cli({"status", "g", "--check"}).code, 1);
  // All down: stopped.
  ASSERT_EQ(d.cli({"stop", "g"}).code, 0);
  EXPECT_EQ(gstate(), "stopped");
  EXPECT_EQ(d.cli({"status", "g", "--check"}).code, 3);
  // Given up: exhausted.
  ASSERT_EQ(d.cli({"start", "g"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return gstate() == "ready"; })) << all().dump();
  ASSERT_EQ(d.cli({"set", "g", "restart.limit", "0"}).code, 0);
  ASSERT_EQ(kill(d.watch_pid("db"), SIGKILL), 0);
  EXPECT_TRUE(wait_for([&] { return gstate() == "exhausted"; })) << all().dump();
  EXPECT_EQ(d.cli({"status", "g", "--check"}).code, 3);
  auto r = d.cli({"status", "g", "--json"});
  EXPECT_EQ(field(nlohmann::json::parse(r.out)[0], "kind"), "group");
}

TEST(Cli, StatusCheckExitCodes) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "up" { start = { "sleep", "100021" } }
watch "flaky" { start = { "sh", "-c", "exit 1" }, restart = { limit = 100, delay = "1h" } }
watch "gone" { start = { "sh", "-c", "exit 1" }, restart = { limit = 0 } }
watch "off" { start = { "sleep", "100022" } }
)");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("up") == "running" && d.watch_state("flaky") == "backoff" &&
           d.watch_state("gone") == "exhausted" && d.watch_state("off") == "running";
  })) << d.status().dump();
  ASSERT_EQ(d.cli({"stop", "off"}).code, 0);
  EXPECT_EQ(d.cli({"status", "up", "--check"}).code, 0);
  EXPECT_EQ(d.cli({"status", "flaky", "--check"}).code, 1);
  EXPECT_EQ(d.cli({"status", "gone", "--check"}).code, 3);
  EXPECT_EQ(d.cli({"status", "off", "--check"}).code, 3);
  EXPECT_EQ(d.cli({"status", "nosuch", "--check"}).code, 4);
  EXPECT_EQ(d.cli({"status", "up", "flaky", "--check"}).code, 1);  // the worst
  EXPECT_EQ(run_command({VIGIL_BINARY, "--socket", d.dir() + "/none.sock", "status", "up",
                         "--check"})
                .code,
            4);
}

// --state: the state word of each name, for scripts without a JSON
// parser (the OCF agent, cluster/ocf/group, maps it to OCF codes).
TEST(Cli, StatusStatePrintsOneWordPerName) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "up" { start = { "sleep", "100023" } }
watch "gone" { start = { "sh", "-c", "exit 1" } }
watch "later" { start = { "sleep", "100024" }, autostart = false }
group "g" { "up", "later" }
group "h" { restart = { limit = 0 }, "gone" }
)");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("up") == "running" && d.cli({"status", "h", "--state"}).out == "exhausted\n";
  })) << d.status().dump();
  auto r = d.cli({"status", "up", "later", "g", "h", "--state"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "running\nstopped\ndegraded\nexhausted\n");
  ASSERT_EQ(d.cli({"start", "g"}).code, 0);
  EXPECT_TRUE(wait_for([&] { return d.cli({"status", "g", "--state"}).out == "ready\n"; }));
  ASSERT_EQ(d.cli({"stop", "g"}).code, 0);
  EXPECT_EQ(d.cli({"status", "g", "--state"}).out, "stopped\n");
  // An unknown name: "unknown" in its place, exit 4; no daemon: exit 3.
  r = d.cli({"status", "nosuch", "g", "--state"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.out, "unknown\nstopped\n");
  EXPECT_NE(r.err.find("no watch or group named 'nosuch'"), std::string::npos) << r.err;
  EXPECT_EQ(run_command({VIGIL_BINARY, "--socket", d.dir() + "/none.sock", "status", "g",
                         "--state"})
                .code,
            3);
  EXPECT_EQ(d.cli({"status", "--state"}).code, 2);
  EXPECT_EQ(d.cli({"status", "g", "--state", "--check"}).code, 2);
}

TEST(Cli, SignalReachesTheProcessAndEachMemberOfAGroup) {
  Daemon d;
  std::string a = d.dir() + "/a.got", b = d.dir() + "/b.got";
  auto catcher = [](const std::string& file) {
    return "{ \"sh\", \"-c\", \"trap 'echo usr1 >> " + file +
           "' USR1; while :; do sleep 0.05; done\" }";
  };
  d.write_rule("a.lua", "watch \"a\" { start = " + catcher(a) + " }\n" +
                            "watch \"b\" { start = " + catcher(b) + " }\n" +
                            "group \"both\" { \"a\", \"b\" }\n"
                            "watch \"idle\" { start = { \"sleep\", \"100031\" } }\n");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("a") && d.watch_pid("b"); }));
  // The shell must have set its trap before the signal comes.
  std::this_thread::sleep_for(300ms);  // no event says a shell ran `trap`
  pid_t pa = d.watch_pid("a");
  auto r = d.cli({"signal", "a", "USR1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("a: USR1 sent to pid " + std::to_string(pa)), std::string::npos) << r.out;
  EXPECT_TRUE(wait_for([&] { return read_file(a) == "usr1\n"; })) << read_file(a);
  EXPECT_EQ(d.watch_pid("a"), pa);  // a signal only: no restart
  EXPECT_TRUE(d.wait_event("VGL0185", "a"));
  // A group: each member; by number too.
  r = d.cli({"signal", "both", std::to_string(SIGUSR1)});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(wait_for([&] { return read_file(a) == "usr1\nusr1\n" && read_file(b) == "usr1\n"; }));
  // Nothing to signal: refused, clearly.
  ASSERT_EQ(d.cli({"stop", "idle"}).code, 0);
  r = d.cli({"signal", "idle", "HUP"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no process to signal"), std::string::npos) << r.err;
  EXPECT_EQ(d.cli({"signal", "a", "SIGNOPE"}).code, 2);
  EXPECT_EQ(d.cli({"signal", "nosuch", "HUP"}).code, 1);
}

TEST(Cli, WaitReturnsWhenReadyAndTimesOutWithItsCode) {
  Daemon d;
  std::string flag = d.dir() + "/ready.flag";
  d.write_rule("a.lua", "watch \"w\" {\n  start = { \"sleep\", \"1000\" },\n"
                        "  probes = { script { command = \"test -e " + flag +
                            "\", every = \"100ms\", readiness = true } },\n}\n"
                            "watch \"x\" { start = { \"sleep\", \"100041\" } }\n");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("w") == "running"; }));
  // Not ready: a short wait times out with 124, and says where it stands.
  auto t0 = std::chrono::steady_clock::now();
  auto r = d.cli({"wait", "w", "--timeout", "0.3"});
  EXPECT_EQ(r.code, 124) << r.err;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
  EXPECT_NE(r.err.find("not ready"), std::string::npos) << r.err;
  // Two waits at once, both answered when the watch becomes ready.
  vigil::test::CommandResult r1, r2;
  std::thread w1([&] { r1 = d.cli({"wait", "w", "--until", "ready", "--timeout", "30"}); });
  std::thread w2([&] { r2 = d.cli({"wait", "w", "--timeout", "30s"}); });
  std::this_thread::sleep_for(200ms);  // let both be waiting (a reached state is also fine)
  t0 = std::chrono::steady_clock::now();
  write_file(flag, "");
  w1.join();
  w2.join();
  EXPECT_EQ(r1.code, 0) << r1.err;
  EXPECT_EQ(r2.code, 0) << r2.err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  // Reached already: at once.
  EXPECT_EQ(d.cli({"wait", "w", "--until", "running"}).code, 0);
  // Stopped by the operator: ready cannot come; stopped is reached.
  ASSERT_EQ(d.cli({"stop", "x"}).code, 0);
  EXPECT_EQ(d.cli({"wait", "x", "--until", "ready", "--timeout", "30"}).code, 1);
  EXPECT_EQ(d.cli({"wait", "x", "--until", "stopped"}).code, 0);
  // A wait for a stop, answered by the stop.
  vigil::test::CommandResult r3;
  std::thread w3([&] { r3 = d.cli({"wait", "w", "--until", "stopped", "--timeout", "30"}); });
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(d.cli({"stop", "w"}).code, 0);
  w3.join();
  EXPECT_EQ(r3.code, 0) << r3.err;
  EXPECT_EQ(d.cli({"wait", "nosuch"}).code, 4);
  EXPECT_EQ(d.cli({"wait", "w", "--until", "sideways"}).code, 2);
  EXPECT_EQ(d.cli({"wait", "w", "--timeout", "soon"}).code, 2);
  // The daemon carries on.
  EXPECT_EQ(d.cli({"ping"}).code, 0);
}

TEST(Cli, WaitOfAClientThatLeftIsDropped) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "x" { start = { "sleep", "100051" } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  {
    Running waiting({VIGIL_BINARY, "--socket", d.socket(), "wait", "x", "--until", "exhausted"});
    std::this_thread::sleep_for(300ms);
  }  // killed: its connection closes
  // Its slot is freed (the daemon is not left with a reply for nobody).
  EXPECT_EQ(d.cli({"status"}).code, 0);
  EXPECT_EQ(d.cli({"wait", "x", "--until", "running"}).code, 0);
}

TEST(Cli, LogsShowsTheLastLinesAndFollowsAcrossRotation) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "w" { start = { "sh", "-c", "for i in $(seq 1 30); do echo line$i; echo err$i >&2; done; i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.1; done" } }
watch "quiet" { start = { "sleep", "100061" }, log = false }
)");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  std::string path = d.state_dir() + "/logs/w.stdout.log";
  ASSERT_TRUE(wait_for([&] { return read_file(path).find("tick1\n") != std::string::npos; }));
  auto r = d.cli({"logs", "w", "--stderr", "-n", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "err28\nerr29\nerr30\n");
  r = d.cli({"logs", "w"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 10) << r.out;
  // No daemon: the state directory says.
  r = run_command({VIGIL_BINARY, "--socket", d.dir() + "/none.sock", "logs", "w", "--stderr",
                   "-n", "1", "--state-dir", d.state_dir()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "err30\n");
  r = d.cli({"logs", "quiet"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("log = false"), std::string::npos) << r.err;
  EXPECT_EQ(d.cli({"logs", "w", "-n", "-3"}).code, 2);

  Running follow({VIGIL_BINARY, "--socket", d.socket(), "logs", "w", "-f", "-n", "1"});
  std::string seen = follow.wait_for_text("tick");
  ASSERT_NE(seen.find("tick"), std::string::npos) << seen;
  // Truncated in place (how vigil rotates): read again from the start.
  std::filesystem::resize_file(path, 0);
  ASSERT_TRUE(wait_for([&] { return read_file(path).find("tick") != std::string::npos; }));
  std::string after_truncation = read_file(path).substr(0, read_file(path).find('\n') + 1);
  seen = follow.wait_for_text(after_truncation + "tick");
  EXPECT_NE(seen.find(after_truncation), std::string::npos) << seen;
  // Another file under the name: followed from its start.
  std::filesystem::rename(path, path + ".old");
  write_file(path, "a new file\n");
  seen = follow.wait_for_text("a new file\n");
  EXPECT_NE(seen.find("a new file\n"), std::string::npos) << seen;
}

TEST(Cli, SetDefaultRestoresTheRuleValueLiveAndAcrossReloads) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "100071" }, restart = { limit = 5 } })");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  ASSERT_EQ(d.cli({"set", "s", "restart.limit", "0"}).code, 0);
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_EQ(d.watch("s")["overrides"]["restart.limit"], "0");
  auto r = d.cli({"set", "s", "restart.limit", "--default"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("s restart.limit = 5 (the rule's value)"), std::string::npos) << r.out;
  EXPECT_TRUE(d.wait_event("VGL0186", "s"));
  EXPECT_TRUE(d.watch("s")["overrides"].is_null()) << d.watch("s").dump();
  // Live: a death is restarted (limit 5), not the end (limit 0).
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_TRUE(d.watch("s")["overrides"].is_null()) << d.watch("s").dump();
  pid_t pid = d.watch_pid("s");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  EXPECT_TRUE(wait_for([&] { return d.watch_pid("s") > 0 && d.watch_pid("s") != pid; }))
      << d.status().dump();
  // Without a reload between set and --default too.
  ASSERT_EQ(d.cli({"set", "s", "restart.limit", "0"}).code, 0);
  ASSERT_EQ(d.cli({"set", "s", "restart.limit", "--default"}).code, 0);
  pid = d.watch_pid("s");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  EXPECT_TRUE(wait_for([&] { return d.watch_pid("s") > 0 && d.watch_pid("s") != pid; }))
      << d.status().dump();
  // Bad use.
  EXPECT_EQ(d.cli({"set", "s", "restart.limit", "3", "--default"}).code, 2);
  EXPECT_EQ(d.cli({"set", "s", "start", "--default"}).code, 1);
}

TEST(Cli, UsageErrorsNameTheBadOptionOrValue) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const Case cases[] = {
      {{"frob"}, "unknown command 'frob'"},
      {{"status", "--frob"}, "--frob"},
      {{"status", "--all"}, "--all goes with --json"},
      {{"events", "-n", "zero"}, "-n"},
      {{"wait", "x", "--until", "sideways"}, "sideways"},
      {{"logs"}, "NAME is required"},
      {{"--timeout", "soon", "status"}, "--timeout"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {VIGIL_BINARY};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = run_command(argv);
    EXPECT_EQ(r.code, 2) << c.args[0] << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args[0] << ": " << r.err;
  }
  // Every command has its own help.
  for (const char* cmd : {"status", "wait", "signal", "logs", "set", "run"}) {
    auto r = run_command({VIGIL_BINARY, cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find(std::string("vigil ") + cmd), std::string::npos) << cmd << r.out;
  }
  // Global options after the command, as before.
  auto r = run_command({VIGIL_BINARY, "ping", "--socket", "/nonexistent/vigil.sock"});
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_NE(r.err.find("/nonexistent/vigil.sock"), std::string::npos) << r.err;
}

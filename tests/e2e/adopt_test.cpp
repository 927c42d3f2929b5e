// End-to-end: processes vigil did not start. The test starts them (they
// are the test's children, in their own sessions), the real daemon adopts
// them by match, sees them die, runs restart scripts, counts them.
// Every process runs a program from the test's own directory (a copy of
// sleep), so tests running side by side never see each other's processes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <thread>

#include "host/proc/proc_files.hpp"
#include "host/proc/proc_stat.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

std::string token_of(const Daemon& d) {
  return "vt" + std::filesystem::path(d.dir()).filename().string().substr(10);
}

// A copy of /bin/sleep named `name` in the test's directory: its processes
// have that comm, and their command line names the directory, which no
// other test's processes do.
std::string named_sleep(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  std::filesystem::copy_file("/bin/sleep", path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path;
}

// sh running `sleeper 100000` and waiting for it: when that child dies, it
// exits 7, so a test can make it exit with a known code.
std::string waiter_command(const std::string& sleeper) {
  return sleeper + " 100000 & wait; exit 7";
}
pid_t only_child(pid_t pid) {
  vigil::ProcReader r;
  pid_t child = 0;
  wait_for([&] {
    auto kids = r.children(pid);
    if (kids.size() != 1) return false;
    child = kids[0];
    return true;
  });
  return child;
}

// The waiter, once its child runs the sleeper: until that child has
// exec'd it is a fork of the shell, with the shell's command line, and a
// count of the waiter's command line sees two.
pid_t spawn_waiter(const std::string& sleeper) {
  pid_t pid = spawn_external({"/bin/sh", "-c", waiter_command(sleeper)});
  wait_for([&] {
    pid_t child = only_child(pid);
    return child > 0 && read_file("/proc/" + std::to_string(child) + "/cmdline").rfind(sleeper, 0) == 0;
  });
  return pid;
}

}  // namespace

TEST(Adopt, DeathIsSeenWithItsExitCodeAndTheRestartScriptIsFollowed) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t first = spawn_waiter(sleeper);
  // The script starts a fresh copy, detached, and exits 0 at once.
  d.write_rule("a.lua",
               "watch \"ext\" {\n"
               "  match = { cmdline = \"" +
                   waiter_command(sleeper) +
                   "\", name = \"sh\" },\n"
                   "  restart_script = \"setsid /bin/sh -c '" +
                   waiter_command(sleeper) +
                   "' </dev/null >/dev/null 2>&1 &\",\n"
                   "}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("ext") == first; })) << d.output();
  EXPECT_EQ(d.watch("ext")["adopted"], true);
  EXPECT_EQ(d.last_event("VGL0121", "ext")["fields"]["how"], "found");

  kill(only_child(first), SIGKILL);  // the waiter then exits 7
  ASSERT_TRUE(reap(first));
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("ext");
    return p > 0 && p != first;
  })) << d.output();
  auto w = d.watch("ext");
  EXPECT_EQ(w["last_exit"]["code"], 7) << w.dump();  // from the proc connector
  EXPECT_EQ(w["restarts"], 1);
  EXPECT_EQ(w["state"], "running");
  EXPECT_EQ(d.last_event("VGL0121", "ext")["fields"]["how"], "started by the restart script");
  EXPECT_EQ(d.count_events("VGL0123", "ext"), 1);
  // The script's own shell was never taken for the process, and there is
  // exactly one new instance. (Waited for: while the new shell forks its
  // sleeper, the child is a second "sh -c ..." until it execs.)
  EXPECT_TRUE(wait_for([&] { return count_processes("sh -c " + waiter_command(sleeper)) == 1; }))
      << count_processes("sh -c " + waiter_command(sleeper));

  // The new instance is watched too.
  pid_t second = d.watch_pid("ext");
  kill(second, SIGKILL);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("ext");
    return p > 0 && p != second;
  })) << d.output();
  EXPECT_EQ(d.watch("ext")["last_exit"]["signal"], "KILL");
}

TEST(Adopt, AnExitWithStatusZeroIsKnownToo) {
  // While nothing needs every fork and exec, the kernel reports only
  // non-zero exits to vigil (Linux >= 6.6): a process it hears nothing
  // about exited 0.
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t p = spawn_external({"/bin/sh", "-c", sleeper + " 100020; exit 0"});
  d.write_rule("a.lua",
               "watch \"zero\" { match = { cmdline = \"" + sleeper + " 100020; exit\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("zero") == p; })) << d.output();
  kill(only_child(p), SIGKILL);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("zero") == "stopped"; })) << d.output();
  EXPECT_EQ(d.watch("zero")["last_exit"]["code"], 0) << d.watch("zero").dump();
  reap(p);
}

TEST(Adopt, FailedRestartScriptsCountAgainstTheBudget) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  std::string marker = d.dir() + "/runs";
  pid_t a = spawn_external({sleeper, "100001"});
  pid_t b = spawn_external({sleeper, "100002"});
  pid_t c = spawn_external({sleeper, "100003"});
  d.write_rule("a.lua",
               "local budget = { limit = 2, within = \"1h\", backoff = \"10ms..20ms\" }\n"
               "watch \"fails\" { match = { cmdline = \"" +
                   sleeper +
                   " 100001\" },\n"
                   "  restart_script = \"echo x >> " +
                   marker +
                   "; exit 3\", restart = budget }\n"
                   "watch \"hangs\" { match = { cmdline = \"" +
                   sleeper +
                   " 100002\" },\n"
                   "  restart_script = { command = { \"" +
                   sleeper +
                   "\", \"1000\" }, timeout = \"300ms\" },\n"
                   "  restart = budget }\n"
                   "watch \"nothing\" { match = { cmdline = \"" +
                   sleeper +
                   " 100003\" },\n"
                   "  restart_script = { command = \"true\", find_within = \"200ms\" },\n"
                   "  restart = budget }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_pid("fails") == a && d.watch_pid("hangs") == b && d.watch_pid("nothing") == c;
  })) << d.output();
  for (pid_t p : {a, b, c}) {
    kill(p, SIGKILL);
    reap(p);
  }
  for (const char* w : {"fails", "hangs", "nothing"})
    EXPECT_TRUE(wait_for([&] { return d.watch_state(w) == "exhausted"; }, 15s)) << w << d.output();
  // Two restarts each, every one a failure with its reason.
  EXPECT_EQ(read_file(marker), "x\nx\n");
  auto reason = [&](const char* w) {
    auto e = d.last_event("VGL0124", w);
    return e.is_null() ? std::string() : e["fields"]["error"].get<std::string>();
  };
  EXPECT_NE(reason("fails").find("restart script exited 3"), std::string::npos) << reason("fails");
  EXPECT_NE(reason("hangs").find("timed out after 0.3s"), std::string::npos) << reason("hangs");
  EXPECT_NE(reason("nothing").find("no process matches"), std::string::npos) << reason("nothing");
  EXPECT_EQ(d.count_events("VGL0124", "hangs"), 2);
  EXPECT_EQ(count_processes(sleeper + " 1000"), 0) << "a timed-out script was left running";
  EXPECT_EQ(d.count_events("VGL0105", "fails"), 1);
}

TEST(Adopt, AWatchWithoutRestartWaitsForItsProcessToComeBack) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t first = spawn_external({sleeper, "100004"});
  d.write_rule("a.lua", "watch \"mon\" { match = { cmdline = \"" + sleeper + "\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("mon") == first; })) << d.output();
  kill(first, SIGTERM);
  reap(first);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("mon") == "stopped"; })) << d.output();
  EXPECT_EQ(d.watch("mon")["last_exit"]["signal"], "TERM");
  EXPECT_EQ(d.count_events("VGL0104", "mon"), 0);  // nothing to restart it with
  pid_t again = spawn_external({sleeper, "100004"});
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("mon") == again; })) << d.output();
  EXPECT_EQ(d.watch_state("mon"), "running");
  EXPECT_EQ(d.last_event("VGL0121", "mon")["fields"]["how"], "appeared");
  kill(again, SIGKILL);
  reap(again);
}

TEST(Adopt, ShutdownLeavesOthersProcessesRunningButStopsItsOwn) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t theirs = spawn_external({sleeper, "100021"});
  d.write_rule("a.lua", "watch \"theirs\" { match = { cmdline = \"" + sleeper +
                            " 100021\" } }\n"
                            "watch \"ours\" { start = { \"" +
                            sleeper + "\", \"100022\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("theirs") == theirs && d.watch_pid("ours") > 0; }))
      << d.output();
  pid_t ours = d.watch_pid("ours");
  EXPECT_EQ(d.stop(), 0);
  EXPECT_TRUE(process_alive(theirs)) << "vigil's shutdown stopped a process it did not start";
  EXPECT_FALSE(process_alive(ours));
  kill(theirs, SIGKILL);
  reap(theirs);
}

TEST(Adopt, MatchKeysSelectTheRightProcess) {
  Daemon d;
  std::string prog = named_sleep(d.dir(), "vtsel" + token_of(d).substr(2, 6));
  std::string comm = std::filesystem::path(prog).filename();
  pid_t older = spawn_external({prog, "100005"});
  ASSERT_TRUE(wait_for([&] {
    auto st = vigil::read_proc_stat(older);
    return st && st->comm == comm;
  }));
  pid_t newer = spawn_external({prog, "100005"});
  ASSERT_TRUE(wait_for([&] {
    auto st = vigil::read_proc_stat(newer);
    return st && st->comm == comm;
  }));
  pid_t other = spawn_external({prog, "100006"});
  d.write_rule("a.lua", "watch \"oldest\" { match = { name = \"" + comm +
                            "\", cmdline = \"100005\" } }\n"
                            "watch \"newest\" { match = { exe = \"" +
                            prog +
                            "\", cmdline = \"100005\", select = \"newest\" } }\n"
                            "watch \"re\" { match = { cmdline_re = \"^" +
                            prog +
                            " 10000[6]$\", user = \"root\" } }\n"
                            "watch \"ppid\" { match = { name = \"" +
                            comm + "\", ppid = " + std::to_string(getpid()) +
                            ", cmdline = \"100006\" } }\n"
                            "watch \"nobody\" { match = { name = \"" +
                            comm + "\", uid = 4242 } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("re") != 0 && d.watch_pid("ppid") != 0; }))
      << d.status().dump(1) << d.output();
  EXPECT_EQ(d.watch_pid("oldest"), older);
  EXPECT_EQ(d.watch_pid("newest"), newer);
  EXPECT_EQ(d.watch_pid("re"), other);
  EXPECT_EQ(d.watch_pid("ppid"), other);
  EXPECT_EQ(d.watch_pid("nobody"), 0);
  EXPECT_EQ(d.watch_state("nobody"), "stopped");
  for (pid_t p : {older, newer, other}) {
    kill(p, SIGKILL);
    reap(p);
  }
}

TEST(Adopt, ParentKeyFollowsAnotherWatch) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "vtw" + token_of(d).substr(2, 8));
  std::string comm = std::filesystem::path(sleeper).filename();
  // A "master" started by vigil whose worker is matched as its child.
  d.write_rule("a.lua", "watch \"master\" { start = { \"/bin/sh\", \"-c\", \"" + sleeper +
                            " 100007 & wait\" } }\n"
                            "watch \"worker\" { match = { name = \"" +
                            comm + "\", parent = \"master\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("worker") != 0; })) << d.output();
  pid_t master = d.watch_pid("master");
  auto st = vigil::read_proc_stat(d.watch_pid("worker"));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->ppid, master);
}

TEST(Count, OverTheLimitIsSeenAtForkTimeAndTheNewestIsKilled) {
  Daemon d;
  std::string name = "vtc" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) pids.push_back(spawn_external({prog, "100008"}));
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { min = 2, max = 3 }, on_over = \"kill_newest\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 3; })) << d.output();
  EXPECT_EQ(d.count_events("VGL0125", "cnt"), 0);

  pid_t extra = spawn_external({prog, "100008"});
  ASSERT_TRUE(d.wait_event("VGL0125", "cnt")) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0128", "cnt")) << d.output();
  EXPECT_EQ(d.last_event("VGL0128", "cnt")["fields"]["pid"], extra);
  ASSERT_TRUE(reap(extra)) << "the newest process was not killed";
  for (pid_t p : pids) EXPECT_TRUE(process_alive(p)) << "an older process was killed";
  ASSERT_TRUE(d.wait_event("VGL0127", "cnt")) << d.output();
  EXPECT_EQ(d.watch("cnt")["bounds"], "within");

  // Under the minimum: two of three die.
  for (int i = 0; i < 2; ++i) {
    kill(pids[static_cast<size_t>(i)], SIGKILL);
    reap(pids[static_cast<size_t>(i)]);
  }
  ASSERT_TRUE(d.wait_event("VGL0126", "cnt")) << d.output();
  EXPECT_EQ(d.last_event("VGL0126", "cnt")["fields"]["count"], 1);
  kill(pids[2], SIGKILL);
  reap(pids[2]);
}

TEST(Count, WithoutKernelEventsTheScanStillCounts) {
  Daemon d;
  // A new network namespace has no proc connector: vigil must say so once
  // and fall back to scanning /proc.
  d.set_prefix({"unshare", "-n"});
  std::string name = "vtf" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  std::string marker = d.dir() + "/over";
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { max = 1 },\n"
                            "  on_over = { \"/bin/sh\", \"-c\", \"echo $VIGIL_COUNT > " +
                            marker + "\" } }\n");
  ASSERT_TRUE(d.start({"--scan-interval", "0.1"})) << d.output();
  EXPECT_EQ(d.count_events("VGL0009"), 1) << d.output();
  pid_t a = spawn_external({prog, "100009"});
  pid_t b = spawn_external({prog, "100009"});
  ASSERT_TRUE(d.wait_event("VGL0125", "cnt")) << d.output();
  ASSERT_TRUE(wait_for([&] { return read_file(marker) == "2\n"; })) << read_file(marker);
  for (pid_t p : {a, b}) {
    kill(p, SIGKILL);
    reap(p);
  }
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 0; })) << d.output();
  EXPECT_EQ(d.count_events("VGL0009"), 1);
}

// What vigil started for a set, vigil stops (`vigil stop`, shutdown);
// what it only found there it leaves alone.
TEST(Count, StopAndShutdownEndWhatVigilStartedAndLeaveWhatItFound) {
  Daemon d;
  std::string name = "vts" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  std::string ours = prog + " 100081";
  pid_t theirs = spawn_external({prog, "100080"});
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { min = 2 },\n"
                            "  start = { \"" +
                            prog + "\", \"100081\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 2; }, 30s)) << d.output();
  ASSERT_EQ(count_processes(ours), 1);

  auto r = d.cli({"stop", "cnt"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(wait_for([&] { return count_processes(ours) == 0; }))
      << "vigil stop left the process vigil started running\n"
      << d.output();
  EXPECT_TRUE(process_alive(theirs)) << "vigil stop ended a process it did not start";
  EXPECT_EQ(d.watch_state("cnt"), "stopped");

  r = d.cli({"start", "cnt"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  ASSERT_TRUE(wait_for([&] { return count_processes(ours) == 1; }, 30s)) << d.output();
  EXPECT_EQ(d.stop(), 0);
  EXPECT_TRUE(wait_for([&] { return count_processes(ours) == 0; }))
      << "shutdown left the process vigil started running";
  EXPECT_TRUE(process_alive(theirs)) << "shutdown ended a process vigil did not start";
  kill(theirs, SIGKILL);
  reap(theirs);
}

// Under the minimum, on_under = "restart" starts every missing instance
// at once, as one restart of the budget, not one per find_within.
TEST(Count, UnderTheMinimumStartsTheMissingNumberAtOnceAsOneRestart) {
  Daemon d;
  std::string name = "vtu" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { min = 3 },\n"
                            "  start = { \"" +
                            prog +
                            "\", \"100082\" },\n"
                            "  restart = { limit = 5, within = \"10m\", delay = \"1s\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  // find_within is 10 s: one instance per step needs more than 20 s.
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 3; }, 8s)) << d.output();
  EXPECT_EQ(d.watch("cnt")["restarts"], 1);
  EXPECT_EQ(d.count_events("VGL0101", "cnt"), 3);
  EXPECT_EQ(d.count_events("VGL0124", "cnt"), 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("cnt") == "running"; })) << d.output();

  // Two of three die: both come back, as the second restart.
  auto pids = d.watch("cnt")["pids"];
  ASSERT_EQ(pids.size(), 3u);
  kill(pids[0].get<pid_t>(), SIGKILL);
  kill(pids[1].get<pid_t>(), SIGKILL);
  ASSERT_TRUE(d.wait_event("VGL0101", "cnt", 5)) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 3; })) << d.output();
  EXPECT_EQ(d.watch("cnt")["restarts"], 2);
  EXPECT_EQ(d.count_events("VGL0101", "cnt"), 5);
  EXPECT_EQ(d.count_events("VGL0124", "cnt"), 0) << d.output();
}

// A storm over the limit (a member every few milliseconds, each gone at
// once) is one episode: one VGL0125, one VGL0127 with the number of
// crossings, and the on_over command runs once.
TEST(Count, AStormOverTheLimitIsOneEpisodeWithItsCounts) {
  Daemon d;
  std::string name = "vth" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  std::string marker = d.dir() + "/over";
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { max = 1 },\n"
                            "  on_over = { \"/bin/sh\", \"-c\", \"echo $VIGIL_COUNT >> " +
                            marker + "\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  pid_t base = spawn_external({prog, "100083"});
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 1; })) << d.output();
  pid_t storm = spawn_external(
      {"/bin/sh", "-c", "i=0; while [ $i -lt 20 ]; do " + prog + " 0.05; i=$((i+1)); done"});
  ASSERT_TRUE(reap(storm, 60s));
  ASSERT_TRUE(d.wait_event("VGL0127", "cnt", 1, 20s)) << d.output();
  EXPECT_EQ(d.count_events("VGL0125", "cnt"), 1) << d.output();
  EXPECT_EQ(d.count_events("VGL0127", "cnt"), 1) << d.output();
  auto within = d.last_event("VGL0127", "cnt")["fields"];
  EXPECT_EQ(within["crossings"], 20) << within.dump();
  EXPECT_EQ(within["peak"], 2) << within.dump();
  EXPECT_TRUE(wait_for([&] { return read_file(marker) == "2\n"; })) << read_file(marker);
  EXPECT_EQ(d.watch("cnt")["bounds"], "within");
  kill(base, SIGKILL);
  reap(base);
}

// With kill_newest at the limit, members still run helper programs: a
// fork that execs something else is not counted (nor killed).
TEST(Count, MembersAtTheLimitCanRunHelperPrograms) {
  Daemon d;
  std::string name = "vtk" + token_of(d).substr(2, 8);
  std::string shell = d.dir() + "/" + name;
  std::filesystem::copy_file("/bin/sh", shell);
  std::filesystem::permissions(shell, std::filesystem::perms::owner_all);
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  std::string done = d.dir() + "/done";
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { max = 2 }, on_over = \"kill_newest\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  std::string script =
      "n=0; while [ $n -lt 200 ]; do /bin/true || exit 1; n=$((n+1)); done; echo ok >> " + done +
      "; exec " + sleeper + " 100000";
  pid_t a = spawn_external({shell, "-c", script});
  pid_t b = spawn_external({shell, "-c", script});
  EXPECT_TRUE(wait_for([&] { return read_file(done) == "ok\nok\n"; }, 60s))
      << "a helper of a member was killed\n"
      << d.output();
  EXPECT_EQ(d.count_events("VGL0128", "cnt"), 0) << d.output();
  EXPECT_EQ(d.count_events("VGL0125", "cnt"), 0) << d.output();
  for (pid_t p : {a, b}) {
    kill(p, SIGKILL);
    reap(p);
  }
}

// kill_newest against a stream of new members: the first kill is logged,
// the rest of the interval is one VGL0170 with their number.
TEST(Count, KillsBeyondTheMaximumAreReportedOncePerInterval) {
  Daemon d;
  std::string name = "vtr" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  d.write_rule("a.lua", "watch \"cnt\" { match = { name = \"" + name +
                            "\" }, count = { max = 1 }, on_over = \"kill_newest\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  pid_t base = spawn_external({prog, "100084"});
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 1; })) << d.output();
  for (int i = 0; i < 15; ++i) {
    pid_t extra = spawn_external({prog, "100085"});
    ASSERT_TRUE(reap(extra, 20s)) << "the newest process was not killed\n" << d.output();
  }
  ASSERT_TRUE(d.wait_event("VGL0170", "cnt", 1, 30s)) << d.output();
  EXPECT_EQ(d.count_events("VGL0128", "cnt"), 1) << d.output();
  EXPECT_EQ(d.last_event("VGL0170", "cnt")["fields"]["killed"], 14) << d.output();
  EXPECT_TRUE(process_alive(base)) << "the oldest process was killed";
  kill(base, SIGKILL);
  reap(base);
}

TEST(States, StoppedProcessIsReportedAndContinued) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t p = spawn_external({sleeper, "100010"});
  d.write_rule("a.lua", "watch \"s\" { match = { cmdline = \"" + sleeper +
                            "\" }, checks = { every = \"50ms\", stopped = \"200ms\" },\n"
                            "  on_state = \"continue\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("s") == p; })) << d.output();
  kill(p, SIGSTOP);
  ASSERT_TRUE(d.wait_event("VGL0129", "s")) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0133", "s")) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0132", "s")) << d.output();
  auto st = vigil::read_proc_stat(p);
  ASSERT_TRUE(st);
  EXPECT_NE(st->state, 'T');
  EXPECT_EQ(d.count_events("VGL0129", "s"), 1);  // once per episode
  kill(p, SIGKILL);
  reap(p);
}

TEST(States, BlockedProcessIsReported) {
  Daemon d;
  std::string name = "vtd" + token_of(d).substr(2, 8);
  // A vfork parent waits in uninterruptible sleep until its child execs
  // or exits: state D for as long as the child pauses.
  BlockedProcess blocked(name, true);
  ASSERT_TRUE(blocked.block());
  pid_t p = blocked.pid();
  d.write_rule("a.lua", "watch \"b\" { match = { name = \"" + name +
                            "\" }, checks = { every = \"50ms\", blocked = \"200ms\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("b") == p; })) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0130", "b")) << d.output();
  auto e = d.last_event("VGL0130", "b");
  EXPECT_EQ(e["fields"]["pid"], p);
  EXPECT_GE(e["fields"]["for"].get<double>(), 0.2);
}

TEST(States, AZombieItsParentDoesNotReapIsReported) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t p = spawn_external({sleeper, "100011"});
  d.write_rule("a.lua", "watch \"z\" { match = { cmdline = \"" + sleeper +
                            "\" }, checks = { every = \"50ms\", zombie = \"200ms\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("z") == p; })) << d.output();
  kill(p, SIGKILL);  // and the test, its parent, does not reap it yet
  // Its death is seen at once, though it is a zombie.
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("z") == 0; })) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0131", "z")) << d.output();
  EXPECT_EQ(d.last_event("VGL0131", "z")["fields"]["ppid"], getpid());
  reap(p);
}

TEST(Reattach, KillNineOfVigilLosesNothingAndDuplicatesNothing) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t ext = spawn_waiter(sleeper);
  d.write_rule("a.lua", "watch \"own\" { start = { \"" + sleeper +
                            "\", \"100012\" } }\n"
                            "watch \"ext\" { match = { cmdline = \"" +
                            waiter_command(sleeper) +
                            "\", name = \"sh\" },\n"
                            "  restart_script = \"setsid /bin/sh -c '" +
                            waiter_command(sleeper) + "' </dev/null >/dev/null 2>&1 &\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("own") > 0 && d.watch_pid("ext") == ext; }))
      << d.output();
  pid_t own = d.watch_pid("own");

  d.kill9();
  ASSERT_TRUE(process_alive(own));
  ASSERT_TRUE(process_alive(ext));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("own") == own && d.watch_pid("ext") == ext; }))
      << d.output();
  EXPECT_EQ(d.last_event("VGL0121", "own")["fields"]["how"], "re-adopted after vigil restarted");
  EXPECT_EQ(count_processes(sleeper + " 100012"), 1) << "a second copy was started";
  EXPECT_EQ(count_processes("sh -c " + waiter_command(sleeper)), 1) << d.output();
  EXPECT_EQ(d.count_events("VGL0101", "own"), 0);

  // A later death is still recovered, for both kinds.
  kill(own, SIGKILL);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("own");
    return p > 0 && p != own;
  })) << d.output();
  EXPECT_EQ(d.watch("own")["last_exit"]["signal"], "KILL");
  kill(only_child(ext), SIGKILL);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("ext");
    return p > 0 && p != ext;
  })) << d.output();
  EXPECT_EQ(d.watch("ext")["last_exit"]["code"], 7);
  reap(ext);
  reap(own);

  // quit --keep leaves them running; the next vigil takes them over.
  pid_t own2 = d.watch_pid("own");
  ASSERT_EQ(d.cli({"quit", "--keep"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return !d.running(); })) << d.output();
  ASSERT_TRUE(process_alive(own2));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("own") == own2; })) << d.output();
  EXPECT_EQ(count_processes(sleeper + " 100012"), 1);
  d.stop();
  EXPECT_EQ(count_processes(sleeper + " 100012"), 0) << "stop left the process running";
}

namespace {
// Creates a process with exactly `pid` (clone3 with set_tid, root only):
// the way to prove that a recycled pid is never signalled.
pid_t spawn_with_pid(pid_t pid, const char* prog) {
  struct clone_args args {};
  pid_t tid = pid;
  args.exit_signal = SIGCHLD;
  args.set_tid = reinterpret_cast<uint64_t>(&tid);
  args.set_tid_size = 1;
  long r = syscall(SYS_clone3, &args, sizeof args);
  if (r == 0) {
    setsid();
    execl(prog, prog, "100013", static_cast<char*>(nullptr));
    _exit(127);
  }
  return static_cast<pid_t>(r);
}
}  // namespace

TEST(Safety, ARecycledPidIsNeverSignalled) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  std::string out = d.dir() + "/kill.txt";
  std::string seen = d.dir() + "/seen.txt";
  std::string go = d.dir() + "/go";
  pid_t victim = spawn_external({sleeper, "100013"});
  // The rule remembers (pid, start time) of the process, says so, and when
  // told to, tries to kill it through vigil.proc.kill.
  d.write_rule("a.lua",
               "local seen\n"
               "vigil.timer.every(0.02, function()\n"
               "  if not seen then\n"
               "    local p = vigil.proc.find({ cmdline = \"" +
                   sleeper +
                   "\" })[1]\n"
                   "    if not p then return end\n"
                   "    seen = p\n"
                   "    local s = io.open(\"" +
                   seen +
                   "\", \"w\") s:write(p.pid, \"\\n\") s:close()\n"
                   "    return\n"
                   "  end\n"
                   "  local f = io.open(\"" +
                   go +
                   "\")\n"
                   "  if not f or seen == false then return end\n"
                   "  f:close()\n"
                   "  local ok, err = vigil.proc.kill(seen.pid, seen.start_time, \"KILL\")\n"
                   "  local o = io.open(\"" +
                   out +
                   "\", \"w\")\n"
                   "  o:write(tostring(ok), \" \", tostring(err), \"\\n\")\n"
                   "  o:close()\n"
                   "  seen = false\n"
                   "end)\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return read_file(seen) == std::to_string(victim) + "\n"; }))
      << d.output();
  kill(victim, SIGKILL);
  ASSERT_TRUE(reap(victim));
  pid_t recycled = spawn_with_pid(victim, sleeper.c_str());
  ASSERT_EQ(recycled, victim) << "could not recreate the pid (clone3 set_tid)";
  ASSERT_TRUE(wait_for([&] { return process_alive(recycled); }));
  write_file(go, "");
  ASSERT_TRUE(wait_for([&] { return !read_file(out).empty(); })) << d.output();
  EXPECT_NE(read_file(out).find("nil no such process"), std::string::npos) << read_file(out);
  EXPECT_TRUE(process_alive(recycled)) << "vigil signalled the process that reused the pid";
  kill(recycled, SIGKILL);
  reap(recycled);
}

TEST(ProcApi, FindInfoChildrenAndEvents) {
  Daemon d;
  std::string name = "vtp" + token_of(d).substr(2, 8);
  std::string prog = named_sleep(d.dir(), name);
  std::string out = d.dir() + "/events.txt";
  std::string info = d.dir() + "/info.txt";
  // A shell under its own name: its forks are spawns of that name.
  std::string shell_name = "vts" + token_of(d).substr(2, 8);
  std::string shell = d.dir() + "/" + shell_name;
  std::filesystem::copy_file("/bin/sh", shell);
  d.write_rule(
      "a.lua",
      "local function log(s) local f = io.open(\"" + out +
          "\", \"a\") f:write(s, \"\\n\") f:close() end\n"
          "assert(vigil.proc.available())\n"
          "vigil.proc.on(\"exec\", { name = \"" +
          name +
          "\" }, function(p) log(\"exec \" .. p.pid .. \" \" .. p.cmdline) end)\n"
          "vigil.proc.on(\"exit\", { name = \"" +
          name +
          "\" }, function(p) log(\"exit \" .. p.pid .. \" \" .. tostring(p.signal)) end)\n"
          "vigil.proc.on(\"spawn\", { name = \"" +
          shell_name +
          "\" }, function(p) log(\"spawn \" .. p.pid .. \" \" .. p.ppid) end)\n"
          "local done\n"
          "vigil.timer.every(0.05, function()\n"
          "  local l = vigil.proc.find({ name = \"" +
          name +
          "\" })\n"
          "  if done or #l == 0 then return end\n"
          "  local p = vigil.proc.info(l[1].pid)\n"
          // Just exec'd, it may still be loading (R, no resident pages
          // yet): look again once it sleeps.
          "  if not p or p.state ~= \"S\" then return end\n"
          "  local f = io.open(\"" +
          info +
          "\", \"w\")\n"
          "  f:write(table.concat({ p.pid, p.ppid, p.name, p.exe, p.user, p.state,\n"
          "    p.threads, tostring(p.rss > 0), p.fds,\n"
          "    #vigil.proc.children(p.ppid) > 0 and \"kids\" or \"none\" }, \" \"), \"\\n\")\n"
          "  f:close()\n"
          "  done = true\n"
          "end)\n");
  ASSERT_TRUE(d.start()) << d.output();
  pid_t p = spawn_external({prog, "100014"});
  std::string pids = std::to_string(p);
  ASSERT_TRUE(wait_for([&] { return read_file(out).find("exec " + pids) != std::string::npos; }))
      << read_file(out) << d.output();
  EXPECT_NE(read_file(out).find("exec " + pids + " " + prog + " 100014"), std::string::npos);
  ASSERT_TRUE(wait_for([&] {
    std::string t = read_file(info);
    return !t.empty() && t.back() == '\n';
  })) << d.output();
  EXPECT_EQ(read_file(info), pids + " " + std::to_string(getpid()) + " " + name + " " + prog +
                                 " root S 1 true 3 kids\n");
  kill(p, SIGTERM);
  reap(p);
  ASSERT_TRUE(wait_for([&] {
    return read_file(out).find("exit " + pids + " TERM") != std::string::npos;
  })) << read_file(out);

  // The shell forks /bin/true's process: a spawn of the shell's name. The
  // shell then stops itself, so its fork is still traceable to it whenever
  // the daemon reads the event.
  pid_t sh = spawn_external({shell, "-c", "/bin/true & wait; kill -STOP $$"});
  ASSERT_TRUE(wait_for([&] {
    return read_file(out).find(" " + std::to_string(sh) + "\n") != std::string::npos;
  })) << read_file(out);
  EXPECT_NE(read_file(out).find("spawn "), std::string::npos);
  kill(sh, SIGKILL);
  reap(sh);
}

namespace {
// How many events with this id for this file.
int events_about(const Daemon& d, const std::string& id, const std::string& path) {
  int n = 0;
  for (const auto& e : d.events())
    if (e["id"] == id && e["fields"].value("path", std::string()) == path) ++n;
  return n;
}
}  // namespace

TEST(Reattach, ADamagedOrMissingJournalNeverStartsASecondCopy) {
  struct Damage {
    const char* what;
    std::function<void(const std::string&)> apply;
    const char* event;  // "" for none
  };
  auto put = [](const std::string& path, const std::string& text) {
    std::filesystem::remove(path);
    FILE* f = fopen(path.c_str(), "w");
    fwrite(text.data(), 1, text.size(), f);
    fclose(f);
  };
  const Damage damages[] = {
      {"garbage",
       [&](const std::string& p) { put(p, "hello world\nthis is not a journal at all\n"); },
       "VGL0030"},
      {"truncated",
       [&](const std::string& p) {
         std::string t = read_file(p);
         put(p, t.substr(0, t.find('\n') + 1 + 4));  // the first line and 4 bytes of the next
       },
       "VGL0030"},
      {"binary",
       [&](const std::string& p) { put(p, std::string("\x7f\x00\xff\x01\tx\n\x00\x02", 9)); },
       "VGL0030"},
      {"directory",
       [](const std::string& p) {
         std::filesystem::remove(p);
         std::filesystem::create_directory(p);
       },
       "VGL0011"},
      {"fifo",
       [](const std::string& p) {
         std::filesystem::remove(p);
         mkfifo(p.c_str(), 0600);
       },
       "VGL0011"},
      {"deleted", [](const std::string& p) { std::filesystem::remove(p); }, ""},
  };
  for (const auto& dmg : damages) {
    SCOPED_TRACE(dmg.what);
    Daemon d;
    std::string sleeper = named_sleep(d.dir(), "sleeper");
    chmod(sleeper.c_str(), 0755);
    // Two plain programs, and a shell whose child carries the same marks.
    d.write_rule("a.lua", "watch \"a\" { start = { \"" + sleeper +
                              "\", \"100051\" } }\n"
                              "watch \"b\" { start = { \"" +
                              sleeper +
                              "\", \"100052\" } }\n"
                              "watch \"c\" { start = { \"/bin/sh\", \"-c\", \"" +
                              sleeper +
                              " 100053 & wait\" } }\n"
                              // and one that runs as another user
                              "watch \"n\" { start = { \"" +
                              sleeper + "\", \"100054\" }, user = \"nobody\" }\n");
    ASSERT_TRUE(d.start()) << d.output();
    ASSERT_TRUE(wait_for([&] {
      return d.watch_pid("a") && d.watch_pid("b") && d.watch_pid("c") && d.watch_pid("n") &&
             count_processes(sleeper + " 100053") == 2;  // sh -c "... & wait" and its child
    })) << d.output();
    pid_t a = d.watch_pid("a"), b = d.watch_pid("b"), c = d.watch_pid("c"), n = d.watch_pid("n");
    ASSERT_EQ(d.cli({"quit", "--keep"}).code, 0);
    ASSERT_TRUE(wait_for([&] { return !d.running(); }));
    std::string journal = d.state_dir() + "/processes.journal";
    dmg.apply(journal);
    ASSERT_TRUE(d.start()) << d.output();
    EXPECT_TRUE(wait_for([&] {
      return d.watch_pid("a") == a && d.watch_pid("b") == b && d.watch_pid("c") == c &&
             d.watch_pid("n") == n;
    })) << d.output();
    EXPECT_EQ(count_processes(sleeper + " 100054"), 1) << "a second copy of n was started";
    EXPECT_EQ(count_processes(sleeper + " 100051"), 1) << "a second copy of a was started";
    EXPECT_EQ(count_processes(sleeper + " 100052"), 1) << "a second copy of b was started";
    EXPECT_EQ(count_processes(sleeper + " 100053"), 2) << "a second copy of c was started";
    EXPECT_EQ(d.count_events("VGL0101"), 0) << d.output();
    if (*dmg.event) {
      EXPECT_EQ(events_about(d, dmg.event, journal), 1) << d.output();
    }
    // Each is still watched: a death is a restart, not a second copy.
    kill(a, SIGKILL);
    EXPECT_TRUE(wait_for([&] {
      pid_t p = d.watch_pid("a");
      return p && p != a;
    })) << d.output();
    EXPECT_EQ(count_processes(sleeper + " 100051"), 1);
    d.stop();
    EXPECT_EQ(count_processes(sleeper), 0) << "stop left a process running";
  }
}

TEST(Adopt, UptimeCountsFromTheProcessStartNotFromTheAdoption) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  pid_t ext = spawn_external({sleeper, "100061"});
  d.write_rule("a.lua", "watch \"own\" { start = { \"" + sleeper +
                            "\", \"100062\" } }\n"
                            "watch \"ext\" { match = { exe = \"" +
                            sleeper + "\", cmdline = \"" + sleeper + " 100061\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("own") && d.watch_pid("ext") == ext; }))
      << d.output();
  pid_t own = d.watch_pid("own");
  // Both processes grow old while no vigil watches them.
  ASSERT_EQ(d.cli({"quit", "--keep"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return !d.running(); }));
  std::this_thread::sleep_for(2500ms);  // the age under test, not a synchronisation
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("own") == own && d.watch_pid("ext") == ext; }))
      << d.output();
  for (const char* w : {"own", "ext"}) EXPECT_GE(d.watch(w)["uptime"].get<double>(), 2.5) << w;
  kill(own, SIGKILL);
  kill(ext, SIGKILL);
  reap(ext);
  ASSERT_TRUE(d.wait_event("VGL0102", "own") && d.wait_event("VGL0102", "ext")) << d.output();
  for (const char* w : {"own", "ext"}) {
    EXPECT_GE(d.last_event("VGL0102", w)["fields"]["uptime"].get<double>(), 2.5) << w;
    EXPECT_GE(d.watch(w)["last_exit"]["uptime"].get<double>(), 2.5) << w;
  }
}

TEST(Reattach, MarksOnAnotherUsersProcessAreNotTrusted) {
  Daemon d;
  std::string sleeper = named_sleep(d.dir(), "sleeper");
  chmod(sleeper.c_str(), 0755);  // nobody runs it too
  d.write_rule("a.lua", "watch \"a\" { start = { \"" + sleeper + "\", \"100071\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("a") > 0; })) << d.output();
  // The marks the real process carries.
  std::string env = read_file("/proc/" + std::to_string(d.watch_pid("a")) + "/environ");
  std::vector<std::string> marks;
  for (size_t at = 0; at < env.size();) {
    size_t end = env.find('\0', at);
    std::string kv = env.substr(at, end - at);
    for (const char* mark : {"VIGIL_WATCH=", "VIGIL_SPEC=", "VIGIL_INSTANCE="})
      if (kv.starts_with(mark)) marks.push_back(kv);
    at = end == std::string::npos ? env.size() : end + 1;
  }
  ASSERT_EQ(marks.size(), 3u) << env;
  d.stop();
  ASSERT_EQ(count_processes(sleeper), 0);
  // Someone else forges them on a process of its own (a session leader).
  std::vector<std::string> argv = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
                                   "--clear-groups", "/usr/bin/env"};
  argv.insert(argv.end(), marks.begin(), marks.end());
  argv.insert(argv.end(), {sleeper, "100071"});
  pid_t forged = spawn_external(argv);
  ASSERT_TRUE(wait_for([&] { return count_processes(sleeper + " 100071") == 1; }));
  ASSERT_TRUE(d.start()) << d.output();
  // vigil starts its own: the forged process is not the watch's.
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("a") > 0; })) << d.output();
  EXPECT_NE(d.watch_pid("a"), forged);
  EXPECT_EQ(d.count_events("VGL0121", "a"), 0) << d.output();
  EXPECT_EQ(d.count_events("VGL0101", "a"), 1) << d.output();
  kill(forged, SIGKILL);
  reap(forged);
}

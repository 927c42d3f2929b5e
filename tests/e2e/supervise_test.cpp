// End-to-end: the real daemon supervising real processes.
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "host/proc/proc_stat.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

TEST(Supervise, KilledChildIsRestartedWithNewPid) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "sleeper" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("sleeper") == "running"; }));
  pid_t first = d.watch_pid("sleeper");
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("sleeper");
        return p > 0 && p != first && d.watch_state("sleeper") == "running";
      },
      5s));
  auto w = d.watch("sleeper");
  EXPECT_EQ(w["restarts"], 1);
  EXPECT_EQ(w["last_exit"]["signal"], "KILL");
  EXPECT_TRUE(process_alive(w["pid"].get<pid_t>()));
  // The exit and the decision were logged with their ids.
  EXPECT_GE(d.count_events("VGL0102", "sleeper"), 1);
  EXPECT_GE(d.count_events("VGL0104", "sleeper"), 1);
}

TEST(Supervise, StatusJsonHasTheDocumentedFields) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "one" { start = "sleep 1000" })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("one") == "running"; }));
  auto w = d.watch("one");
  for (const char* key : {"name", "state", "pid", "restarts", "since", "uptime", "last_exit"})
    EXPECT_TRUE(w.contains(key)) << key;
  EXPECT_TRUE(w["pid"].is_number());
  EXPECT_TRUE(w["last_exit"].is_null());
  auto table = d.cli({"status"});
  EXPECT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("NAME"), std::string::npos);
  EXPECT_NE(table.out.find("one"), std::string::npos);
  EXPECT_NE(table.out.find("running"), std::string::npos);
}

TEST(Supervise, BudgetExhaustedRunsHookOnceAndRestartRearms) {
  Daemon d;
  std::string marker = d.dir() + "/hook.txt";
  d.write_rule("a.lua", R"(
watch "crasher" {
  start = { "/bin/sh", "-c", "exit 7" },
  restart = { limit = 2, within = "10m", backoff = "10ms..20ms" },
  on_exhausted = function(w, ev)
    local f = assert(io.open(")" +
                            marker + R"(", "a"))
    f:write(w.name, " ", tostring(ev.code), "\n")
    f:close()
  end,
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("crasher") == "exhausted"; })) << d.output();
  auto w = d.watch("crasher");
  EXPECT_EQ(w["restarts"], 2);
  EXPECT_TRUE(w["pid"].is_null());
  EXPECT_EQ(w["last_exit"]["code"], 7);
  EXPECT_EQ(read_file(marker), "crasher 7\n");
  EXPECT_EQ(d.count_events("VGL0105", "crasher"), 1);
  EXPECT_EQ(d.count_events("VGL0106", "crasher"), 1);

  // Operator restart re-arms: it runs, fails through its budget again, and
  // the hook runs once more (once per exhaustion, never per attempt).
  auto r = d.cli({"restart", "crasher"});
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(d.wait_event("VGL0105", "crasher", 2)) << d.output();
  EXPECT_TRUE(wait_for([&] { return read_file(marker) == "crasher 7\ncrasher 7\n"; }));
  EXPECT_EQ(d.count_events("VGL0107", "crasher"), 1);
}

TEST(Supervise, RearmAfterCoolDown) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "crasher" {
  start = { "/bin/sh", "-c", "exit 1" },
  restart = { limit = 1, within = "10m", backoff = "10ms" },
  rearm = "300ms",
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "crasher", 1));
  // After the cool-down it is re-armed, runs and exhausts again.
  ASSERT_TRUE(d.wait_event("VGL0107", "crasher", 1, 5s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "crasher", 2, 5s));
}

TEST(Supervise, PausedDeathIsLoggedNotActedOn) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  ASSERT_EQ(d.cli({"pause", "s"}).code, 0);
  EXPECT_EQ(d.watch_state("s"), "paused");
  kill(pid, SIGKILL);
  ASSERT_TRUE(d.wait_event("VGL0113", "s"));
  auto w = d.watch("s");
  EXPECT_EQ(w["state"], "paused");
  EXPECT_TRUE(w["pid"].is_null());
  EXPECT_EQ(w["restarts"], 0);
  EXPECT_EQ(d.count_events("VGL0104", "s"), 0);
  // Resuming brings it back.
  ASSERT_EQ(d.cli({"resume", "s"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  EXPECT_NE(d.watch_pid("s"), pid);
}

TEST(Supervise, PauseAllAndResumeAll) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "a" { start = { "sleep", "1000" } }
watch "b" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_EQ(d.cli({"pause", "--all"}).code, 0);
  EXPECT_EQ(d.watch_state("a"), "paused");
  EXPECT_EQ(d.watch_state("b"), "paused");
  ASSERT_EQ(d.cli({"resume", "--all"}).code, 0);
  EXPECT_NE(d.watch_state("a"), "paused");
  EXPECT_NE(d.watch_state("b"), "paused");
}

TEST(Supervise, StopAndStartByOperator) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  auto r = d.cli({"stop", "s"});
  ASSERT_EQ(r.code, 0) << r.err;
  // `stop` answers once the process is gone.
  EXPECT_FALSE(process_alive(pid));
  EXPECT_EQ(d.watch_state("s"), "stopped");
  EXPECT_EQ(d.count_events("VGL0104", "s"), 0);  // a requested stop is not a failure
  ASSERT_EQ(d.cli({"start", "s"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
}

TEST(Supervise, StopKillsTheWholeProcessGroupAfterGrace) {
  Daemon d;
  std::string pidfile = d.dir() + "/grandchild.pid";
  // The leader ignores TERM and has a child in its process group.
  d.write_rule("a.lua", R"(
watch "stubborn" {
  start = { "/bin/sh", "-c", "trap '' TERM; sleep 1000 & echo $! > )" +
                            pidfile + R"(; wait" },
  stop = { signal = "TERM", timeout = "300ms" },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for(
      [&] { return !read_file(pidfile).empty() && d.watch_state("stubborn") == "running"; }));
  pid_t leader = d.watch_pid("stubborn");
  pid_t grandchild = std::stoi(read_file(pidfile));
  ASSERT_TRUE(process_alive(grandchild));
  auto r = d.cli({"stop", "stubborn"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(process_alive(leader));
  EXPECT_TRUE(wait_for([&] { return !process_alive(grandchild); }, 3s));
  EXPECT_EQ(d.count_events("VGL0110", "stubborn"), 1);
}

TEST(Supervise, StopCommandIsUsed) {
  Daemon d;
  std::string marker = d.dir() + "/stopped-by-command";
  d.write_rule("a.lua", R"(
watch "svc" {
  start = { "sleep", "1000" },
  stop = { command = "touch )" +
                            marker + R"(; kill $MAINPID", timeout = "5s" },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("svc") == "running"; }));
  auto r = d.cli({"stop", "svc"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(marker));
  EXPECT_EQ(d.watch_state("svc"), "stopped");
  EXPECT_EQ(d.count_events("VGL0110", "svc"), 0);  // stopped by the command, not by KILL
}

// A stop command that waits for the process to be gone is let finish
// (it used to be KILLed when the process died, and VGL0118 "killed by
// KILL" came with every clean stop); one that really fails, or outlives
// the stop timeout, is still reported.
TEST(Supervise, StopCommandThatWaitsIsLetFinish) {
  Daemon d;
  std::string marker = d.dir() + "/waited";
  d.write_rule("a.lua", R"(
watch "svc" {
  start = { "sleep", "1000" },
  stop = { command = "kill $MAINPID; while kill -0 $MAINPID 2>/dev/null; do sleep 0.1; done; sleep 0.3; echo waited-stop > )" +
                            marker + R"(", timeout = "20s" },
}
watch "bad" { start = { "sleep", "1000" }, stop = { command = "kill $MAINPID; exit 3" } }
watch "slow" { start = { "sleep", "1000" }, stop = { command = "exec sleep 1001", timeout = "1s" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("svc") == "running" && d.watch_state("bad") == "running" &&
           d.watch_state("slow") == "running";
  }));
  auto r = d.cli({"stop", "svc"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(d.watch_state("svc"), "stopped");
  // The command goes on after the process is gone, to its end.
  ASSERT_TRUE(wait_for([&] { return read_file(marker) == "waited-stop\n"; }, 20s)) << d.output();
  ASSERT_TRUE(wait_for([&] { return count_processes(marker) == 0; }, 20s));
  r = d.cli({"stop", "bad"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(d.wait_event("VGL0118", "bad", 1, 20s)) << d.output();
  EXPECT_EQ(d.last_event("VGL0118", "bad")["fields"]["error"], "exited 3");
  r = d.cli({"stop", "slow"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(d.wait_event("VGL0118", "slow", 1, 20s)) << d.output();
  EXPECT_NE(d.last_event("VGL0118", "slow")["fields"]["error"].get<std::string>().find(
                "still running after the stop timeout ("),
            std::string::npos)
      << d.output();
  EXPECT_EQ(count_processes("sleep 1001"), 0);
  // The clean stop said nothing of a failure.
  EXPECT_EQ(d.count_events("VGL0118", "svc"), 0) << d.output();
  EXPECT_EQ(d.count_events("VGL0110", "svc"), 0) << d.output();
}

// PostgreSQL's own stop: `pg_ctl stop` signals the postmaster and waits
// until it is gone. A clean stop is clean.
TEST(Supervise, PgCtlStopIsAStopCommandThatWaits) {
  const std::string bin = "/usr/lib/postgresql/15/bin";
  if (access((bin + "/postgres").c_str(), X_OK) != 0 || access("/usr/sbin/runuser", X_OK) != 0 ||
      getpwnam("postgres") == nullptr || geteuid() != 0)
    GTEST_SKIP() << "needs PostgreSQL 15 in " << bin << ", a postgres user, runuser and root";
  Daemon d;
  std::string data = d.dir() + "/pgdata";
  std::string sock = d.dir() + "/pgsock";
  std::filesystem::create_directories(sock);
  struct passwd* pw = getpwnam("postgres");
  std::filesystem::create_directories(data);
  ASSERT_EQ(chown(sock.c_str(), pw->pw_uid, pw->pw_gid), 0);
  ASSERT_EQ(chown(data.c_str(), pw->pw_uid, pw->pw_gid), 0);
  chmod(data.c_str(), 0700);
  auto init = run_command({"/usr/sbin/runuser", "-u", "postgres", "--", bin + "/initdb", "-D", data,
                           "-A", "trust", "-U", "postgres", "--no-sync"});
  if (init.code != 0) GTEST_SKIP() << "initdb cannot run here: " << init.err << init.out;
  int port = free_port();
  d.write_rule("a.lua", "watch \"pg\" {\n  start = { \"" + bin + "/postgres\", \"-D\", \"" + data +
                            "\", \"-k\", \"" + sock + "\", \"-h\", \"127.0.0.1\", \"-p\", \"" +
                            std::to_string(port) +
                            "\" },\n  user = \"postgres\",\n"
                            "  stop = { command = { \"/usr/sbin/runuser\", \"-u\", \"postgres\", "
                            "\"--\", \"" +
                            bin + "/pg_ctl\", \"-D\", \"" + data +
                            "\", \"stop\", \"-m\", \"fast\", \"-w\", \"-t\", \"60\" }, timeout = "
                            "\"60s\" },\n"
                            "  probes = { tcp { port = " +
                            std::to_string(port) +
                            ", every = \"200ms\", readiness = true } },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("pg")["ready"] == true; }, 60s))
      << d.watch("pg").dump() << d.output();
  auto r = d.cli({"stop", "pg"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(d.watch_state("pg"), "stopped");
  // pg_ctl saw the server go and exited 0 (nothing with the data
  // directory in its command line is left).
  ASSERT_TRUE(wait_for([&] { return count_processes(data) == 0; }, 60s));
  EXPECT_EQ(d.count_events("VGL0118", "pg"), 0) << d.output();
  EXPECT_EQ(d.count_events("VGL0110", "pg"), 0) << d.output();
  EXPECT_FALSE(std::filesystem::exists(data + "/postmaster.pid"));
}

TEST(Supervise, StartOptionsReachTheChild) {
  Daemon d;
  std::string out = d.dir() + "/child.txt";
  std::string cwd = d.dir() + "/work";
  std::filesystem::create_directories(cwd);
  d.write_rule("a.lua", R"(
watch "opts" {
  start = "echo \"$GREETING $(pwd) $(umask) $(id -un)\" > )" +
                            out + R"(; echo to-stdout; echo to-stderr >&2; exec sleep 1000",
  env = { GREETING = "hello" },
  cwd = ")" + cwd + R"(",
  umask = "027",
  user = "nobody",
})");
  chmod(d.dir().c_str(), 0777);
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return !read_file(out).empty(); })) << d.output();
  EXPECT_EQ(read_file(out), "hello " + cwd + " 0027 nobody\n");
  pid_t pid = d.watch_pid("opts");
  auto st = vigil::read_proc_stat(pid);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->session, pid);  // its own session and process group
  EXPECT_EQ(st->pgrp, pid);
  // stdout and stderr land in per-watch files under the state directory.
  EXPECT_TRUE(wait_for([&] {
    return read_file(d.state_dir() + "/logs/opts.stdout.log") == "to-stdout\n" &&
           read_file(d.state_dir() + "/logs/opts.stderr.log") == "to-stderr\n";
  }));
}

TEST(Supervise, ProgramsGetTheOpenFileLimitVigilWasGiven) {
  Daemon d;
  std::string out = d.dir() + "/limit.txt";
  d.write_rule("a.lua", "watch \"l\" { start = \"ulimit -Sn > " + out + "; exec sleep 1000\" }\n");
  d.set_prefix({"prlimit", "--nofile=1000:4000"});
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return !read_file(out).empty(); })) << d.output();
  EXPECT_EQ(read_file(out), "1000\n");
  // vigil itself raised its soft limit to the hard one.
  std::string limits = read_file("/proc/" + std::to_string(d.pid()) + "/limits");
  EXPECT_NE(limits.find("Max open files            4000                 4000"), std::string::npos)
      << limits;
}

TEST(Supervise, MissingProgramAtRunTimeCountsAsFailedStart) {
  Daemon d;
  std::string prog = d.dir() + "/prog.sh";
  write_file(prog, "#!/bin/sh\nexec sleep 1000\n");
  chmod(prog.c_str(), 0755);
  d.write_rule("a.lua", R"(
watch "gone" {
  start = { ")" + prog + R"(" },
  restart = { limit = 1, within = "10m", backoff = "10ms" },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("gone") == "running"; }));
  std::filesystem::remove(prog);
  kill(d.watch_pid("gone"), SIGKILL);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("gone") == "exhausted"; })) << d.output();
  auto w = d.watch("gone");
  ASSERT_TRUE(w["last_exit"].contains("error")) << w.dump();
  EXPECT_NE(w["last_exit"]["error"].get<std::string>().find("exec"), std::string::npos);
  EXPECT_GE(d.count_events("VGL0103", "gone"), 1);
}

TEST(Supervise, OrphansAreReapedBySubreaper) {
  Daemon d;
  std::string pidfile = d.dir() + "/orphan.pid";
  // The child double-forks a short-lived process whose parent exits at
  // once, so it reparents to the nearest subreaper: vigil.
  d.write_rule("a.lua", R"(
watch "forker" {
  start = { "/bin/sh", "-c", "(setsid sh -c 'echo $$ > )" +
                            pidfile + R"(; exec sleep 0.2' &); exec sleep 1000" },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return !read_file(pidfile).empty(); }));
  pid_t orphan = std::stoi(read_file(pidfile));
  // Gone entirely (not a lingering zombie) once it exits.
  EXPECT_TRUE(wait_for([&] { return !vigil::read_proc_stat(orphan); }, 5s));
}

TEST(Supervise, DaemonStopsChildrenOnSigterm) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  pid_t pid = d.watch_pid("s");
  int st = d.stop();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  EXPECT_FALSE(process_alive(pid));
}

TEST(Supervise, RearmWhilePausedStartsOnResume) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "c" { start = { "/bin/sh", "-c", "exit 1" },
            restart = { limit = 1, within = "10m", backoff = "10ms" }, rearm = "300ms" })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "c", 1));
  ASSERT_EQ(d.cli({"pause", "c"}).code, 0);
  ASSERT_TRUE(d.wait_event("VGL0107", "c", 1));
  EXPECT_EQ(d.watch_state("c"), "paused");
  int started = d.count_events("VGL0101", "c");
  ASSERT_EQ(d.cli({"resume", "c"}).code, 0);
  EXPECT_TRUE(d.wait_event("VGL0101", "c", started + 1)) << d.output();
}

TEST(Supervise, OperatorStartAfterStopRearmsTheBudget) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "c" { start = { "/bin/sh", "-c", "exit 1" },
            restart = { limit = 1, within = "10m", backoff = "10ms" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "c", 1));
  ASSERT_EQ(d.count_events("VGL0104", "c"), 1);
  ASSERT_EQ(d.cli({"stop", "c"}).code, 0);
  ASSERT_EQ(d.cli({"start", "c"}).code, 0);
  // A fresh budget: one more restart before it is exhausted again.
  ASSERT_TRUE(d.wait_event("VGL0105", "c", 2));
  EXPECT_EQ(d.count_events("VGL0104", "c"), 2);
}

TEST(Supervise, WatchReaddedWhileItsRemovalIsStoppingComesBack) {
  Daemon d;
  const char* rule = R"(
watch "slow" { start = { "/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done" },
               stop = { timeout = "500ms" } })";
  d.write_rule("a.lua", rule);
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("slow") == "running"; }));
  pid_t old = d.watch_pid("slow");
  d.write_rule("a.lua", "-- nothing\n");
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  d.write_rule("a.lua", rule);
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("slow");
        return p > 0 && p != old && d.watch_state("slow") == "running";
      },
      5s))
      << d.status().dump();
}

TEST(Supervise, StopCommandThatCannotStartFallsBackToTheSignal) {
  Daemon d;
  std::string prog = d.dir() + "/stopper.sh";
  write_file(prog, "#!/bin/sh\nkill $MAINPID\n");
  chmod(prog.c_str(), 0755);
  d.write_rule("a.lua", R"(
watch "s" { start = { "sleep", "1000" }, stop = { command = { ")" +
                            prog + R"(" }, timeout = "10s" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; }));
  std::filesystem::remove(prog);
  auto r = d.cli({"stop", "s"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(d.count_events("VGL0118", "s"), 1);
  EXPECT_EQ(d.count_events("VGL0110", "s"), 0);  // TERM did it, not the KILL after 10 s
}

TEST(Supervise, OnExhaustedCommandKnowsTheWatchAndReportsFailure) {
  Daemon d;
  std::string marker = d.dir() + "/exhausted.txt";
  d.write_rule("a.lua", R"(
watch "c" { start = { "/bin/sh", "-c", "exit 7" }, restart = false,
            on_exhausted = { "/bin/sh", "-c", "echo $VIGIL_WATCH $VIGIL_EXIT > )" +
                            marker + R"(; exit 3" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return read_file(marker) == "c 7\n"; })) << d.output();
  EXPECT_TRUE(d.wait_event("VGL0005", "c")) << d.output();  // the command's exit 3
  EXPECT_EQ(d.count_events("VGL0106", "c"), 1);
}

// The child gets its stdio and nothing else of vigil's (issue 13: it
// shares vigil's descriptor table until its first step makes one of its
// own from the low slots). With many watches, vigil holds a pidfd per
// child; none of them, and no other watch's output file, may reach a
// program, and each program's stdout and stderr are its own files.
TEST(Supervise, AChildHasItsStdioAndNoOtherDescriptor) {
  Daemon d;
  std::string rules;
  for (int i = 0; i < 20; ++i)
    rules += "watch \"w" + std::to_string(i) + "\" { start = \"echo out" + std::to_string(i) +
             "; echo err" + std::to_string(i) + " >&2; exec sleep 100070\" }\n";
  d.write_rule("a.lua", rules);
  ASSERT_TRUE(d.start()) << d.output();
  for (int i = 0; i < 20; ++i) {
    std::string w = "w" + std::to_string(i);
    ASSERT_TRUE(wait_for([&] {
      return read_file(d.state_dir() + "/logs/" + w + ".stdout.log") ==
                 "out" + std::to_string(i) + "\n" &&
             read_file(d.state_dir() + "/logs/" + w + ".stderr.log") ==
                 "err" + std::to_string(i) + "\n";
    })) << w
        << "\n"
        << d.output();
    pid_t pid = d.watch_pid(w);
    std::vector<std::string> fds;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
      fds.push_back(e.path().filename());
    std::sort(fds.begin(), fds.end());
    EXPECT_EQ(fds, (std::vector<std::string>{"0", "1", "2"})) << w;
    EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/0"), "/dev/null");
    EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/1"),
              d.state_dir() + "/logs/" + w + ".stdout.log");
  }
  // Restarted, a child still gets its own files (the slots were reset).
  pid_t old = d.watch_pid("w3");
  kill(old, SIGKILL);
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w3") > 0 && d.watch_pid("w3") != old; }));
  EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(d.watch_pid("w3")) + "/fd/2"),
            d.state_dir() + "/logs/w3.stderr.log");
}

// An output log's size is looked at after a write, not on a clock: the
// logs of idle programs are left alone, and one written past its
// max_size is rotated within seconds, and again after its next write.
TEST(Supervise, AnOutputLogWrittenPastItsSizeIsRotatedAndIdleOnesAreNotLookedAt) {
  Daemon d;
  std::string rules;
  for (int i = 0; i < 4; ++i)
    rules += "watch \"idle" + std::to_string(i) + "\" { start = { \"sleep\", \"100071\" } }\n";
  // The writer writes 3000 bytes each time the test creates GO.
  rules += "watch \"w\" { start = { \"sh\", \"-c\", [[while :; do while [ ! -e '" + d.dir() +
           "/GO' ]; do sleep 0.05; done; rm '" + d.dir() +
           "/GO'; head -c 3000 /dev/zero | tr '\\0' x; done]] }, log = { max_size = \"1KB\", "
           "keep = 2 } }\n";
  d.write_rule("a.lua", rules);
  ASSERT_TRUE(d.start()) << d.output();
  auto looked = [&] {
    auto info = d.daemon_info();
    return info.is_object() ? info["output_logs"].value("looked", uint64_t{0}) : uint64_t{0};
  };
  // Each of the ten files is looked at once, after it was opened.
  ASSERT_TRUE(wait_for([&] { return looked() == 10; })) << looked() << "\n" << d.output();
  pid_t writer = d.watch_pid("w");
  std::string log = d.state_dir() + "/logs/w.stdout.log";
  auto size = [](const std::string& path) {
    std::error_code ec;
    auto n = std::filesystem::file_size(path, ec);
    return ec ? -1 : static_cast<long>(n);
  };
  for (int round = 1; round <= 2; ++round) {
    uint64_t before = looked();
    write_file(d.dir() + "/GO", "");
    ASSERT_TRUE(wait_for([&] { return size(log + "." + std::to_string(round)) == 3000; },
                         std::chrono::seconds(40)))
        << "round " << round << ": " << size(log + ".1") << " " << size(log + ".2") << "\n"
        << d.output();
    EXPECT_EQ(size(log + ".1"), 3000);
    EXPECT_EQ(size(log), 0);
    // The written file, and (once more) after vigil's own truncation of it:
    // not the other nine.
    EXPECT_GE(looked(), before + 1);
    EXPECT_LE(looked(), before + 2) << "idle logs were looked at";
  }
  EXPECT_EQ(d.watch_pid("w"), writer);  // the writer was not touched
}

// End-to-end: daemons that fork and write a pid file (issue 14 item 3).
// The start command daemonizes; vigil adopts the process the pid file
// names when it is the daemon that command started, and treats its death
// as the watch's. Real daemonizing programs: a shell script that forks
// into a session of its own, and memcached -d -P.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "host/proc/proc_stat.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// A start command that daemonizes: a session of its own, the daemon
// (a sleep) forked into the background, its pid written, and the
// command exits 0 while the daemon runs on, reparented.
std::string daemonizer(const std::string& pidfile, const std::string& tag,
                       const std::string& before_write = "") {
  return "setsid sh -c 'sleep " + tag + " & " + before_write + "echo $! > " + pidfile + "'";
}

pid_t pid_in(const std::string& path) {
  std::string s = read_file(path);
  return s.empty() ? 0 : static_cast<pid_t>(std::atoi(s.c_str()));
}

}  // namespace

TEST(Pidfile, TheDaemonIsAdoptedAndItsDeathRestartsIt) {
  Daemon d;
  std::string pf = d.dir() + "/d.pid";
  d.write_rule("a.lua", R"(
watch "d" {
  start = ")" + daemonizer(pf, "100201") + R"(",
  pidfile = ")" + pf + R"(",
  restart = { limit = 5, within = "10m", backoff = "10ms" },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("d") == "running"; })) << d.output();
  pid_t first = d.watch_pid("d");
  EXPECT_EQ(first, pid_in(pf));
  auto st = vigil::read_proc_stat(first);
  ASSERT_TRUE(st);
  EXPECT_NE(st->session, first) << "the daemon is not a session leader here";
  EXPECT_EQ(st->ppid, d.pid()) << "reparented to vigil, a subreaper";
  EXPECT_EQ(d.count_events("VGL0195", "d"), 1);
  EXPECT_EQ(count_processes("sleep 100201"), 1);

  // Its death is seen at once and the start command runs again.
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("d");
    return p > 0 && p != first && d.watch_state("d") == "running";
  })) << d.output();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 3s);
  pid_t second = d.watch_pid("d");
  EXPECT_EQ(second, pid_in(pf));
  EXPECT_TRUE(process_alive(second));
  auto w = d.watch("d");
  EXPECT_EQ(w["restarts"], 1);
  EXPECT_EQ(w["last_exit"]["signal"], "KILL");
  EXPECT_EQ(d.count_events("VGL0195", "d"), 2);
  EXPECT_EQ(count_processes("sleep 100201"), 1);

  // A stop signals the daemon.
  ASSERT_EQ(d.cli({"stop", "d"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("d") == "stopped"; })) << d.output();
  EXPECT_TRUE(wait_for([&] { return !process_alive(second); }));
}

TEST(Pidfile, KeepAndRestartOfVigilReadoptsTheDaemon) {
  Daemon d;
  std::string pf = d.dir() + "/d.pid";
  d.write_rule("a.lua", R"(
watch "d" { start = ")" + daemonizer(pf, "100202") + R"(", pidfile = ")" + pf + R"(" })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("d") == "running"; })) << d.output();
  pid_t pid = d.watch_pid("d");
  ASSERT_EQ(d.cli({"quit", "--keep"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return !d.running(); })) << d.output();
  ASSERT_TRUE(process_alive(pid));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("d") == pid; })) << d.output();
  EXPECT_EQ(d.count_events("VGL0195", "d"), 0) << "re-adopted, not started again";
  EXPECT_EQ(count_processes("sleep 100202"), 1);
  // Still vigil's to stop: a shutdown stops it.
  d.stop();
  EXPECT_TRUE(wait_for([&] { return count_processes("sleep 100202") == 0; }))
      << "shutdown left the daemon running";
}

TEST(Pidfile, AStalePidFileIsNotTrusted) {
  Daemon d;
  std::string pf = d.dir() + "/d.pid";
  // A live process that is not the daemon, named by a pid file left over.
  pid_t stranger = spawn_external({"/bin/sleep", "100203"});
  write_file(pf, std::to_string(stranger) + "\n");
  d.write_rule("a.lua", R"(
watch "d" {
  start = ")" + daemonizer(pf, "100204", "sleep 0.3; ") + R"(",
  pidfile = ")" + pf + R"(",
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("d") == "running"; })) << d.output();
  pid_t pid = d.watch_pid("d");
  EXPECT_NE(pid, stranger);
  EXPECT_EQ(pid, pid_in(pf));
  EXPECT_EQ(count_processes("sleep 100204"), 1);
  kill(stranger, SIGKILL);
  reap(stranger);
}

TEST(Pidfile, FailuresAreEventsAndFailedStartsCounted) {
  Daemon d;
  std::string dir = d.dir();
  std::filesystem::create_directories(dir + "/adir");
  d.write_rule("a.lua", R"(
local budget = { limit = 1, within = "10m", backoff = "10ms" }
watch "never" { start = "true", pidfile = ")" + dir + R"(/never.pid", pidfile_timeout = "300ms", restart = budget }
watch "dead" { start = "echo $$ > )" + dir + R"(/dead.pid", pidfile = ")" + dir + R"(/dead.pid", pidfile_timeout = "300ms", restart = budget }
watch "fails" { start = "exit 3", pidfile = ")" + dir + R"(/fails.pid", restart = budget }
watch "hangs" { start = "sleep 100205", pidfile = ")" + dir + R"(/hangs.pid", pidfile_timeout = "300ms", restart = budget }
watch "dir" { start = "true", pidfile = ")" + dir + R"(/later", pidfile_timeout = "10s", restart = budget }
)");
  ASSERT_TRUE(d.start()) << d.output();
  // A directory where the pid file should be, made after the rules loaded:
  // refused at once, not after the timeout.
  std::filesystem::create_directories(dir + "/later");
  for (const char* w : {"never", "dead", "fails", "hangs", "dir"})
    ASSERT_TRUE(wait_for([&] { return d.watch_state(w) == "exhausted"; }, 15s))
        << w << "\n" << d.output();
  auto error_of = [&](const char* w) {
    auto ev = d.last_event("VGL0196", w);
    return ev.is_null() ? std::string("(no event)") : ev.dump();
  };
  EXPECT_NE(error_of("never").find("never.pid: never appeared after 0.3s"), std::string::npos)
      << error_of("never");
  EXPECT_NE(error_of("dead").find("which is not running after 0.3s"), std::string::npos)
      << error_of("dead");
  EXPECT_NE(error_of("fails").find("the start command exited 3"), std::string::npos)
      << error_of("fails");
  EXPECT_NE(error_of("hangs").find("did not exit within 0.3s"), std::string::npos)
      << error_of("hangs");
  EXPECT_NE(error_of("dir").find("later: is a directory"), std::string::npos) << error_of("dir");
  for (const char* w : {"never", "dead", "fails", "hangs", "dir"}) {
    EXPECT_EQ(d.count_events("VGL0196", w), 2) << w;  // the start and the one restart
    EXPECT_EQ(d.watch(w)["restarts"], 1) << w;
  }
  EXPECT_EQ(count_processes("sleep 100205"), 0) << "the hung start command was killed";
  EXPECT_TRUE(d.running());
}

TEST(Pidfile, CheckRefusesWhatIsKnowableAtLoad) {
  std::string dir = std::filesystem::temp_directory_path() / ("vigil-pf-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"start = \"true\", pidfile = \"" + dir + "\"", "rule.lua:1: watch 'w': pidfile: '" + dir + "' is a directory"},
      {"start = \"true\", pidfile = \"run/x.pid\"", "watch 'w'.pidfile: expected an absolute path"},
      {"start = \"true\", pidfile = \"/run/\"", "names a directory, not a file"},
      {"start = \"true\", pidfile_timeout = \"1s\"", "'pidfile_timeout' needs 'pidfile'"},
      {"start = \"true\", pidfile = \"/x.pid\", pidfile_timeout = 0", "watch 'w'.pidfile_timeout: must be longer than 0"},
      {"match = { name = \"x\" }, pidfile = \"/x.pid\"", "'pidfile' applies to a process vigil starts"},
  };
  for (const auto& c : cases) {
    auto r = check_rule("watch \"w\" { " + c.text + " }\n");
    EXPECT_EQ(r.code, 1) << c.text;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "rule: " << c.text << "\nerr: " << r.err;
  }
  std::filesystem::remove_all(dir);
}

TEST(Pidfile, MemcachedAsADaemon) {
  if (access("/usr/bin/memcached", X_OK) != 0) GTEST_SKIP() << "memcached is not installed";
  Daemon d;
  chmod(d.dir().c_str(), 0777);
  std::string pf = d.dir() + "/memcached.pid";
  int port = free_port();
  d.write_rule("a.lua", R"(
watch "mc" {
  start = { "/usr/bin/memcached", "-d", "-P", ")" + pf + R"(", "-u", "nobody",
            "-l", "127.0.0.1", "-p", ")" + std::to_string(port) + R"(", "-U", "0" },
  pidfile = ")" + pf + R"(",
  restart = { limit = 5, within = "10m", backoff = "10ms" },
  probes = { tcp { port = )" + std::to_string(port) + R"(, every = "100ms" } },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("mc") == "running"; })) << d.output();
  pid_t first = d.watch_pid("mc");
  EXPECT_EQ(first, pid_in(pf));
  EXPECT_NE(read_file("/proc/" + std::to_string(first) + "/cmdline").find("memcached"),
            std::string::npos);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("mc");
    return p > 0 && p != first && d.watch_state("mc") == "running";
  })) << d.output();
  pid_t second = d.watch_pid("mc");
  EXPECT_EQ(second, pid_in(pf));
  EXPECT_EQ(d.watch("mc")["restarts"], 1);
  d.stop();
  EXPECT_TRUE(wait_for([&] { return !process_alive(second); })) << "shutdown left memcached";
}

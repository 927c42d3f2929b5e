// End-to-end: evidence dumps of real processes: a death (the event and
// the output's last lines), a hang (the /proc files, the fd list with
// socket states, a core image from gcore, the rules' own items),
// retention, and a dump directory that cannot be written.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kTier = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/tier.py";

nlohmann::json dumps(const Daemon& d, const std::string& watch) {
  auto r = d.cli({"dumps", "--watch", watch, "--json"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json::array() : j;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST(Dump, ADeathLeavesTheEventAndTheLastLinesOfOutput) {
  Daemon d;
  d.write_rule("a.lua",
               "watch \"w\" { start = { \"/bin/sh\", \"-c\", \"echo one; echo two; echo oops >&2; "
               "exec sleep 1000\" }, dump = true }\n");
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") != 0; }));
  pid_t pid = d.watch_pid("w");
  ASSERT_TRUE(
      wait_for([&] { return has(read_file(d.state_dir() + "/logs/w.stderr.log"), "oops"); }));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0157", "w")) << d.output();
  auto list = dumps(d, "w");
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["trigger"], "exit");
  std::string dir = list[0]["path"];
  EXPECT_EQ(d.last_event("VGL0157", "w")["fields"]["path"], dir);
  auto event = nlohmann::json::parse(read_file(dir + "/event.json"));
  EXPECT_EQ(event["trigger"]["event"]["pid"], pid);
  EXPECT_EQ(event["trigger"]["event"]["signal"], "KILL");
  EXPECT_EQ(read_file(dir + "/stdout.tail"), "one\ntwo\n");
  EXPECT_EQ(read_file(dir + "/stderr.tail"), "oops\n");
  EXPECT_TRUE(has(read_file(dir + "/manifest.txt"), "event.json"));
  // The process is gone: nothing of /proc, and it is restarted as usual.
  EXPECT_FALSE(fs::exists(dir + "/proc.status"));
  ASSERT_TRUE(d.wait_event("VGL0101", "w", 2));
}

TEST(Dump, AHangKeepsProcFilesSocketsACoreAndTheRulesItems) {
  Daemon d;
  int port = free_port(), other = free_port();
  auto hung_watch = [&](const std::string& name, int p, const std::string& dump) {
    return "watch \"" + name + "\" { start = { \"python3\", \"" + kTier + "\", \"" +
           std::to_string(p) + "\" }, env = { SECRET = \"hunter2\" },\n" +
           "  probes = { tcp { port = " + std::to_string(p) +
           ", every = \"100ms\", readiness = true },\n"
           "             probe { check = function(done) done(false, \"says no\") end, every = "
           "\"200ms\", fails = 2, startup = \"30s\" } },\n"
           "  on_hung = \"alert\", dump = " +
           dump + " }\n";
  };
  d.write_rule("a.lua",
               hung_watch("h", port,
                          "{ core = true, extra = function(w, ev) return { { name = "
                          "\"hello.txt\", command = \"echo hello $VIGIL_WATCH\" }, { name = "
                          "\"hostname\", file = \"/etc/hostname\" } } end }") +
                   hung_watch("e", other, "{ on = \"hung\", environ = true }"));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(d.wait_event("VGL0157", "h", 1, 30s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0157", "e", 1, 30s)) << d.output();
  pid_t pid = d.watch_pid("h");
  auto list = dumps(d, "h");
  ASSERT_GE(list.size(), 1u);
  EXPECT_EQ(list[0]["trigger"], "hung");
  std::string dir = list[0]["path"];
  for (const char* f : {"proc.status", "proc.stat", "proc.limits", "proc.maps", "proc.wchan",
                        "proc.stack", "proc.io", "proc.cmdline", "fds.txt", "event.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  EXPECT_TRUE(has(read_file(dir + "/proc.status"), "Pid:\t" + std::to_string(pid)));
  EXPECT_TRUE(has(read_file(dir + "/fds.txt"), "tcp LISTEN port " + std::to_string(port)))
      << read_file(dir + "/fds.txt");
  EXPECT_FALSE(fs::exists(dir + "/proc.environ"));  // secrets stay out unless asked for
  EXPECT_EQ(read_file(dir + "/hostname"), read_file("/etc/hostname"));
  EXPECT_TRUE(wait_for([&] { return read_file(dir + "/hello.txt") == "hello h\n"; }));
  // gcore leaves the process running and writes core.PID.
  std::string core = dir + "/core." + std::to_string(pid);
  EXPECT_TRUE(wait_for([&] { return fs::exists(core) && fs::file_size(core) > 0; }, 60s))
      << read_file(dir + "/manifest.txt");
  EXPECT_TRUE(process_alive(pid));

  std::string edir = dumps(d, "e")[0]["path"];
  EXPECT_TRUE(has(read_file(edir + "/proc.environ"), "SECRET=hunter2"));
  EXPECT_FALSE(fs::exists(edir + "/core." + std::to_string(d.watch_pid("e"))));
}

TEST(Dump, TheLadderDumpStepKeepsOnlyTheNewest) {
  Daemon d;
  d.write_rule("a.lua",
               "watch \"w\" { start = { \"/bin/sleep\", \"1000\" }, dump = { on = {}, keep = 2 },\n"
               "  escalate = { \"dump\", { \"restart\", limit = 10, within = \"1h\", backoff = "
               "\"0s..0s\" } } }\n");
  ASSERT_TRUE(d.start());
  std::vector<std::string> paths;
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") != 0; }));
    ASSERT_EQ(kill(d.watch_pid("w"), SIGKILL), 0);
    ASSERT_TRUE(d.wait_event("VGL0157", "w", i)) << d.output();
    ASSERT_TRUE(d.wait_event("VGL0101", "w", i + 1)) << d.output();
    paths.push_back(d.last_event("VGL0157", "w")["fields"]["path"]);
  }
  auto list = dumps(d, "w");
  ASSERT_EQ(list.size(), 2u) << list.dump();
  EXPECT_EQ(list[0]["path"], paths[1]);
  EXPECT_EQ(list[1]["path"], paths[2]);
  EXPECT_FALSE(fs::exists(paths[0]));
  EXPECT_GE(d.count_events("VGL0151", "w"), 3);
}

TEST(Dump, AnUnwritableDumpDirectoryIsReportedAndRecoveryGoesOn) {
  Daemon d;
  d.write_rule("a.lua", "watch \"w\" { start = { \"/bin/sleep\", \"1000\" }, dump = true }\n");
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") != 0; }));
  fs::remove_all(d.state_dir() + "/dumps");
  write_file(d.state_dir() + "/dumps", "not a directory\n");
  ASSERT_EQ(kill(d.watch_pid("w"), SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0158", "w")) << d.output();
  EXPECT_TRUE(has(d.last_event("VGL0158", "w")["message"].get<std::string>(), "dumps"));
  ASSERT_TRUE(d.wait_event("VGL0101", "w", 2)) << d.output();
  EXPECT_EQ(d.cli({"ping"}).code, 0);
}

TEST(Dump, AFullDiskCutsTheDumpAndRecoveryGoesOn) {
  Daemon d;
  d.write_rule("a.lua", "watch \"w\" { start = { \"/bin/sleep\", \"1000\" }, dump = true }\n");
  ASSERT_TRUE(d.start());
  std::string dir = d.state_dir() + "/dumps";
  fs::create_directories(dir);
  // A real full disk: a 64 KB tmpfs, filled up.
  if (run_command({"/bin/mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir}).code != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  struct Unmount {
    std::string dir;
    ~Unmount() { run_command({"/bin/umount", "-l", dir}); }
  } unmount{dir};
  run_command({"/bin/dd", "if=/dev/zero", "of=" + dir + "/fill", "bs=1k", "count=100"});
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") != 0; }));
  ASSERT_EQ(kill(d.watch_pid("w"), SIGKILL), 0);
  // Whatever could be written (a directory entry, maybe nothing) is
  // reported; the watch is restarted as always.
  ASSERT_TRUE(wait_for([&] {
    return d.count_events("VGL0157", "w") + d.count_events("VGL0158", "w") > 0;
  })) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0101", "w", 2)) << d.output();
  auto ev =
      d.count_events("VGL0158", "w") ? d.last_event("VGL0158", "w") : d.last_event("VGL0157", "w");
  EXPECT_TRUE(has(ev.dump(), "No space left on device")) << ev.dump();
  EXPECT_EQ(d.cli({"ping"}).code, 0);
}

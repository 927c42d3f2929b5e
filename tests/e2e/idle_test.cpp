// End-to-end: what an idle vigil holds and hears (issue 13). The kernel's
// process events (the netlink proc connector) are subscribed to only
// while a watch or a rule needs them: a daemon with only started watches
// holds no connector socket, so what other software on the machine does
// never wakes it; a count added by a reload subscribes, and removing the
// last one unsubscribes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// The inodes of the NETLINK_CONNECTOR (protocol 11) sockets on the
// machine, from /proc/net/netlink.
std::set<unsigned long> connector_inodes() {
  std::set<unsigned long> out;
  std::ifstream in("/proc/net/netlink");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string sk;
    int eth = -1;
    std::string pid, groups, rmem, wmem, dump, locks, drops;
    unsigned long inode = 0;
    if (f >> sk >> eth >> pid >> groups >> rmem >> wmem >> dump >> locks >> drops >> inode &&
        eth == 11)
      out.insert(inode);
  }
  return out;
}

// How many proc-connector sockets the process holds: its fds that are
// sockets (socket:[INODE]) whose inode is a connector socket.
int connector_sockets(pid_t pid) {
  std::set<unsigned long> conn = connector_inodes();
  int n = 0;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code lec;
    std::string target = std::filesystem::read_symlink(e.path(), lec).string();
    if (lec || !target.starts_with("socket:[")) continue;
    unsigned long inode = std::stoul(target.substr(8));
    n += conn.contains(inode);
  }
  return n;
}

bool subscribed(const Daemon& d) {
  auto info = d.daemon_info();
  return info.is_object() && info.value("proc_events", false);
}

std::set<std::string> wanted(const Daemon& d) {
  auto info = d.daemon_info();
  std::set<std::string> out;
  if (info.is_object() && info.contains("proc_events_wanted"))
    for (const auto& w : info["proc_events_wanted"]) out.insert(w.get<std::string>());
  return out;
}

// A copy of /bin/sleep named `name` in the test's directory (its own comm:
// no other test's processes match it).
std::string named_sleep(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  std::filesystem::copy_file("/bin/sleep", path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path;
}

std::string token_of(const Daemon& d) {
  return std::filesystem::path(d.dir()).filename().string().substr(10, 8);
}

const char* kStarted =
    "watch \"s1\" { start = { \"/bin/sleep\", \"100001\" } }\n"
    "watch \"s2\" { start = { \"/bin/sleep\", \"100002\" } }\n";

}  // namespace

TEST(Idle, StartedWatchesHoldNoProcConnectorSocket) {
  Daemon d;
  d.write_rule("a.lua", kStarted);
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s1") == "running"; })) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s2") == "running"; })) << d.output();
  auto info = d.daemon_info();
  ASSERT_TRUE(info.is_object());
  EXPECT_EQ(info["proc_events"], false) << info.dump();
  EXPECT_EQ(info["proc_events_available"], true) << info.dump();
  EXPECT_TRUE(info["proc_events_wanted"].empty()) << info.dump();
  EXPECT_EQ(connector_sockets(d.pid()), 0);
  // Started children still come back when killed (pidfd, no connector).
  pid_t p = d.watch_pid("s1");
  ASSERT_GT(p, 0);
  kill(p, SIGKILL);
  ASSERT_TRUE(wait_for([&] {
    pid_t now = d.watch_pid("s1");
    return now > 0 && now != p && d.watch_state("s1") == "running";
  })) << d.output();
  EXPECT_EQ(d.watch("s1")["last_exit"]["signal"], "KILL") << d.watch("s1").dump();
  EXPECT_EQ(connector_sockets(d.pid()), 0);
}

TEST(Idle, ACountAddedByReloadSubscribesAndRemovingTheLastUnsubscribes) {
  Daemon d;
  std::string name = "vti" + token_of(d);
  std::string prog = named_sleep(d.dir(), name);
  d.write_rule("a.lua", kStarted);
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s1") == "running"; })) << d.output();
  ASSERT_FALSE(subscribed(d));
  ASSERT_EQ(connector_sockets(d.pid()), 0);

  std::vector<pid_t> pids;
  for (int i = 0; i < 2; ++i) pids.push_back(spawn_external({prog, "100009"}));
  std::string counted = "watch \"cnt\" { match = { name = \"" + name +
                        "\" }, count = { max = 2 }, on_over = \"kill_newest\" }\n";
  d.write_rule("b.lua", counted);
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return subscribed(d); })) << d.output();
  EXPECT_EQ(wanted(d), (std::set<std::string>{"exits", "forks", "execs"}));
  EXPECT_EQ(connector_sockets(d.pid()), 1);
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 2; })) << d.output();
  // The count works from kernel events: one over is seen and killed.
  pid_t extra = spawn_external({prog, "100009"});
  ASSERT_TRUE(d.wait_event("VGL0125", "cnt")) << d.output();
  ASSERT_TRUE(reap(extra)) << "the newest process was not killed";

  // A reload that keeps it keeps the subscription.
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  EXPECT_TRUE(subscribed(d));
  EXPECT_EQ(connector_sockets(d.pid()), 1);

  // The last count removed: the socket is closed.
  std::filesystem::remove(d.rules_dir() + "/b.lua");
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return !subscribed(d); })) << d.daemon_info().dump();
  EXPECT_TRUE(wait_for([&] { return connector_sockets(d.pid()) == 0; }));
  for (pid_t p : pids) EXPECT_TRUE(process_alive(p)) << "a found process was stopped";

  // Added again: subscribed again, and it counts again.
  d.write_rule("b.lua", counted);
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return subscribed(d); })) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("cnt")["count"] == 2; })) << d.output();
  int overs = d.count_events("VGL0125", "cnt");
  extra = spawn_external({prog, "100009"});
  ASSERT_TRUE(d.wait_event("VGL0125", "cnt", overs + 1)) << d.output();
  ASSERT_TRUE(reap(extra)) << "the newest process was not killed";
  for (pid_t p : pids) {
    kill(p, SIGKILL);
    reap(p);
  }
}

TEST(Idle, AnAdoptedProcessIsHeardOnlyForNonZeroExitsAndItsStatusIsKnown) {
  Daemon d;
  std::string name = "vta" + token_of(d);
  std::string prog = named_sleep(d.dir(), name);
  d.write_rule("a.lua", kStarted);
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s1") == "running"; })) << d.output();
  ASSERT_FALSE(subscribed(d));

  pid_t p = spawn_external({prog, "100010"});
  d.write_rule("b.lua", "watch \"ad\" { match = { name = \"" + name + "\" } }\n");
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("ad") == p; })) << d.output();
  EXPECT_TRUE(subscribed(d));
  EXPECT_EQ(wanted(d), (std::set<std::string>{"nonzero_exits"}));
  EXPECT_EQ(connector_sockets(d.pid()), 1);
  kill(p, SIGTERM);
  ASSERT_TRUE(wait_for([&] { return d.watch("ad")["last_exit"].is_object(); })) << d.output();
  EXPECT_EQ(d.watch("ad")["last_exit"]["signal"], "TERM") << d.watch("ad").dump();
  reap(p);

  std::filesystem::remove(d.rules_dir() + "/b.lua");
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return !subscribed(d); })) << d.daemon_info().dump();
  EXPECT_TRUE(wait_for([&] { return connector_sockets(d.pid()) == 0; }));
}

// The default checks (stopped, blocked) sample a started child at half
// their shortest threshold, not every `every`: with `every = 0.2s` the
// twenty quiet watches are sampled once (and then every 15 s), while the
// watch with a figure to follow (threads) is sampled at every pass.
TEST(Idle, DefaultChecksDoNotSampleEveryPass) {
  Daemon d;
  std::string rules;
  for (int i = 0; i < 20; ++i)
    rules += "watch \"q" + std::to_string(i) +
             "\" { start = { \"/bin/sleep\", \"100003\" }, checks = { every = \"0.2s\" } }\n";
  rules +=
      "watch \"busy\" { start = { \"/bin/sleep\", \"100004\" },"
      " checks = { every = \"0.2s\", threads = 10000 } }\n";
  d.write_rule("a.lua", rules);
  ASSERT_TRUE(d.start()) << d.output();
  auto checks = [&] {
    auto info = d.daemon_info();
    return info.is_object() ? info["checks"] : nlohmann::json();
  };
  ASSERT_TRUE(wait_for(
      [&] {
        auto c = checks();
        return c.is_object() && c["passes"].get<uint64_t>() >= 25;
      },
      60s))
      << checks().dump();
  auto c = checks();
  uint64_t passes = c["passes"].get<uint64_t>(), samples = c["samples"].get<uint64_t>();
  // Sampled at every pass, all 21 would make samples ~ 21 x passes.
  EXPECT_LT(samples, 4 * passes) << c.dump();
  EXPECT_GE(samples, passes - 1) << c.dump();  // busy, at every pass
}

// A process that has not run since its last sample is in the state it
// was in then, so the sample reads only its scheduler counters; once it
// runs and blocks (a vfork parent waits in state D), its stat line is
// read again and the block is reported.
TEST(Idle, AProcessThatDidNotRunIsNotReadAgainButABlockAfterItIsSeen) {
  Daemon d;
  std::string name = "vti" + token_of(d).substr(2, 8);
  BlockedProcess blocked(name, false);  // asleep (S) until block()
  pid_t p = blocked.pid();
  ASSERT_GT(p, 0);
  d.write_rule("a.lua", "watch \"b\" { match = { name = \"" + name +
                            "\" }, checks = { every = \"50ms\", blocked = \"300ms\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("b") == p; })) << d.output();
  auto unchanged = [&] {
    auto info = d.daemon_info();
    return info.is_object() ? info["checks"].value("unchanged", uint64_t{0}) : 0;
  };
  ASSERT_TRUE(wait_for([&] { return unchanged() >= 3; }, 20s)) << d.daemon_info().dump();
  EXPECT_EQ(d.count_events("VGL0130", "b"), 0);
  ASSERT_TRUE(blocked.block());
  ASSERT_TRUE(d.wait_event("VGL0130", "b")) << d.output();
  EXPECT_EQ(d.last_event("VGL0130", "b")["fields"]["pid"], p);
}

// A stop of vigil's own child is reported by the kernel (SIGCHLD,
// CLD_STOPPED): seen and reported after its threshold with no sampling at
// all (`every` is an hour), and its continue clears it.
TEST(Idle, AStoppedStartedChildIsSeenWithoutPolling) {
  Daemon d;
  d.write_rule("a.lua",
               "watch \"st\" { start = { \"/bin/sleep\", \"100005\" },"
               " checks = { every = \"1h\", stopped = \"0.5s\", blocked = false },"
               " on_state = \"continue\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("st") == "running"; })) << d.output();
  pid_t p = d.watch_pid("st");
  kill(p, SIGSTOP);
  ASSERT_TRUE(d.wait_event("VGL0129", "st")) << d.output();
  EXPECT_GE(d.last_event("VGL0129", "st")["fields"]["for"].get<double>(), 0.5);
  ASSERT_TRUE(d.wait_event("VGL0132", "st")) << d.output();
  EXPECT_EQ(d.watch_pid("st"), p);
  auto info = d.daemon_info();
  EXPECT_EQ(info["checks"]["passes"].get<uint64_t>(), 1u) << info.dump();  // the stop's
}

// A rule's vigil.proc.on subscription asks for what its kind needs; a
// reload without it closes the connector.
TEST(Idle, ARuleSubscriptionAsksForItsKindOnly) {
  Daemon d;
  d.write_rule("a.lua", kStarted);
  d.write_rule("b.lua",
               "vigil.proc.on(\"spawn\", { name = \"vt-nothing-matches\" }, function() end)\n");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return subscribed(d); })) << d.output();
  EXPECT_EQ(wanted(d), (std::set<std::string>{"forks"}));
  EXPECT_EQ(connector_sockets(d.pid()), 1);
  std::filesystem::remove(d.rules_dir() + "/b.lua");
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(wait_for([&] { return !subscribed(d); })) << d.daemon_info().dump();
  EXPECT_EQ(connector_sockets(d.pid()), 0);
}

// End-to-end: hangs and exhaustion seen from /proc alone, on real
// programs that misbehave on purpose (small Python programs the test
// writes), started by the real daemon.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "host/core/fd.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// Writes a Python program into the test's directory; returns its path.
std::string program(const Daemon& d, const std::string& name, const std::string& code) {
  std::string path = d.dir() + "/" + name + ".py";
  write_file(path, code);
  return path;
}

vigil::Fd connect_to(int port) {
  vigil::Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) s.reset();
  return s;
}

}  // namespace

TEST(Hang, ABusyLoopIsACpuRunawayAndIsRestarted) {
  Daemon d;
  std::string spin = program(d, "spin", "while True:\n    pass\n");
  // 10 %, not more: on a 2-core machine at load 10 (ctest -j2 beside
  // compilers) a busy loop gets about a fifth of a core; an idle process
  // gets none, which is the difference this test is about.
  d.write_rule("a.lua", "watch \"spin\" { start = { \"python3\", \"" + spin +
                            "\" },\n"
                            "  checks = { every = \"100ms\", cpu = { percent = 10, [\"for\"] = "
                            "\"500ms\" } },\n"
                            "  on_state = \"restart\", stop = { timeout = \"1s\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("spin") > 0; }));
  pid_t first = d.watch_pid("spin");
  ASSERT_TRUE(d.wait_event("VGL0134", "spin")) << d.output();
  auto e = d.last_event("VGL0134", "spin");
  // A process of this watch (on a loaded machine the first one may have
  // gone before the check's window was full: then it is a later one).
  bool started = false;
  for (const auto& ev : d.events())
    if (ev["id"] == "VGL0101" && ev["watch"] == "spin" && ev["fields"]["pid"] == e["fields"]["pid"])
      started = true;
  EXPECT_TRUE(started) << e.dump() << " (first pid " << first << ")";
  EXPECT_GE(e["fields"]["percent"].get<double>(), 10);
  EXPECT_GE(e["fields"]["for"].get<double>(), 0.5);
  // on_state = "restart": killed, then recovered through the budget.
  ASSERT_TRUE(d.wait_event("VGL0122", "spin")) << d.output();
  pid_t runaway = e["fields"]["pid"].get<pid_t>();
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("spin");
    return p > 0 && p != runaway;
  })) << d.output();
  // At least 1: the new process spins too, and may have been restarted
  // again by the time the status is read (the sanitized build is slow).
  EXPECT_GE(d.watch("spin")["restarts"].get<int>(), 1);
  d.stop();
}

TEST(Hang, ConnectionsWaitingOnAServerThatDoesNotAcceptIsNoProgress) {
  Daemon d;
  int port = free_port();
  // Listens, tells the test it does, and never accepts: its accept loop
  // is stuck (here: it sleeps).
  std::string srv = program(d, "stuck",
                            "import socket, time, sys\n"
                            "s = socket.socket()\n"
                            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                            "s.bind(('127.0.0.1', " +
                                std::to_string(port) +
                                "))\n"
                                "s.listen(16)\n"
                                "open(sys.argv[1], 'w').close()\n"
                                "time.sleep(100000)\n");
  std::string ready = d.dir() + "/listening";
  d.write_rule("a.lua", "watch \"stuck\" { start = { \"python3\", \"" + srv + "\", \"" + ready +
                            "\" },\n"
                            "  checks = { every = \"100ms\", no_progress = \"500ms\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return std::filesystem::exists(ready); })) << d.output();
  EXPECT_EQ(d.count_events("VGL0135", "stuck"), 0);  // listening alone is no hang
  std::vector<vigil::Fd> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(connect_to(port));
  ASSERT_TRUE(clients.back()) << "could not connect";
  ASSERT_TRUE(d.wait_event("VGL0135", "stuck")) << d.output();
  auto e = d.last_event("VGL0135", "stuck");
  EXPECT_EQ(e["fields"]["port"], port);
  EXPECT_EQ(e["fields"]["backlog"], 3);
  EXPECT_GE(e["fields"]["for"].get<double>(), 0.5);
  // The default on_state is "alert": still the same process.
  EXPECT_EQ(d.watch("stuck")["restarts"], 0);
}

TEST(Hang, ResourceExhaustionIsReported) {
  Daemon d;
  int port = free_port();
  // Opens files up to 90 % of a limit of 64, starts 12 threads, holds
  // 40 MB, and leaves the connections the test makes and closes in
  // CLOSE_WAIT.
  std::string hog = program(d, "hog",
                            "import resource, socket, sys, threading, time\n"
                            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
                            "files = [open('/dev/null') for _ in range(56)]\n"
                            "for _ in range(12): threading.Thread(target=time.sleep, "
                            "args=(100000,), daemon=True).start()\n"
                            "ballast = bytearray(40 * 1024 * 1024)\n"
                            "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
                            "s = socket.socket()\n"
                            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                            "s.bind(('127.0.0.1', " +
                                std::to_string(port) +
                                "))\n"
                                "s.listen(16)\n"
                                "open(sys.argv[1], 'w').close()\n"
                                "held = [s.accept()[0] for _ in range(3)]\n"
                                "time.sleep(100000)\n");
  std::string ready = d.dir() + "/listening";
  d.write_rule("a.lua", "watch \"hog\" { start = { \"python3\", \"" + hog + "\", \"" + ready +
                            "\" },\n"
                            "  checks = { every = \"100ms\", fds = \"85%\", threads = 10,\n"
                            "             rss = \"30MB\", close_wait = 2 } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return std::filesystem::exists(ready); })) << d.output();
  for (int i = 0; i < 3; ++i) connect_to(port);  // connected, then closed at once
  for (const char* id : {"VGL0136", "VGL0137", "VGL0138", "VGL0139"})
    EXPECT_TRUE(d.wait_event(id, "hog")) << id << "\n" << d.output();
  auto fds = d.last_event("VGL0136", "hog")["fields"];
  EXPECT_EQ(fds["limit"], 64);
  EXPECT_GE(fds["count"].get<int>(), 56);
  EXPECT_EQ(d.last_event("VGL0137", "hog")["fields"]["count"], 3);
  EXPECT_GE(d.last_event("VGL0138", "hog")["fields"]["count"].get<int>(), 13);
  EXPECT_GT(d.last_event("VGL0139", "hog")["fields"]["rss"].get<double>(), 30 * 1048576);
  // Each once: an episode is reported when it starts, not at every sample.
  EXPECT_EQ(d.count_events("VGL0136", "hog"), 1);
}

TEST(Hang, MemoryGrowthIsReported) {
  Daemon d;
  // Grows by 1 MB every 20 ms: 3 MB a minute is far below that.
  std::string leak = program(d, "leak",
                             "import time\n"
                             "hoard = []\n"
                             "while True:\n"
                             "    b = bytearray(1024 * 1024)\n"
                             "    for i in range(0, len(b), 4096): b[i] = 1\n"
                             "    hoard.append(b)\n"
                             "    time.sleep(0.02)\n");
  d.write_rule("a.lua", "watch \"leak\" { start = { \"python3\", \"" + leak +
                            "\" },\n"
                            "  checks = { every = \"1s\", rss_growth = \"3MB\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  // At least half a minute of samples is needed for a rate.
  ASSERT_TRUE(d.wait_event("VGL0140", "leak", 1, 60s)) << d.output();
  EXPECT_GT(d.last_event("VGL0140", "leak")["fields"]["per_minute"].get<double>(), 3 * 1048576);
}

// End-to-end: vigil as a system service. The sd_notify messages it sends
// its own service manager (a fake one here: systemd is not PID 1 in CI),
// and `vigil run --daemon --pid-file` as init scripts use it.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "host/core/fd.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// The service manager's end: an AF_UNIX datagram socket bound at a path
// or an abstract name ("@..."), as systemd's is.
class FakeServiceManager {
 public:
  explicit FakeServiceManager(const std::string& address) : address_(address) {
    sock_ = vigil::Fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, address.data(), address.size());
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    if (address[0] == '@') {
      sa.sun_path[0] = '\0';
    } else {
      ++len;
    }
    bound_ = bind(sock_.get(), reinterpret_cast<sockaddr*>(&sa), len) == 0;
  }
  bool bound() const { return bound_; }

  // The next datagram, or "" when none comes within `timeout`.
  std::string next(std::chrono::milliseconds timeout = 10s) {
    pollfd p{sock_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return "";
    char buf[4096];
    ssize_t n = recv(sock_.get(), buf, sizeof buf, 0);
    std::string m = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    seen_.push_back(m);
    return m;
  }
  // Reads datagrams until one satisfies `pred` (it is returned), or "".
  std::string until(const std::function<bool(const std::string&)>& pred,
                    std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      std::string m = next(std::max(left, 1ms));
      if (!m.empty() && pred(m)) return m;
    }
    return "";
  }
  const std::vector<std::string>& seen() const { return seen_; }

 private:
  std::string address_;
  vigil::Fd sock_;
  bool bound_ = false;
  std::vector<std::string> seen_;
};

bool has_line(const std::string& datagram, const std::string& line) {
  return ("\n" + datagram + "\n").find("\n" + line + "\n") != std::string::npos;
}
std::string status_of(const std::string& datagram) {
  auto at = ("\n" + datagram).find("\nSTATUS=");
  if (at == std::string::npos) return "";
  std::string rest = datagram.substr(at + 7);
  return rest.substr(0, rest.find('\n'));
}

// The service manager's variables for the daemon started in its scope
// (the harness's fork inherits them), and only for it.
struct ServiceEnv {
  ServiceEnv(const std::string& socket, const std::string& watchdog_usec, const char* watchdog_pid) {
    setenv("NOTIFY_SOCKET", socket.c_str(), 1);
    setenv("WATCHDOG_USEC", watchdog_usec.c_str(), 1);
    if (watchdog_pid)
      setenv("WATCHDOG_PID", watchdog_pid, 1);
    else
      unsetenv("WATCHDOG_PID");
  }
  ~ServiceEnv() {
    for (const char* v : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) unsetenv(v);
  }
};

const char* kTwoWatches = R"(
watch "a" { start = { "sleep", "1000" } }
watch "b" { start = { "sleep", "1000" } }
)";

}  // namespace

TEST(ServiceNotify, ReadyStatusWatchdogReloadStopping) {
  Daemon d;
  d.write_rule("a.lua", kTwoWatches);
  FakeServiceManager sm(d.dir() + "/notify.sock");
  ASSERT_TRUE(sm.bound());
  {
    ServiceEnv env(d.dir() + "/notify.sock", "200000", nullptr);  // ping every 100 ms
    ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  }
  // READY=1 comes first, and with the state it was sent in: both watches
  // declared and started.
  std::string ready = sm.next();
  ASSERT_TRUE(has_line(ready, "READY=1")) << ready;
  std::string status = status_of(ready);
  EXPECT_TRUE(status == "2 watches: 2 running" || status == "2 watches: 2 starting" ||
              status == "2 watches: 1 running, 1 starting")
      << status;
  EXPECT_GT(d.watch_pid("a"), 0);

  // WATCHDOG=1 keeps coming from the loop.
  for (int i = 0; i < 3; ++i)
    ASSERT_FALSE(sm.until([](const std::string& m) { return has_line(m, "WATCHDOG=1"); }).empty())
        << "ping " << i;

  // The children do not get vigil's service manager.
  pid_t a = d.watch_pid("a");
  ASSERT_GT(a, 0);
  std::string environ = read_file("/proc/" + std::to_string(a) + "/environ");
  EXPECT_EQ(environ.find("notify.sock"), std::string::npos);
  EXPECT_EQ(environ.find("WATCHDOG_USEC"), std::string::npos);

  // STATUS= follows a change.
  ASSERT_EQ(d.cli({"stop", "b"}).code, 0);
  std::string changed = sm.until(
      [](const std::string& m) { return status_of(m) == "2 watches: 1 running, 1 stopped"; });
  EXPECT_FALSE(changed.empty());

  // RELOADING=1, then READY=1.
  auto r = d.cli({"reload"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string reloading = sm.until([](const std::string& m) { return !has_line(m, "WATCHDOG=1"); });
  EXPECT_TRUE(has_line(reloading, "RELOADING=1")) << reloading;
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos) << reloading;
  std::string again = sm.until([](const std::string& m) { return !has_line(m, "WATCHDOG=1"); });
  EXPECT_TRUE(has_line(again, "READY=1")) << again;

  // STOPPING=1 at quit, and nothing after it.
  ASSERT_EQ(d.cli({"quit"}).code, 0);
  std::string stopping = sm.until([](const std::string& m) { return has_line(m, "STOPPING=1"); });
  EXPECT_FALSE(stopping.empty());
  ASSERT_TRUE(wait_for([&] { return !d.running(); }, 20s));
  EXPECT_EQ(sm.next(200ms), "");
}

// An abstract address; WATCHDOG_PID of another process: no pings.
TEST(ServiceNotify, AbstractAddressAndAnotherProcessesWatchdog) {
  Daemon d;
  d.write_rule("a.lua", kTwoWatches);
  std::string address = "@vigil-e2e-notify-" + std::to_string(getpid());
  FakeServiceManager sm(address);
  ASSERT_TRUE(sm.bound());
  {
    ServiceEnv env(address, "100000", "1");
    ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  }
  std::string ready = sm.next();
  ASSERT_TRUE(has_line(ready, "READY=1")) << ready;
  // Pings would come every 50 ms: none in a second.
  std::string ping = sm.until([](const std::string& m) { return has_line(m, "WATCHDOG=1"); }, 1s);
  EXPECT_EQ(ping, "");
  EXPECT_TRUE(d.wait_event("VGL0179"));
}

// No service manager where NOTIFY_SOCKET points: the daemon runs on and
// says it once.
TEST(ServiceNotify, UnreachableManagerIsLoggedOnceAndHarmless) {
  Daemon d;
  d.write_rule("a.lua", kTwoWatches);
  {
    ServiceEnv env(d.dir() + "/nobody.sock", "100000", nullptr);
    ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  }
  ASSERT_TRUE(d.wait_event("VGL0178"));
  ASSERT_TRUE(wait_for([&] { return d.watch_state("a") == "running"; }));
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_EQ(d.count_events("VGL0178"), 1);
  EXPECT_EQ(d.cli({"ping"}).code, 0);
}

namespace {

std::vector<std::string> run_daemon_argv(const Daemon& d, const std::string& pid_file,
                                         const std::string& socket = "",
                                         const std::string& state = "") {
  return {VIGIL_BINARY,   "--socket",  socket.empty() ? d.socket() : socket,
          "run",          "--daemon",  "--pid-file",
          pid_file,       "--rules",   d.rules_dir(),
          "--state-dir",  state.empty() ? d.state_dir() : state,
          "--no-watch-rules"};
}

pid_t read_pid(const std::string& path) {
  std::string s = read_file(path);
  return s.empty() ? 0 : static_cast<pid_t>(std::stol(s));
}

// Stops a detached daemon (the test is its subreaper: it reparents here).
void quit_and_reap(const Daemon& d, pid_t pid, const std::string& socket = "") {
  std::vector<std::string> argv = {VIGIL_BINARY, "--socket", socket.empty() ? d.socket() : socket,
                                   "quit"};
  run_command(argv);
  reap(pid, 20s);
}

}  // namespace

TEST(RunDaemon, ParentReturnsOnceReadyPidFileWrittenAndRemoved) {
  Daemon d;
  d.write_rule("a.lua", kTwoWatches);
  std::string pid_file = d.dir() + "/vigil.pid";
  // run_command waits for the end of stdout and stderr too: the daemon
  // must not keep them.
  auto r = run_command(run_daemon_argv(d, pid_file));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_EQ(r.err, "");
  // Ready means running: the pid file is there, the daemon answers, and
  // the watches were started.
  pid_t pid = read_pid(pid_file);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(process_alive(pid));
  EXPECT_EQ(read_file("/proc/" + std::to_string(pid) + "/comm"), "vigil\n");
  EXPECT_EQ(d.cli({"ping"}).code, 0);
  EXPECT_GT(d.watch_pid("a"), 0);
  // A session of its own, of which it is not the leader (it can never
  // acquire a controlling terminal).
  EXPECT_NE(getsid(pid), getsid(0));
  EXPECT_NE(getsid(pid), pid);
  // Logging goes on to the log file.
  EXPECT_NE(read_file(d.state_dir() + "/vigil.log").find("VGL0001"), std::string::npos);

  quit_and_reap(d, pid);
  EXPECT_FALSE(process_alive(pid));
  EXPECT_FALSE(std::filesystem::exists(pid_file));
}

TEST(RunDaemon, BadRulesFailTheParentWithTheError) {
  Daemon d;
  d.write_rule("a.lua", "watch \"a\" {\n  start = { \"sleep\", \"1000\" },\n  restrat = 1,\n}\n");
  std::string pid_file = d.dir() + "/vigil.pid";
  auto r = run_command(run_daemon_argv(d, pid_file));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("a.lua:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("restrat"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(pid_file));
  EXPECT_NE(d.cli({"ping"}).code, 0);
}

TEST(RunDaemon, RefusesAPidFileOfALiveVigilAndReplacesAStaleOne) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "a" { start = { "sleep", "1000" } })");
  std::string pid_file = d.dir() + "/vigil.pid";
  // A stale pid file: a pid that is not a vigil (this test's own).
  write_file(pid_file, std::to_string(getpid()) + "\n");
  auto r = run_command(run_daemon_argv(d, pid_file));
  ASSERT_EQ(r.code, 0) << r.err;
  pid_t first = read_pid(pid_file);
  ASSERT_NE(first, getpid());

  // A second vigil (its own socket and state) on the same pid file.
  std::string socket2 = d.dir() + "/second.sock";
  auto second = run_command(run_daemon_argv(d, pid_file, socket2, d.dir() + "/state2"));
  EXPECT_EQ(second.code, 1);
  EXPECT_NE(second.err.find("names a running vigil (pid " + std::to_string(first) + ")"),
            std::string::npos)
      << second.err;
  EXPECT_EQ(read_pid(pid_file), first);
  EXPECT_EQ(d.cli({"ping"}).code, 0);
  EXPECT_NE(run_command({VIGIL_BINARY, "--socket", socket2, "ping"}).code, 0);

  quit_and_reap(d, first);
  EXPECT_FALSE(std::filesystem::exists(pid_file));
}

// The stdlib rule of host/daemon/paths.hpp for a binary outside its
// build directory: beside it (BIN/../share/vigil/stdlib), else the
// install prefix's; $VIGIL_STDLIB before both. (The build-tree binary
// finding the source tree's stdlib is what every other test relies on.)
TEST(Stdlib, BesideAnInstalledBinaryElseThePrefixAndTheEnvironmentFirst) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "a" { start = { "sleep", "1000" } })");
  namespace fs = std::filesystem;
  fs::create_directories(d.dir() + "/tree/bin");
  fs::create_directories(d.dir() + "/tree/share/vigil");
  std::string bin = d.dir() + "/tree/bin/vigil";
  fs::copy_file(VIGIL_BINARY, bin);
  fs::create_directory_symlink(std::string(VIGIL_SOURCE_DIR) + "/stdlib",
                               d.dir() + "/tree/share/vigil/stdlib");
  auto beside = run_command({bin, "check", d.rules_dir()});
  EXPECT_EQ(beside.code, 0) << beside.err;

  setenv("VIGIL_STDLIB", (d.dir() + "/nowhere").c_str(), 1);
  auto env = run_command({bin, "check", d.rules_dir()});
  unsetenv("VIGIL_STDLIB");
  EXPECT_EQ(env.code, 1);
  EXPECT_NE(env.err.find("standard rule library from " + d.dir() + "/nowhere"), std::string::npos)
      << env.err;

  fs::remove(d.dir() + "/tree/share/vigil/stdlib");
  auto prefix = run_command({bin, "check", d.rules_dir()});
  if (fs::exists(VIGIL_INSTALL_STDLIB_DIR "/vigil/rules.lua")) {
    EXPECT_EQ(prefix.code, 0) << prefix.err;
  } else {
    EXPECT_EQ(prefix.code, 1);
    EXPECT_NE(prefix.err.find("standard rule library from " VIGIL_INSTALL_STDLIB_DIR),
              std::string::npos)
        << prefix.err;
  }
}

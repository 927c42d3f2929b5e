// End-to-end: the control socket stays responsive under a restart storm
// (issue 11.8). Not a timing test: the deadline is generous (2 s for a
// reply that takes milliseconds), and what proves the mechanism is the
// loop's own counters in `status` (daemon.loop): the storm made it leave
// work for later iterations to serve the socket first.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// One request over the control socket with a deadline for the whole
// round trip: nullopt when the reply did not come in time (or at all).
std::optional<nlohmann::json> request(const std::string& socket_path, const std::string& line,
                                      double deadline_s) {
  double end = now_s() + deadline_s;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    close(fd);
    return std::nullopt;
  }
  std::string out = http_command(line), in;
  size_t off = 0;
  for (;;) {
    double left = end - now_s();
    if (left <= 0) break;
    pollfd p{fd, static_cast<short>(off < out.size() ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, static_cast<int>(left * 1000) + 1) <= 0) continue;
    if (off < out.size()) {
      ssize_t n = send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n > 0) off += static_cast<size_t>(n);
      continue;
    }
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    close(fd);
    auto j = nlohmann::json::parse(http_body(in), nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }
  close(fd);
  return std::nullopt;
}

uint64_t total_restarts(const nlohmann::json& st) {
  uint64_t n = 0;
  for (const auto& w : st["watches"]) n += w.value("restarts", uint64_t{0});
  return n;
}

}  // namespace

// 200 watches wait on one fifo and all exit when it is opened and closed
// (twice), 20 more exit every 100 ms, all restarted at once: 200 deaths
// at once are far more than one slice of the loop. Meanwhile every
// `status` is answered within 2 s, the storm is restarted, and the loop
// shows that it cut its slices short to get to the socket. Kept small:
// ctest runs it next to tests that need the CPU (a runaway check wants
// its spinner at 50 % of a core).
TEST(Storm, ControlSocketAnswersStatusDuringARestartStorm) {
  Daemon d;
  std::string fifo = d.dir() + "/storm.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string rules;
  const char* restart = "restart = { limit = 1000000, within = \"1s\", backoff = \"0s..0s\" }";
  for (int i = 0; i < 200; ++i)
    rules += "watch \"s" + std::to_string(i) + "\" { start = { \"/bin/cat\", \"" + fifo + "\" }, " +
             restart + ", log = false }\n";
  for (int i = 0; i < 20; ++i)
    rules += "watch \"c" + std::to_string(i) + "\" { start = { \"/bin/sleep\", \"0.1\" }, " +
             restart + ", log = false }\n";
  d.write_rule("storm.lua", rules);
  ASSERT_TRUE(d.start());
  const std::string sock = d.socket();
  ASSERT_TRUE(wait_for(
      [&] {
        auto st = request(sock, R"({"cmd":"status"})", 10);
        if (!st) return false;
        for (const auto& w : (*st)["watches"])
          if (w["name"].get<std::string>()[0] == 's' && w["state"] != "running") return false;
        return true;
      },
      60s));

  auto first = request(sock, R"({"cmd":"status"})", 10);
  ASSERT_TRUE(first);
  uint64_t restarts0 = total_restarts(*first);
  int answered = 0;
  double end = now_s() + 3, next_storm = 0;
  while (now_s() < end) {
    if (now_s() >= next_storm) {
      // Every reader blocked on the fifo gets EOF and exits.
      int w = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (w >= 0) close(w);
      next_storm = now_s() + 1.5;
    }
    double t0 = now_s();
    auto st = request(sock, R"({"cmd":"status"})", 2.0);
    ASSERT_TRUE(st) << "status did not answer within 2 s during the storm (request " << answered
                    << ", after " << now_s() - t0 << " s)";
    ASSERT_EQ((*st)["ok"], true);
    ++answered;
  }
  auto last = request(sock, R"({"cmd":"status"})", 10);
  ASSERT_TRUE(last);
  EXPECT_GT(answered, 1);
  // The storm was restarted meanwhile, not starved by the requests.
  EXPECT_GT(total_restarts(*last), restarts0 + 200);
  // The work of one iteration was bounded: the loop left queued work for
  // later iterations (so as to serve its fds first) and says so.
  const nlohmann::json loop = (*last)["daemon"].value("loop", nlohmann::json());
  ASSERT_TRUE(loop.is_object()) << "no daemon.loop in status: " << (*last)["daemon"].dump();
  EXPECT_GT(loop["slices_cut"].get<uint64_t>(), 0u) << loop.dump();
  EXPECT_GT(loop["deferred_peak"].get<uint64_t>(), 1u) << loop.dump();
  // ping too, the cheapest request, at the end of it all.
  EXPECT_TRUE(request(sock, R"({"cmd":"ping"})", 2.0));
  d.stop();
}

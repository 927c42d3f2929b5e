// ProbeEngine against real sockets on 127.0.0.1: a small HTTP server in a
// thread, listening sockets that never answer, closed ports.
#include "host/probe/probe_engine.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

Fd listener(int& port, int backlog = 64) {
  Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(s.get(), backlog);
  socklen_t len = sizeof a;
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return s;
}

// Answers each connection once with `reply` (then closes), until stopped.
class Server {
 public:
  explicit Server(std::string reply) : reply_(std::move(reply)) {
    sock_ = listener(port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        int c = accept(sock_.get(), nullptr, nullptr);
        if (c < 0) continue;
        char buf[4096];
        std::string req;
        while (req.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = read(c, buf, sizeof buf);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
        }
        last_request_ = req;
        ssize_t w = write(c, reply_.data(), reply_.size());
        (void)w;
        close(c);
      }
    });
  }
  ~Server() {
    stop_ = true;
    shutdown(sock_.get(), SHUT_RDWR);
    thread_.join();
  }
  int port() const { return port_; }
  std::string last_request() const { return last_request_; }

 private:
  std::string reply_;
  Fd sock_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::string last_request_;
  std::thread thread_;
};

std::string http_reply(int status, const std::string& body, const std::string& headers = "") {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" +
         headers + "\r\n" + body;
}

// Runs the loop until `done` or the deadline.
bool run_until(EventLoop& loop, const std::function<bool()>& done,
               std::chrono::seconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    loop.run_once(50ms);
  }
  return true;
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

ProbeResult check_http(EventLoop& loop, ProbeEngine& engine, const HttpCheck& c) {
  std::optional<ProbeResult> got;
  engine.http(c, [&](const ProbeResult& r) { got = r; });
  EXPECT_FALSE(got) << "reported from inside http()";
  EXPECT_TRUE(run_until(loop, [&] { return got.has_value(); }));
  return got.value_or(ProbeResult{});
}

}  // namespace

TEST(ProbeEngine, HttpStatusBodyAndHeaders) {
  EventLoop loop;
  ProbeEngine engine(loop);
  Server ok(http_reply(200, "all good", "X-Role: primary\r\n"));
  HttpCheck c;
  c.url = "http://127.0.0.1:" + std::to_string(ok.port()) + "/health";
  c.body = "good";
  c.expect_headers = {{"x-role", "prim"}};
  c.send_headers = {{"X-Probe", "vigil"}};
  ProbeResult r = check_http(loop, engine, c);
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "all good");
  EXPECT_NE(ok.last_request().find("X-Probe: vigil"), std::string::npos) << ok.last_request();
  EXPECT_NE(ok.last_request().find("GET /health"), std::string::npos);

  c.body = "missing";
  r = check_http(loop, engine, c);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "body does not contain 'missing'");
  c.body.clear();
  c.expect_headers = {{"X-Other", ""}};
  r = check_http(loop, engine, c);
  EXPECT_EQ(r.reason, "header 'X-Other' missing");
}

TEST(ProbeEngine, HttpErrorStatusRefusedAndUnresolvable) {
  EventLoop loop;
  ProbeEngine engine(loop);
  Server bad(http_reply(500, "database down"));
  HttpCheck c;
  c.url = "http://127.0.0.1:" + std::to_string(bad.port()) + "/";
  ProbeResult r = check_http(loop, engine, c);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.reason, "status 500, expected 200-399");
  EXPECT_EQ(r.excerpt, "database down");

  int port;
  { Fd closed = listener(port); }  // nothing listens there now
  c.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  EXPECT_EQ(check_http(loop, engine, c).reason, "connection refused");

  c.url = "http://no-such-host.invalid/";
  EXPECT_EQ(check_http(loop, engine, c).reason, "cannot resolve host 'no-such-host.invalid'");

  c.url = "ftp://x/";
  EXPECT_EQ(check_http(loop, engine, c).reason, "'ftp://x/' is not an http:// or https:// URL");
}

TEST(ProbeEngine, HttpTimeoutNeverBlocksTheLoop) {
  EventLoop loop;
  ProbeEngine engine(loop);
  int port;
  Fd silent = listener(port);  // accepts (backlog) and never answers
  HttpCheck c;
  c.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  c.timeout = 0.5;
  std::optional<ProbeResult> got;
  engine.http(c, [&](const ProbeResult& r) { got = r; });
  // A 10 ms timer keeps firing while the request waits.
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    if (!got) loop.after(10ms, tick);
  };
  loop.after(10ms, tick);
  ASSERT_TRUE(run_until(loop, [&] { return got.has_value(); }));
  EXPECT_FALSE(got->ok);
  EXPECT_NE(got->reason.find("timed out after"), std::string::npos) << got->reason;
  EXPECT_GE(got->elapsed, 0.5);
  EXPECT_LT(got->elapsed, 2.5);
  EXPECT_GE(ticks, 20);  // ~50 possible in 0.5 s; a blocked loop gives 0-1
  EXPECT_LT(loop.worst_iteration(), 100ms);
}

TEST(ProbeEngine, TcpConnectSendExpect) {
  EventLoop loop;
  ProbeEngine engine(loop);
  Server srv("+PONG\r\n");
  auto run_tcp = [&](const TcpCheck& t) {
    std::optional<ProbeResult> got;
    engine.tcp(t, [&](const ProbeResult& r) { got = r; });
    EXPECT_FALSE(got);
    EXPECT_TRUE(run_until(loop, [&] { return got.has_value(); }));
    return got.value_or(ProbeResult{});
  };
  TcpCheck t;
  t.port = srv.port();
  t.send = "PING\r\n\r\n";
  t.expect = "PONG";
  ProbeResult r = run_tcp(t);
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.excerpt, "+PONG\r\n");
  t.expect = "READY";
  EXPECT_EQ(run_tcp(t).reason, "reply does not contain 'READY'");
  t.host = "localhost";  // resolved off the loop
  t.expect = "PONG";
  EXPECT_TRUE(run_tcp(t).ok);
  t.host = "no-such-host.invalid";
  EXPECT_EQ(run_tcp(t).reason, "cannot resolve host 'no-such-host.invalid'");

  int port;
  Fd silent = listener(port);
  TcpCheck w;
  w.port = port;
  w.expect = "hello";
  w.timeout = 0.3;
  r = run_tcp(w);
  EXPECT_EQ(r.reason, "timed out after 0.3 s (waiting for 'hello')");
  silent.reset();
  TcpCheck refused;
  refused.port = port;
  EXPECT_EQ(run_tcp(refused).reason, "connection refused");
}

TEST(ProbeEngine, CancelAndDestroyRunNoCallbackAndLeakNothing) {
  EventLoop loop;
  int port;
  Fd silent = listener(port, 4096);
  size_t before = open_fds();
  int calls = 0, at_destruction = -1;
  {
    ProbeEngine engine(loop);
    HttpCheck h;
    h.url = "http://127.0.0.1:" + std::to_string(port) + "/";
    h.timeout = 0.3;
    TcpCheck quick, slow;
    quick.port = slow.port = port;
    quick.expect = slow.expect = "x";
    quick.timeout = 0.3;
    slow.timeout = 1.0;
    ProbeId a = engine.http(h, [&](const ProbeResult&) { ++calls; });
    ProbeId b = engine.tcp(quick, [&](const ProbeResult&) { ++calls; });
    // A callback cancels another check (still waiting: its timeout is later).
    ProbeId victim = engine.tcp(slow, [&](const ProbeResult&) { calls += 100; });
    engine.tcp(quick, [&](const ProbeResult&) {
      ++calls;
      engine.cancel(victim);
    });
    engine.cancel(a);
    engine.cancel(b);
    EXPECT_EQ(engine.in_flight(), 2u);
    ASSERT_TRUE(run_until(loop, [&] { return engine.in_flight() == 0; }));
    EXPECT_EQ(calls, 1);
    // Destroyed with checks in flight: no callback, then or later.
    for (int i = 0; i < 20; ++i) engine.http(h, [&](const ProbeResult&) { ++calls; });
    for (int i = 0; i < 20; ++i) engine.tcp(quick, [&](const ProbeResult&) { ++calls; });
    loop.run_once(20ms);
    // And one whose failure is already posted to the loop.
    HttpCheck bad;
    bad.url = "ftp://x/";
    engine.http(bad, [&](const ProbeResult&) { ++calls; });
    at_destruction = calls;
  }
  for (int i = 0; i < 5; ++i) loop.run_once(100ms);
  EXPECT_EQ(calls, at_destruction);
  EXPECT_EQ(open_fds(), before);
}

TEST(ProbeEngine, ManyConcurrentChecksAndNoFdLeak) {
  EventLoop loop;
  ProbeEngine engine(loop);
  Server ok(http_reply(200, "ok"));
  // Warm up once (curl is loaded at the first check) before counting fds.
  HttpCheck c;
  c.url = "http://127.0.0.1:" + std::to_string(ok.port()) + "/";
  c.timeout = 20;
  ASSERT_TRUE(check_http(loop, engine, c).ok);
  loop.run_once(10ms);
  size_t before = open_fds();
  int ok_count = 0, done = 0;
  constexpr int kChecks = 200;
  for (int i = 0; i < kChecks; ++i)
    engine.http(c, [&](const ProbeResult& r) {
      ++done;
      ok_count += r.ok;
    });
  ASSERT_TRUE(run_until(
      loop, [&] { return done == kChecks; }, 60s))
      << done;
  EXPECT_EQ(ok_count, kChecks);
  EXPECT_EQ(engine.in_flight(), 0u);
  loop.run_once(10ms);
  EXPECT_EQ(open_fds(), before);
}

TEST(ProbeEngine, UrlValidation) {
  EXPECT_FALSE(validate_http_url("http://127.0.0.1:8080/x"));
  EXPECT_FALSE(validate_http_url("https://[::1]:443/"));
  EXPECT_FALSE(validate_http_url("http://user:pw@host/"));
  EXPECT_EQ(*validate_http_url("htp://x"), "'htp://x' is not an http:// or https:// URL");
  EXPECT_EQ(*validate_http_url("http:///x"), "'http:///x' has no host");
  EXPECT_EQ(*validate_http_url("http://h:0/"), "'http://h:0/' has a bad port '0' (1-65535)");
  EXPECT_EQ(*validate_http_url("http://h:70000/"),
            "'http://h:70000/' has a bad port '70000' (1-65535)");
}

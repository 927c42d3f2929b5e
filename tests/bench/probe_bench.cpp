// vigil_probe_bench: the cost of probes and of /proc hang checks in the
// real daemon.
//
//   http      --watches W watches with --per-watch P http probes each,
//             every --every seconds, against a local HTTP server (an epoll
//             server in this process, keep-alive): the daemon's CPU over
//             --seconds, as % of one core, and the probes it made per second
//   timeout   the same probes against a port that accepts and never
//             answers, with a 1 s timeout: every probe times out. The
//             worst round trip of a control-socket ping sent every 10 ms
//             over the window is the loop's worst latency (a blocked loop
//             shows as a slow ping)
//   checks    --watches processes (sleep) with every /proc hang check on,
//             every 5 s: the daemon's CPU over --seconds
//   rtt       no daemon: this process's ProbeEngine on its own loop, --count
//             HTTP probes one after the other against the keep-alive server;
//             the round trip of each (start to result), median, p99 and worst
// CPU is the daemon's run time from /proc/PID/task/*/schedstat.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "host/control/client.hpp"
#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/probe/probe_engine.hpp"
#include "tests/bench/bench_util.hpp"

using nlohmann::json;

namespace {

struct Options {
  std::string mode = "http";
  int watches = 200;
  int per_watch = 5;
  double every = 1;
  double seconds = 30;
  std::string vigil = VIGIL_BINARY;
  std::string checks = "all";  // checks mode: "stat" (from the stat line only) or "all"
  int count = 5000;            // rtt mode: probes
};

bool wait_until(const std::function<bool()>& cond, double timeout_s) {
  double end = now_s() + timeout_s;
  while (!cond()) {
    if (now_s() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A keep-alive HTTP server on 127.0.0.1 in a thread: answers every
// request with 200 "ok"; with `silent`, accepts and never answers.
class Server {
 public:
  explicit Server(bool silent) : silent_(silent) {
    listen_ = vigil::Fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
    listen(listen_.get(), 4096);
    socklen_t len = sizeof a;
    getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~Server() {
    stop_ = true;
    thread_.join();
  }
  int port() const { return port_; }
  uint64_t requests() const { return requests_; }

 private:
  void run() {
    vigil::Fd ep(epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_.get();
    epoll_ctl(ep.get(), EPOLL_CTL_ADD, listen_.get(), &ev);
    std::vector<std::string> buf(65536);
    epoll_event events[256];
    while (!stop_) {
      int n = epoll_wait(ep.get(), events, 256, 100);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == listen_.get()) {
          int c;
          while ((c = accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
                 0) {
            epoll_event cev{};
            cev.events = EPOLLIN | EPOLLRDHUP;
            cev.data.fd = c;
            epoll_ctl(ep.get(), EPOLL_CTL_ADD, c, &cev);
          }
          continue;
        }
        char data[4096];
        ssize_t r = read(fd, data, sizeof data);
        if (r <= 0) {
          close(fd);
          buf[static_cast<size_t>(fd)].clear();
          continue;
        }
        if (silent_) continue;
        std::string& b = buf[static_cast<size_t>(fd)];
        b.append(data, static_cast<size_t>(r));
        size_t end;
        while ((end = b.find("\r\n\r\n")) != std::string::npos) {
          b.erase(0, end + 4);
          static const char kReply[] =
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
          ssize_t w = write(fd, kReply, sizeof kReply - 1);
          (void)w;
          ++requests_;
        }
      }
    }
  }

  bool silent_;
  vigil::Fd listen_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> requests_{0};
  std::thread thread_;
};

// Sequential probes through the ProbeEngine (the HTTP client under it)
// against the keep-alive server: what one probe costs end to end.
int round_trips(const Options& o) {
  Server server(false);
  vigil::EventLoop loop;
  vigil::ProbeEngine engine(loop);
  vigil::HttpCheck check;
  check.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/health";
  std::vector<double> rtt;
  int failed = 0;
  for (int i = 0; i < o.count + 50; ++i) {  // the first 50 warm up (curl loaded, connected)
    bool done = false;
    double t0 = now_s();
    engine.http(check, [&](const vigil::ProbeResult& r) {
      done = true;
      failed += !r.ok;
    });
    while (!done) loop.run_once(std::chrono::milliseconds(100));
    if (i >= 50) rtt.push_back(now_s() - t0);
  }
  std::sort(rtt.begin(), rtt.end());
  auto at = [&](double q) { return rtt[static_cast<size_t>(q * static_cast<double>(rtt.size() - 1))]; };
  printf("vigil_probe_bench --mode rtt --count %d\n", o.count);
  printf("  probe round trip: median %.1f us, p99 %.1f us, worst %.1f us (%d failed)\n",
         at(0.5) * 1e6, at(0.99) * 1e6, rtt.back() * 1e6, failed);
  return failed ? 1 : 0;
}

json request(const std::string& sock, const json& req) {
  std::string err;
  auto r = vigil::control_request(sock, req, err);
  if (!r) die("control: " + err);
  return *r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die("missing value for " + a);
      return std::string(argv[++i]);
    };
    if (a == "--mode")
      o.mode = next();
    else if (a == "--watches")
      o.watches = std::stoi(next());
    else if (a == "--per-watch")
      o.per_watch = std::stoi(next());
    else if (a == "--every")
      o.every = std::stod(next());
    else if (a == "--seconds")
      o.seconds = std::stod(next());
    else if (a == "--vigil")
      o.vigil = next();
    else if (a == "--checks")
      o.checks = next();
    else if (a == "--count")
      o.count = std::stoi(next());
    else
      die("usage: vigil_probe_bench [--mode http|timeout|checks|rtt] [--watches N] "
          "[--per-watch N] [--every S] [--seconds S] [--checks stat|all] [--count N] "
          "[--vigil PATH]");
  }
  if (o.mode == "rtt") return round_trips(o);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  std::string root = "/tmp/vigil-probe-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(root + "/rules");
  std::string sock = root + "/vigil.sock";

  std::unique_ptr<Server> server;
  if (o.mode != "checks") server = std::make_unique<Server>(o.mode == "timeout");
  int probes = o.mode == "checks" ? 0 : o.watches * o.per_watch;
  {
    std::ofstream r(root + "/rules/bench.lua");
    r << "for i = 1, " << o.watches << " do\n"
      << "  local probes = {}\n";
    if (o.mode != "checks") {
      r << "  for k = 1, " << o.per_watch << " do\n"
        << "    probes[k] = http { url = \"http://127.0.0.1:" << server->port()
        << "/health/\" .. i .. \"/\" .. k, every = " << o.every
        << ", timeout = \"1s\", fails = 1000 }\n"
        << "  end\n";
    }
    r << "  watch(\"w\" .. i) { start = { \"/bin/sleep\", \"100000\" },\n";
    if (o.mode == "checks" && o.checks == "stat")
      r << "    checks = { every = \"5s\", cpu = 90, threads = 1000, rss = \"1GB\",\n"
        << "      rss_growth = \"100MB\" },\n";
    else if (o.mode == "checks")
      r << "    checks = { every = \"5s\", cpu = 90, no_progress = \"30s\", fds = \"90%\",\n"
        << "      close_wait = 100, threads = 1000, rss = \"1GB\", rss_growth = \"100MB\" },\n";
    else
      r << "    probes = probes, checks = false, on_hung = \"alert\",\n";
    r << "    log = false }\n"
      << "end\n";
  }
  pid_t vigil = fork();
  if (vigil == 0) {
    execl(o.vigil.c_str(), o.vigil.c_str(), "--socket", sock.c_str(), "run", "--rules",
          (root + "/rules").c_str(), "--state-dir", (root + "/state").c_str(), "--quiet",
          "--no-watch-rules", static_cast<char*>(nullptr));
    _exit(127);
  }
  if (!wait_until(
          [&] {
            std::string err;
            auto r = vigil::control_request(sock, {{"cmd", "status"}}, err);
            if (!r) return false;
            int running = 0;
            for (const auto& w : (*r)["watches"]) running += w["state"] == "running";
            return running == o.watches;
          },
          120))
    die("the watches did not start");
  // Let the probes' phases spread out and connections be made.
  std::this_thread::sleep_for(std::chrono::duration<double>(std::max(2.0, 2 * o.every)));

  fprintf(stderr, "  .. %s: %d watches, %d probes, %.0f s window\n", o.mode.c_str(), o.watches,
          probes, o.seconds);
  uint64_t req0 = server ? server->requests() : 0;
  uint64_t cpu0 = run_ns(vigil);
  double t0 = now_s();
  double worst_ping = 0;
  uint64_t pings = 0;
  // Pings cost the daemon CPU too: only the latency mode sends them.
  bool ping = o.mode == "timeout";
  while (now_s() - t0 < o.seconds) {
    if (!ping) {
      std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
      break;
    }
    double p0 = now_s();
    request(sock, {{"cmd", "ping"}});
    worst_ping = std::max(worst_ping, now_s() - p0);
    ++pings;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  double t1 = now_s();
  uint64_t cpu1 = run_ns(vigil);
  uint64_t req1 = server ? server->requests() : 0;
  json st = request(sock, {{"cmd", "status"}});
  uint64_t failed = 0;
  for (const auto& w : st["watches"])
    if (w.contains("probes"))
      for (const auto& p : w["probes"]) failed += p.value("fails", 0) > 0;

  double window = t1 - t0;
  double cpu_pct = 100.0 * static_cast<double>(cpu1 - cpu0) / 1e9 / window;
  if (o.mode == "checks")
    printf("vigil_probe_bench --mode checks --checks %s --watches %d --seconds %g\n",
           o.checks.c_str(), o.watches, o.seconds);
  else
    printf("vigil_probe_bench --mode %s --watches %d --per-watch %d --every %g --seconds %g\n",
           o.mode.c_str(), o.watches, o.per_watch, o.every, o.seconds);
  if (o.mode == "http")
    printf("  probes answered by the server per second   %.0f (expected %.0f)\n",
           static_cast<double>(req1 - req0) / window, probes / o.every);
  if (o.mode != "checks")
    printf("  probes failing at the end                   %lu\n",
           static_cast<unsigned long>(failed));
  printf("  daemon CPU over the window                  %.3f %% of one core\n", cpu_pct);
  if (ping)
    printf("  worst control ping round trip (%lu pings)  %.2f ms\n",
           static_cast<unsigned long>(pings), worst_ping * 1000);

  kill(vigil, SIGTERM);
  waitpid(vigil, nullptr, 0);
  std::filesystem::remove_all(root);
  return 0;
}

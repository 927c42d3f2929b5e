// vigil_storm_bench: is the control socket still answering while the
// supervised processes storm? (issue 11.8)
//
//   vigil_storm_bench [--storm 1000] [--crashers 200] [--crash-ms 100]
//                     [--seconds 10] [--storm-every 2] [--gap-ms 0]
//                     [--vigil PATH] [--keep] [--runs R]
//
// The daemon gets `--storm` watches whose program (`cat FIFO`) blocks on
// one fifo and exits the moment the bench opens and closes its write end,
// all of them at once; and `--crashers` watches whose program
// (`sleep 0.1`) exits every `--crash-ms`. Restarts are immediate
// (backoff 0, a budget that never runs out), so the crashers alone ask for
// crashers * 1000 / crash-ms restarts a second, and every `--storm-every`
// seconds the storm adds --storm more at once.
//
// During the `--seconds` window one client thread sends `status` over the
// control socket in a loop (a new connection per request, as the CLI
// does; `--gap-ms` between requests), and records each round trip with
// CLOCK_MONOTONIC: connect to the last byte of the reply (not parsed:
// the end and `"ok":true` are checked). Printed: the round trips' p50 /
// p99 / max, the restarts per second (the sum of every watch's
// `restarts` in a status just after the window minus that of one just
// before it, over the time between them), the daemon's CPU (schedstat), the
// loop counters the daemon reports in `status` (`daemon.loop`, when it
// has them), and how busy the machine was (all cores, /proc/stat) with
// its load average: the machine is shared, read the figures with it.
//
// `--runs R` repeats the whole thing (a fresh daemon each time) and ends
// with the best and the median of the runs. Root is not required. The
// bench is a child subreaper, so nothing ends up with PID 1.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "host/core/fd.hpp"
#include "tests/bench/bench_util.hpp"

using nlohmann::json;

namespace {

struct Options {
  int storm = 1000;
  int crashers = 200;
  int crash_ms = 100;
  double seconds = 10;
  double storm_every = 2;
  int gap_ms = 0;
  int runs = 1;
  bool keep = false;
  std::string vigil = VIGIL_BINARY;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The whole machine's CPU use, all cores (/proc/stat).
struct SysCpu {
  uint64_t busy = 0, total = 0;
};
SysCpu sys_cpu() {
  SysCpu c;
  std::istringstream in(read_text("/proc/stat"));
  std::string cpu;
  in >> cpu;
  uint64_t v[8] = {};
  for (auto& x : v) in >> x;
  for (auto x : v) c.total += x;
  c.busy = c.total - v[3] - v[4];
  return c;
}
double busy_pct(const SysCpu& a, const SysCpu& b) {
  return b.total > a.total
             ? 100.0 * static_cast<double>(b.busy - a.busy) / static_cast<double>(b.total - a.total)
             : 0;
}

// One request over the control socket, as the CLI sends it: connect,
// the line, read to EOF. The reply's text, or nullopt when there was none.
std::optional<std::string> request_text(const std::string& sock, const std::string& line) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  vigil::Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return std::nullopt;
  // The control socket speaks HTTP: the request as it is, POST /v1/command.
  std::string out = "POST /v1/command HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(line.size()) + "\r\n\r\n" + line;
  if (::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
    return std::nullopt;
  std::string in;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  // The body (status is never held, so never chunked).
  size_t head = in.find("\r\n\r\n");
  if (head == std::string::npos) return std::nullopt;
  return in.substr(head + 4);
}

// The same, parsed: nullopt when the reply is not JSON.
std::optional<json> request(const std::string& sock, const std::string& line) {
  auto text = request_text(sock, line);
  if (!text) return std::nullopt;
  auto j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

uint64_t total_restarts(const json& st) {
  uint64_t n = 0;
  for (const auto& w : st["watches"]) n += w.value("restarts", uint64_t{0});
  return n;
}

size_t running(const json& st, const std::string& prefix) {
  size_t n = 0;
  for (const auto& w : st["watches"])
    if (w["name"].get<std::string>().starts_with(prefix) && w["state"] == "running") ++n;
  return n;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

struct RunResult {
  size_t requests = 0, failed = 0;
  double p50 = 0, p99 = 0, max = 0;  // ms
  double restarts_per_s = 0;
  double daemon_cpu_pct = 0;  // of one core
  double machine_busy = 0;
  std::string load0, load1;
  int storms = 0;
  json loop;  // the daemon's loop counters, if it reports them
};

RunResult run_once(const Options& o, int run) {
  std::string dir = (getenv("TMPDIR") ? std::string(getenv("TMPDIR")) : "/tmp") +
                    "/vigil-storm-bench-" + std::to_string(getpid()) + "-" + std::to_string(run);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/rules");
  std::string fifo = dir + "/storm.fifo";
  if (mkfifo(fifo.c_str(), 0600) != 0) die("mkfifo " + fifo + ": " + strerror(errno));
  {
    std::ofstream r(dir + "/rules/storm.lua");
    const char* restart = "restart = { limit = 1000000, within = \"1s\", backoff = \"0s..0s\" }";
    char sleep_arg[32];
    snprintf(sleep_arg, sizeof sleep_arg, "%.3f", o.crash_ms / 1000.0);
    for (int i = 0; i < o.storm; ++i)
      r << "watch \"s" << i << "\" { start = { \"/bin/cat\", \"" << fifo << "\" }, " << restart
        << ", log = false }\n";
    for (int i = 0; i < o.crashers; ++i)
      r << "watch \"c" << i << "\" { start = { \"/bin/sleep\", \"" << sleep_arg << "\" }, "
        << restart << ", log = false }\n";
  }
  std::string sock = dir + "/vigil.sock";
  pid_t daemon = fork();
  if (daemon == 0) {
    int null = open("/dev/null", O_WRONLY);
    int out = open((dir + "/daemon.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(null, 0);
    dup2(out, 1);
    dup2(out, 2);
    execl(o.vigil.c_str(), "vigil", "--socket", sock.c_str(), "run", "--rules",
          (dir + "/rules").c_str(), "--state-dir", (dir + "/state").c_str(), "--quiet",
          "--no-watch-rules", nullptr);
    _exit(127);
  }
  auto stop_daemon = [&] {
    kill(daemon, SIGTERM);
    double end = now_s() + 60;
    while (waitpid(daemon, nullptr, WNOHANG) == 0) {
      if (now_s() > end) {
        kill(daemon, SIGKILL);
        waitpid(daemon, nullptr, 0);
        break;
      }
      usleep(10000);
    }
    // Children of children that reparented to the bench.
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (!o.keep) std::filesystem::remove_all(dir);
  };

  // Every storm watch and crasher started once.
  std::optional<json> st;
  double deadline = now_s() + 120;
  for (;;) {
    st = request(sock, R"({"cmd":"status"})");
    if (st && (*st)["ok"] == true && running(*st, "s") == static_cast<size_t>(o.storm)) break;
    if (now_s() > deadline) {
      stop_daemon();
      die("the storm watches did not all start within 120 s (see " + dir + "/daemon.out)");
    }
    usleep(50000);
  }

  // The restart rate comes from a status before the window and one after
  // it (each stamped at its round trip's middle): the client's replies
  // are too few to tell when status takes seconds.
  double before_at = now_s();
  auto before = request(sock, R"({"cmd":"status"})");
  before_at = (before_at + now_s()) / 2;
  RunResult res;
  res.load0 = read_text("/proc/loadavg");
  res.load0.pop_back();
  SysCpu sys0 = sys_cpu();
  uint64_t cpu0 = run_ns(daemon);
  std::atomic<bool> done{false};
  std::vector<double> rtt;
  // The client does not parse the replies: parsing every 1200-watch
  // reply would take a good part of a core from the daemon and its
  // children on a 2-core machine.
  std::thread client([&] {
    while (!done) {
      double t0 = now_s();
      auto r = request_text(sock, R"({"cmd":"status"})");
      double t1 = now_s();
      if (!r || r->find("\"ok\":true") == std::string::npos || r->back() != '\n') {
        ++res.failed;
        continue;
      }
      rtt.push_back((t1 - t0) * 1e3);
      if (o.gap_ms > 0) usleep(static_cast<useconds_t>(o.gap_ms) * 1000);
    }
  });
  // The storm: all the fifo's readers get EOF at once.
  double start = now_s(), end = start + o.seconds;
  double next_storm = start;
  while (now_s() < end) {
    if (now_s() >= next_storm && o.storm > 0 && o.storm_every > 0) {
      int w = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (w >= 0) {
        close(w);
        ++res.storms;
      }
      next_storm += o.storm_every;
    }
    usleep(10000);
  }
  done = true;
  client.join();
  double after_at = now_s();
  auto after = request(sock, R"({"cmd":"status"})");
  after_at = (after_at + now_s()) / 2;
  uint64_t cpu1 = run_ns(daemon);
  SysCpu sys1 = sys_cpu();
  res.load1 = read_text("/proc/loadavg");
  res.load1.pop_back();
  double window = now_s() - start;

  json last = after ? *after : json();
  res.requests = rtt.size();
  res.p50 = pct(rtt, 50);
  res.p99 = pct(rtt, 99);
  res.max = rtt.empty() ? 0 : *std::max_element(rtt.begin(), rtt.end());
  if (before && after && after_at > before_at)
    res.restarts_per_s = static_cast<double>(total_restarts(*after) - total_restarts(*before)) /
                         (after_at - before_at);
  res.daemon_cpu_pct = static_cast<double>(cpu1 - cpu0) / 1e9 / window * 100;
  res.machine_busy = busy_pct(sys0, sys1);
  if (!last.is_null() && last["daemon"].contains("loop")) res.loop = last["daemon"]["loop"];
  stop_daemon();
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--storm")
      o.storm = std::stoi(next());
    else if (a == "--crashers")
      o.crashers = std::stoi(next());
    else if (a == "--crash-ms")
      o.crash_ms = std::stoi(next());
    else if (a == "--seconds")
      o.seconds = std::stod(next());
    else if (a == "--storm-every")
      o.storm_every = std::stod(next());
    else if (a == "--gap-ms")
      o.gap_ms = std::stoi(next());
    else if (a == "--runs")
      o.runs = std::stoi(next());
    else if (a == "--vigil")
      o.vigil = next();
    else if (a == "--keep")
      o.keep = true;
    else
      die("unknown option " + a);
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  printf(
      "vigil_storm_bench: %s; %d storm watches (all exit every %.1f s), %d crashers (exit every "
      "%d ms), %.0f s window, status gap %d ms, %ld CPUs\n",
      o.vigil.c_str(), o.storm, o.storm_every, o.crashers, o.crash_ms, o.seconds, o.gap_ms,
      sysconf(_SC_NPROCESSORS_ONLN));
  std::vector<RunResult> runs;
  for (int r = 0; r < o.runs; ++r) {
    RunResult x = run_once(o, r);
    printf(
        "run %d: status round trip p50 %.1f ms, p99 %.1f ms, max %.1f ms (%zu requests, %zu "
        "failed); restarts %.0f/s; %d storms; vigil CPU %.0f %% of a core; machine %.0f %% busy, "
        "loadavg %s -> %s\n",
        r + 1, x.p50, x.p99, x.max, x.requests, x.failed, x.restarts_per_s, x.storms,
        x.daemon_cpu_pct, x.machine_busy, x.load0.c_str(), x.load1.c_str());
    if (!x.loop.is_null()) printf("  daemon loop: %s\n", x.loop.dump().c_str());
    fflush(stdout);
    runs.push_back(std::move(x));
  }
  if (runs.size() > 1) {
    auto field = [&](auto get) {
      std::vector<double> v;
      for (const auto& r : runs) v.push_back(get(r));
      std::sort(v.begin(), v.end());
      return v;
    };
    auto p99 = field([](const RunResult& r) { return r.p99; });
    auto p50 = field([](const RunResult& r) { return r.p50; });
    auto mx = field([](const RunResult& r) { return r.max; });
    auto rps = field([](const RunResult& r) { return r.restarts_per_s; });
    size_t mid = runs.size() / 2;
    printf("best of %zu runs: p50 %.1f ms, p99 %.1f ms, max %.1f ms, restarts %.0f/s\n",
           runs.size(), p50.front(), p99.front(), mx.front(), rps.back());
    printf("median of %zu runs: p50 %.1f ms, p99 %.1f ms, max %.1f ms, restarts %.0f/s\n",
           runs.size(), p50[mid], p99[mid], mx[mid], rps[mid]);
  }
  json j = json::array();
  for (const auto& r : runs)
    j.push_back({{"p50_ms", r.p50},
                 {"p99_ms", r.p99},
                 {"max_ms", r.max},
                 {"requests", r.requests},
                 {"failed", r.failed},
                 {"restarts_per_s", r.restarts_per_s},
                 {"vigil_cpu_pct", r.daemon_cpu_pct},
                 {"machine_busy_pct", r.machine_busy},
                 {"loadavg_start", r.load0},
                 {"loadavg_end", r.load1},
                 {"loop", r.loop}});
  printf("%s\n", j.dump().c_str());
  return 0;
}

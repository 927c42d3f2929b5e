// vigil_adopt_bench: the real daemon watching processes it did not start.
//
// The bench creates the machine it measures: --others processes that have
// nothing to do with vigil (forks of the bench, paused), --adopted
// processes vigil adopts by match, and --members processes of one name that
// a count watch counts. Then:
//   death     an adopted process dies (the kernel's exit event, from the
//             bench's own proc-connector subscription) -> the rules'
//             handler of its process_exited event runs (vigil.on), one
//             kill at a time; the time from the SIGKILL is shown too
//   count     a member forks one process past count.max -> the handler of
//             count_over runs (the fork is the member's, as a runaway
//             worker pool would do it)
//   idle      the daemon's CPU over a window with all of the above alive
// Times: the bench's CLOCK_MONOTONIC just before the kill/fork, and
// vigil.timer.now() (the same clock) inside the handler, which appends
// "<what> <watch> <seconds>" lines to a file the bench reads.
// Run as root (a netlink proc connector for vigil, many processes).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "host/control/client.hpp"
#include "host/core/fd.hpp"
#include "host/core/pidfd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/proc/proc_events.hpp"
#include "host/proc/proc_stat.hpp"
#include "tests/bench/bench_util.hpp"

using nlohmann::json;

namespace {

struct Options {
  int others = 10000;
  int adopted = 100;
  int members = 500;
  int deaths = 200;
  int forks = 100;
  double idle_seconds = 30;
  std::string vigil = VIGIL_BINARY;
  bool keep = false;
};

// Waits for cond with a deadline (a poll interval, not a synchronisation).
bool wait_until(const std::function<bool()>& cond, double timeout_s) {
  double end = now_s() + timeout_s;
  while (!cond()) {
    if (now_s() > end) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

struct Stats {
  double median = 0, p95 = 0, max = 0;
  size_t n = 0;
};
Stats stats(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  s.p95 = v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(0.95 * v.size())) - 1)];
  s.max = v.back();
  return s;
}

// Every process the bench makes is in this list and dies with it.
std::vector<pid_t> g_made;

// A fork of the bench named `comm` that waits forever (no exec: cheap).
pid_t make_paused(const char* comm) {
  pid_t p = fork();
  if (p == 0) {
    prctl(PR_SET_NAME, comm);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) pause();
  }
  if (p < 0) die(std::string("fork: ") + strerror(errno));
  g_made.push_back(p);
  return p;
}

// An adopted target: the bench's copy of sleep, with its index as argument
// (vigil matches "<prog> <index>").
pid_t make_target(const std::string& prog, int i) {
  pid_t p = fork();
  if (p == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::string arg = std::to_string(1000000 + i);
    execl(prog.c_str(), prog.c_str(), arg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  g_made.push_back(p);
  return p;
}

// The member that forks on command: it reads a byte from `cmd`, forks a
// child (which inherits its name, so it is a member too) and writes the
// child's pid to `reply`.
pid_t make_forker(const char* comm, int cmd, int reply) {
  pid_t p = fork();
  if (p == 0) {
    prctl(PR_SET_NAME, comm);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char c;
    while (read(cmd, &c, 1) == 1) {
      pid_t k = fork();
      if (k == 0) {
        for (;;) pause();
      }
      ssize_t ignored = write(reply, &k, sizeof k);
      (void)ignored;
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    }
    _exit(0);
  }
  g_made.push_back(p);
  return p;
}

struct CpuSample {
  uint64_t run_ns = 0, slices = 0;
  double at = 0;
};
CpuSample sample_cpu(pid_t pid) {
  CpuSample s;
  s.at = now_s();
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(e.path().string() + "/schedstat");
    uint64_t run = 0, wait = 0, slices = 0;
    f >> run >> wait >> slices;
    s.run_ns += run;
    s.slices += slices;
  }
  return s;
}

// Lines the rules' handlers append: "<what> <watch> <seconds>".
class Marks {
 public:
  explicit Marks(std::string path) : path_(std::move(path)) {}
  // Reads what is new; returns the time of the first new line with `what`
  // (and `watch`, when given).
  std::optional<double> take(const std::string& what, const std::string& watch = "") {
    std::ifstream f(path_);
    f.seekg(static_cast<std::streamoff>(offset_));
    std::string line;
    std::optional<double> found;
    while (std::getline(f, line)) {
      if (f.eof()) break;  // a partial line: read it next time
      offset_ += line.size() + 1;
      std::istringstream ls(line);
      std::string w, n;
      double t;
      ls >> w >> n >> t;
      if (!found && w == what && (watch.empty() || n == watch)) found = t;
    }
    return found;
  }

 private:
  std::string path_;
  size_t offset_ = 0;
};

json request(const std::string& sock, const json& req) {
  std::string err;
  auto r = vigil::control_request(sock, req, err);
  if (!r || !r->value("ok", false)) die("control " + req.dump() + ": " + (r ? r->dump() : err));
  return *r;
}

int run(const Options& o) {
  if (geteuid() != 0) die("run as root");
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  signal(SIGPIPE, SIG_IGN);
  rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  rlimit raised = nofile;
  raised.rlim_cur = raised.rlim_max;
  setrlimit(RLIMIT_NOFILE, &raised);

  char tmpl[] = "/tmp/vigil-adopt-bench.XXXXXX";
  if (!mkdtemp(tmpl)) die("mkdtemp");
  std::string root = tmpl;
  std::string prog = root + "/vbtarget";
  std::filesystem::copy_file("/bin/sleep", prog);
  std::filesystem::permissions(prog, std::filesystem::perms::owner_all);
  std::string marks_path = root + "/marks";
  std::filesystem::create_directories(root + "/rules");

  printf("vigil_adopt_bench: %d other processes, %d adopted, %d counted members\n", o.others,
         o.adopted, o.members);
  fflush(stdout);
  double t0 = now_s();
  for (int i = 0; i < o.others; ++i) make_paused("vbother");
  for (int i = 0; i < o.members - 1; ++i) make_paused("vbmember");
  int cmd[2], reply[2];
  if (pipe(cmd) || pipe(reply)) die("pipe");
  make_forker("vbmember", cmd[0], reply[1]);
  std::vector<pid_t> targets;
  for (int i = 0; i < o.adopted; ++i) targets.push_back(make_target(prog, i));
  // All targets exec'd before vigil starts: it adopts them at its scan.
  for (pid_t p : targets)
    if (!wait_until(
            [&] {
              auto st = vigil::read_proc_stat(p);
              return st && st->comm == "vbtarget";
            },
            30))
      die("a target did not exec");
  fprintf(stderr, "  .. created %d processes in %.1f s\n", o.others + o.members + o.adopted,
          now_s() - t0);

  std::string rules;
  for (int i = 0; i < o.adopted; ++i)
    rules += "watch \"a" + std::to_string(i) + "\" { match = { cmdline = \"" + prog + " " +
             std::to_string(1000000 + i) + "\" } }\n";
  rules += "watch \"members\" { match = { name = \"vbmember\" }, count = { max = " +
           std::to_string(o.members) + " } }\n";
  rules += "local f = assert(io.open(\"" + marks_path +
           "\", \"a\"))\n"
           "local function mark(what, ev)\n"
           "  f:write(what, \" \", ev.watch or \"-\", \" \", string.format(\"%.9f\", "
           "vigil.timer.now()), \"\\n\")\n"
           "  f:flush()\n"
           "end\n"
           "vigil.on(\"process_exited\", function(ev) mark(\"exit\", ev) end)\n"
           "vigil.on(\"process_adopted\", function(ev) mark(\"adopt\", ev) end)\n"
           "vigil.on(\"count_over\", function(ev) mark(\"over\", ev) end)\n"
           "vigil.on(\"count_within\", function(ev) mark(\"within\", ev) end)\n";
  std::ofstream(root + "/rules/bench.lua") << rules;

  std::string sock = root + "/vigil.sock";
  pid_t vigil = fork();
  if (vigil == 0) {
    setrlimit(RLIMIT_NOFILE, &nofile);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int out = open((root + "/daemon.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(out, 2);
    execl(o.vigil.c_str(), o.vigil.c_str(), "--socket", sock.c_str(), "run", "--rules",
          (root + "/rules").c_str(), "--state-dir", (root + "/state").c_str(), "--quiet",
          "--no-watch-rules", static_cast<char*>(nullptr));
    _exit(127);
  }
  Marks marks(marks_path);
  double launched = now_s();
  if (!wait_until(
          [&] {
            std::string err;
            auto r = vigil::control_request(sock, {{"cmd", "status"}}, err);
            if (!r || !r->value("ok", false)) return false;
            int adopted = 0;
            for (const auto& w : (*r)["watches"])
              if (!w["pid"].is_null()) ++adopted;
            return adopted == o.adopted;
          },
          60))
    die("vigil did not adopt every target; see " + root + "/daemon.out");
  double startup = now_s() - launched;
  json st = request(sock, {{"cmd", "status"}});
  bool events_on = st["daemon"].value("proc_events", false);
  int counted = 0;
  for (const auto& w : st["watches"])
    if (w["name"] == "members") counted = w["count"].get<int>();

  // -- idle
  CpuSample c0, c1;
  if (o.idle_seconds > 0) {
    fprintf(stderr, "  .. idle CPU over %.0f s\n", o.idle_seconds);
    request(sock, {{"cmd", "ping"}});
    c0 = sample_cpu(vigil);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.idle_seconds));  // the window
    c1 = sample_cpu(vigil);
  }

  // -- deaths
  fprintf(stderr, "  .. %d deaths of adopted processes\n", o.deaths);
  vigil::EventLoop loop;
  vigil::ProcEvents kernel(loop);
  std::string kerr;
  if (!kernel.open(kerr)) die("proc connector: " + kerr);
  std::map<pid_t, double> exited;  // kernel exit time of the bench's victims
  kernel.set_handler([&](const vigil::ProcEvent& e) {
    if (e.kind == vigil::ProcEvent::Kind::Exit)
      exited[e.pid] = static_cast<double>(e.time_ns) / 1e9;
  });
  std::vector<double> death_ms, kill_ms;
  for (int k = 0; k < o.deaths; ++k) {
    int i = k % o.adopted;
    pid_t victim = targets[static_cast<size_t>(i)];
    std::string name = "a" + std::to_string(i);
    vigil::Fd fd(vigil::pidfd_open(victim, 0));
    double t = now_s();
    vigil::pidfd_send_signal(fd.get(), SIGKILL, nullptr, 0);
    std::optional<double> at;
    if (!wait_until([&] { return (at = marks.take("exit", name)).has_value(); }, 10))
      die("no process_exited for " + name);
    if (!wait_until(
            [&] {
              kernel.drain();
              return exited.contains(victim);
            },
            10))
      die("no kernel exit event for " + name);
    kill_ms.push_back((*at - t) * 1e3);
    death_ms.push_back((*at - exited[victim]) * 1e3);
    exited.erase(victim);
    waitpid(victim, nullptr, 0);
    // A new instance for the next round; vigil finds it as it execs.
    targets[static_cast<size_t>(i)] = make_target(prog, i);
    if (!wait_until([&] { return marks.take("adopt", name).has_value(); }, 10))
      die("replacement of " + name + " not adopted");
  }

  // -- count over the limit at fork time
  fprintf(stderr, "  .. %d forks past count.max = %d\n", o.forks, o.members);
  std::vector<double> count_ms;
  for (int k = 0; k < o.forks; ++k) {
    double t = now_s();
    if (write(cmd[1], "f", 1) != 1) die("forker");
    pid_t kid = 0;
    if (read(reply[0], &kid, sizeof kid) != sizeof kid) die("forker reply");
    std::optional<double> at;
    if (!wait_until([&] { return (at = marks.take("over", "members")).has_value(); }, 10))
      die("no count_over");
    count_ms.push_back((*at - t) * 1e3);
    kill(kid, SIGKILL);
    if (!wait_until([&] { return marks.take("within", "members").has_value(); }, 10))
      die("no count_within");
  }

  kill(vigil, SIGTERM);
  waitpid(vigil, nullptr, 0);
  for (pid_t p : g_made) kill(p, SIGKILL);
  while (waitpid(-1, nullptr, 0) > 0) {
  }
  if (!o.keep) std::filesystem::remove_all(root);

  Stats d = stats(death_ms), k = stats(kill_ms), c = stats(count_ms);
  double window = c1.at - c0.at;
  double idle_pct =
      window > 0 ? static_cast<double>(c1.run_ns - c0.run_ns) / 1e9 / window * 100 : NAN;
  printf("\n  figure                                              value      target\n");
  printf("  proc connector in use                              %s\n", events_on ? "yes" : "NO");
  printf("  startup: %d adopted found, %d members counted       %.0f ms\n", o.adopted, counted,
         startup * 1e3);
  printf("  death of an adopted process -> event, median       %.3f ms   <= 1 ms\n", d.median);
  printf("    p95 / max (%zu kills)                              %.3f / %.3f ms\n", d.n, d.p95,
         d.max);
  printf("    from the SIGKILL (the kernel's exit included), median %.3f ms\n", k.median);
  printf("  fork past count.max (%d members) -> event, median %.3f ms   <= 10 ms\n", o.members,
         c.median);
  printf("    p95 / max (%zu forks)                              %.3f / %.3f ms\n", c.n, c.p95,
         c.max);
  if (o.idle_seconds > 0)
    printf(
        "  idle CPU, %.0f s window                              %.5f %%  <= 0.05 %% (%lu "
        "wakeups)\n",
        window, idle_pct, static_cast<unsigned long>(c1.slices - c0.slices));
  json j = {
      {"bench", "vigil_adopt"},
      {"others", o.others},
      {"adopted", o.adopted},
      {"members", o.members},
      {"proc_events", events_on},
      {"startup_ms", startup * 1e3},
      {"death_ms", {{"median", d.median}, {"p95", d.p95}, {"max", d.max}, {"n", d.n}}},
      {"kill_to_event_ms", {{"median", k.median}, {"p95", k.p95}, {"max", k.max}}},
      {"count_ms", {{"median", c.median}, {"p95", c.p95}, {"max", c.max}, {"n", c.n}}},
      {"idle", {{"window_s", window}, {"cpu_pct", idle_pct}, {"wakeups", c1.slices - c0.slices}}}};
  printf("\n%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto num = [&]() -> double {
      if (i + 1 >= argc) die(a + " needs a value");
      return atof(argv[++i]);
    };
    if (a == "--others")
      o.others = static_cast<int>(num());
    else if (a == "--adopted")
      o.adopted = static_cast<int>(num());
    else if (a == "--members")
      o.members = static_cast<int>(num());
    else if (a == "--deaths")
      o.deaths = static_cast<int>(num());
    else if (a == "--forks")
      o.forks = static_cast<int>(num());
    else if (a == "--idle-seconds")
      o.idle_seconds = num();
    else if (a == "--vigil" && i + 1 < argc)
      o.vigil = argv[++i];
    else if (a == "--keep")
      o.keep = true;
    else
      die("usage: vigil_adopt_bench [--others N] [--adopted N] [--members N] [--deaths N] "
          "[--forks N] [--idle-seconds S] [--vigil PATH] [--keep]");
  }
  if (o.adopted < 1 || o.members < 1) die("--adopted and --members must be >= 1");
  return run(o);
}

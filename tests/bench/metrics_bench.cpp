// vigil_metrics_bench: the cost of per-process metrics in the real daemon.
// --watches watches of `sleep` (state checks off, so only the sampler
// reads /proc), metrics every --interval seconds with the CSV files on
// (and the Prometheus endpoint, scraped once at the end): the daemon's
// CPU over --seconds, from /proc/PID/task/*/schedstat, as % of one core.
// With --no-metrics the same daemon runs without them (the baseline).
// With --waking the processes wake up every second (this binary with
// --tick), so every sample finds that they ran and reads all their files
// (the sampler's worst case); without it they are `sleep`s that never run.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "host/control/client.hpp"
#include "tests/bench/bench_util.hpp"

using nlohmann::json;

namespace {

uint64_t dir_bytes(const std::string& dir) {
  uint64_t n = 0;
  if (std::filesystem::is_directory(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.file_size();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--tick") {
    for (;;) sleep(1);  // a process that runs once a second
  }
  bool waking = false;
  int watches = 1000;
  double interval = 5, seconds = 60;
  bool metrics = true;
  std::string vigil = VIGIL_BINARY;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die("missing value for " + a);
      return std::string(argv[++i]);
    };
    if (a == "--watches")
      watches = std::stoi(next());
    else if (a == "--interval")
      interval = std::stod(next());
    else if (a == "--seconds")
      seconds = std::stod(next());
    else if (a == "--no-metrics")
      metrics = false;
    else if (a == "--waking")
      waking = true;
    else if (a == "--vigil")
      vigil = next();
    else
      die("usage: vigil_metrics_bench [--watches N] [--interval S] [--seconds S] [--no-metrics] "
          "[--waking] [--vigil PATH]");
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string root = "/tmp/vigil-metrics-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(root + "/rules");
  std::string sock = root + "/vigil.sock";
  {
    std::ofstream r(root + "/rules/bench.lua");
    std::string self = std::filesystem::canonical("/proc/self/exe");
    std::string start = waking ? "\"" + self + "\", \"--tick\"" : "\"/bin/sleep\", \"100000\"";
    r << "for i = 1, " << watches << " do\n"
      << "  watch(\"w\" .. i) { start = { " << start << " }, checks = false, log = false }\n"
      << "end\n";
  }
  char interval_text[32];
  snprintf(interval_text, sizeof interval_text, "%g", interval);
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<std::string> args = {vigil,     "--socket",        sock,          "run",
                                     "--rules", root + "/rules",   "--state-dir", root + "/state",
                                     "--quiet", "--no-watch-rules"};
    if (metrics)
      for (const char* a : std::initializer_list<const char*>{"--metrics-interval", interval_text,
                                                              "--metrics-listen", "127.0.0.1:0"})
        args.push_back(a);
    std::vector<char*> av;
    for (auto& a : args) av.push_back(a.data());
    av.push_back(nullptr);
    execv(av[0], av.data());
    _exit(127);
  }
  double deadline = now_s() + 180;
  for (;;) {
    std::string err;
    auto r = vigil::control_request(sock, {{"cmd", "status"}}, err);
    int running = 0;
    if (r)
      for (const auto& w : (*r)["watches"]) running += w["state"] == "running";
    if (running == watches) break;
    if (now_s() > deadline) die("the watches did not start");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Let a first pass (which opens every process's files) happen outside
  // the window: steady state is what the window measures.
  std::this_thread::sleep_for(std::chrono::duration<double>(interval + 1));
  auto sampler = [&](const char* key) {
    std::string err;
    auto r = vigil::control_request(sock, {{"cmd", "metrics"}}, err);
    return r && r->contains(key) ? (*r)[key].get<double>() : 0.0;
  };
  double sampler0 = metrics ? sampler("cpu_seconds") : 0, passes0 = metrics ? sampler("passes") : 0;
  uint64_t bytes0 = dir_bytes(root + "/state/metrics");
  uint64_t cpu0 = run_ns(pid);
  double t0 = now_s();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  uint64_t cpu1 = run_ns(pid);
  double window = now_s() - t0;
  uint64_t bytes1 = dir_bytes(root + "/state/metrics");
  size_t sampled = 0;
  double sampler_cpu = metrics ? sampler("cpu_seconds") - sampler0 : 0;
  double passes = metrics ? sampler("passes") - passes0 : 0;
  if (metrics) {
    std::string err;
    auto r = vigil::control_request(sock, {{"cmd", "metrics"}}, err);
    if (!r) die("metrics: " + err);
    for (const auto& w : (*r)["watches"]) sampled += w.value("processes", 0) > 0;
  }
  printf("vigil_metrics_bench --watches %d --interval %g --seconds %g%s%s\n", watches, interval,
         seconds, metrics ? "" : " --no-metrics", waking ? " --waking" : "");
  printf("  daemon CPU over the window                  %.3f %% of one core\n",
         100.0 * static_cast<double>(cpu1 - cpu0) / 1e9 / window);
  if (metrics) {
    printf(
        "  the sampler's own CPU (thread clock)        %.3f %% of one core, %.2f ms per pass "
        "(%.0f passes)\n",
        100.0 * sampler_cpu / window, passes > 0 ? sampler_cpu / passes * 1000 : 0, passes);
    printf("  watches with a sampled process              %zu\n", sampled);
    printf("  CSV written over the window                 %.1f KB/s\n",
           static_cast<double>(bytes1 - bytes0) / 1000 / window);
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::filesystem::remove_all(root);
  return 0;
}

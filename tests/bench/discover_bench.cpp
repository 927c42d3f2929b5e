// vigil_discover_bench: one `vigil discover` scan (host/proc/discover_scan)
// on a machine with --procs extra processes (10000 by default), and the
// Lua policy (stdlib/vigil/discover.lua) on three such scans. Root only;
// not registered with ctest. See docs/performance.md, "Issue 18: discovery".
//
// The processes: `sleep 600`, spawned by a helper that exits at once, so
// they are orphans re-parented to this bench (a PR_SET_CHILD_SUBREAPER),
// as a service's workers are re-parented to their supervisor. They get
// SIGKILLed and reaped at the end.
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "host/proc/discover_scan.hpp"
#include "lua/runtime.hpp"

extern char** environ;

namespace {

long rss_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::strtol(line.c_str() + strlen(key), nullptr, 10);
  return -1;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  int procs = 10000, rounds = 5;
  std::string stdlib = VIGIL_STDLIB_DIR;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--procs=", 0) == 0) procs = std::atoi(a.c_str() + 8);
    else if (a.rfind("--rounds=", 0) == 0) rounds = std::max(1, std::atoi(a.c_str() + 9));
    else if (a.rfind("--stdlib=", 0) == 0) stdlib = a.substr(9);
    else {
      fprintf(stderr, "usage: %s [--procs=N] [--rounds=N] [--stdlib=DIR]\n", argv[0]);
      return 2;
    }
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  auto t0 = std::chrono::steady_clock::now();
  pid_t helper = fork();
  if (helper == 0) {
    char sleep_path[] = "/bin/sleep", secs[] = "600";
    char* args[] = {sleep_path, secs, nullptr};
    for (int i = 0; i < procs; ++i) {
      pid_t pid;
      if (posix_spawn(&pid, sleep_path, nullptr, nullptr, args, environ) != 0) _exit(1);
    }
    _exit(0);
  }
  int st = 0;
  waitpid(helper, &st, 0);
  printf("spawned %d sleep processes in %.0f ms (orphans of a helper, re-parented here)\n", procs,
         ms_since(t0));

  vigil::DiscoverScanner scanner;
  long rss_before = rss_kib("VmRSS:");
  std::vector<double> times;
  size_t seen = 0, namespaces = 0;
  std::vector<std::vector<vigil::DiscoveredProcess>> kept;
  for (int r = 0; r < rounds; ++r) {
    vigil::ScanStats stats;
    auto t = std::chrono::steady_clock::now();
    auto snap = scanner.scan({}, &stats);
    times.push_back(ms_since(t));
    seen = stats.processes;
    namespaces = stats.namespaces;
    if (kept.size() < 3) kept.push_back(std::move(snap));  // a window of three scans
  }
  std::sort(times.begin(), times.end());
  printf("scan: %zu processes, %zu network namespaces; median %.1f ms, min %.1f, max %.1f (%d "
         "rounds)\n",
         seen, namespaces, times[times.size() / 2], times.front(), times.back(), rounds);
  long rss_scans = rss_kib("VmRSS:");
  printf("RSS: %ld KiB before, %ld KiB holding 3 snapshots (+%ld KiB)\n", rss_before, rss_scans,
         rss_scans - rss_before);

  // The policy on those three scans, as `vigil discover` runs it.
  auto t = std::chrono::steady_clock::now();
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < kept[0].size(); ++i) {
    nlohmann::json j = kept[0][i].to_json();
    j["first"] = 1;
    j["last"] = 3;
    j["seen"] = 3;
    list.push_back(std::move(j));
  }
  nlohmann::json input = {{"scans", 3}, {"window", 10}, {"every", 5}, {"self", getpid()},
                          {"systemd", false}, {"init_scripts", nlohmann::json::array()},
                          {"processes", std::move(list)}};
  double to_json_ms = ms_since(t);
  vigil::RuntimeOptions ro;
  ro.stdlib_dir = stdlib;
  ro.load_budget = 60;
  ro.memory_limit = 1024u << 20;
  vigil::RuleRuntime rt(ro, vigil::HostContext{});
  std::string error;
  t = std::chrono::steady_clock::now();
  nlohmann::json out = rt.discover(input, error);
  printf("policy: %.0f ms to JSON, %.0f ms in Lua (%zu candidates)%s%s; peak RSS %ld KiB\n",
         to_json_ms, ms_since(t), out.is_null() ? 0 : out["candidates"].size(),
         error.empty() ? "" : ": ", error.c_str(), rss_kib("VmHWM:"));

  // Every child (the sleeps are ours now): killed and reaped.
  std::vector<pid_t> mine;
  for (const auto& p : kept[0])
    if (p.ppid == getpid()) mine.push_back(p.pid);
  for (pid_t p : mine) kill(p, SIGKILL);
  while (waitpid(-1, nullptr, 0) > 0) {
  }
  printf("cleaned up %zu processes\n", mine.size());
  return 0;
}

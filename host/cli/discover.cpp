// `vigil discover`: scans /proc over a window (host/proc/discover_scan),
// hands what it saw to the rules' discover policy (stdlib/vigil/discover.lua
// through RuleRuntime::discover) and prints or writes the proposed watches.
// It only reads: nothing running is touched.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "host/cli/discover.hpp"
#include "host/proc/discover_scan.hpp"
#include "lua/runtime.hpp"

using nlohmann::json;

namespace vigil::cli {

namespace {

bool exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

void sleep_until(const timespec& t) {
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, nullptr) == EINTR) {
  }
}

void print_table(const json& cands) {
  printf("%-28s %-8s %-6s %-12s %s\n", "NAME", "PID", "SCORE", "RECOVERY", "LISTENING");
  for (const auto& c : cands) {
    std::string ports;
    for (const auto& s : c["process"]["listening"]) {
      if (!ports.empty()) ports += " ";
      ports += s.contains("port") ? s["proto"].get<std::string>() + ":" + s["port"].dump()
                                  : "unix:" + s.value("path", std::string());
    }
    std::string rec = c["recovery"].value("method", std::string("alert"));
    printf("%-28s %-8s %-6s %-12s %s\n", c.value("name", std::string()).c_str(),
           c["process"]["pid"].dump().c_str(), c["score"].dump().c_str(), rec.c_str(),
           ports.c_str());
  }
}

}  // namespace

int cmd_discover_last(Global& g, const DiscoverArgs& a) {
  int code = 0;
  auto reply = request(g, {{"cmd", "discover"}}, code);
  if (!reply) return code;
  if (!reply->value("ok", false)) {
    std::cerr << "vigil: " << reply->value("error", std::string("failed")) << "\n";
    return kExitFailed;
  }
  reply->erase("ok");
  if (a.json) {
    std::cout << reply->dump(2) << "\n";
    return 0;
  }
  time_t at = reply->value("at", static_cast<time_t>(0));
  char when[64] = "?";
  tm t{};
  if (localtime_r(&at, &t)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &t);
  printf("last discovery: %s, %d scans over %gs\n", when, reply->value("scans", 0),
         reply->value("window", 0.0));
  print_table((*reply)["candidates"]);
  return 0;
}

int cmd_discover(const DiscoverArgs& a) {
  double window = parse_duration(a.window);
  double every = parse_duration(a.every);
  if (!(every > 0) || every > 86400)
    throw UsageError("--every: expected a duration from more than 0 to 1 day (e.g. 5s), got '" +
                     a.every + "'");
  if (!(window > 0) || window > 7 * 86400)
    throw UsageError("--window: expected a duration up to 7 days (e.g. 10m), got '" + a.window +
                     "'");
  if (window < 2 * every)
    throw UsageError("--window " + a.window + " is shorter than two scans --every " + a.every +
                     ": a candidate must be seen in at least 3 scans (window >= 2 x every)");
  if (!a.write.empty() && exists(a.write) && !a.force)
    throw UsageError("--write: " + a.write + " exists (add --force to replace it)");

  // The rules (optional) load first: they may tune the policy.
  RuntimeOptions ro;
  ro.stdlib_dir = a.stdlib;
  ro.load_budget = 60;
  ro.memory_limit = 1024u << 20;
  RuleRuntime rt(ro, HostContext{});
  if (!a.rules.empty()) {
    LoadResult res = rt.load(a.rules);
    if (!res.ok) {
      for (const auto& e : res.errors) std::cerr << e << "\n";
      return kExitFailed;
    }
  }

  int scans = static_cast<int>(std::floor(window / every + 1e-9)) + 1;
  DiscoverScanner scanner;
  DiscoverWindow seen;
  timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (int i = 1; i <= scans; ++i) {
    ScanOptions so;
    so.details = i == scans;
    ScanStats stats;
    seen.add(scanner.scan(so, &stats), i);
    // Progress on stderr (what a test waits for, what a person watches).
    fprintf(stderr, "vigil: discover: scan %d/%d: %zu processes, %zu network namespaces\n", i,
            scans, stats.processes, stats.namespaces);
    if (i == scans) break;
    double t = static_cast<double>(next.tv_sec) + next.tv_nsec / 1e9 + every;
    next.tv_sec = static_cast<time_t>(t);
    next.tv_nsec = static_cast<long>((t - static_cast<double>(next.tv_sec)) * 1e9);
    sleep_until(next);
  }

  json input = {{"scans", scans},      {"window", window},
                {"every", every},      {"self", static_cast<int>(getpid())},
                {"systemd", systemd_is_init()}, {"init_scripts", discover_init_scripts(a.init_dir)},
                {"processes", seen.processes()}};
  std::string error;
  json out = rt.discover(input, error);
  if (out.is_null()) {
    std::cerr << "vigil: discover: " << error << "\n";
    return kExitFailed;
  }
  json cands = out.contains("candidates") ? out["candidates"] : json::array();
  discover_lists_as_lists(cands);
  if (!a.write.empty()) {
    std::string text = out.value("text", std::string());
    // Written whole, then renamed: a reader never sees half a file.
    std::string tmp = a.write + ".tmp";
    {
      std::ofstream f(tmp, std::ios::trunc);
      f << text;
      if (!f.flush()) {
        std::cerr << "vigil: --write: cannot write " << tmp << "\n";
        return kExitFailed;
      }
    }
    // The proposal loads as `vigil check` would load it, or is not
    // written: it is made of what processes chose to put in their argv and
    // environment, and a file that does not load helps nobody.
    {
      RuntimeOptions co;
      co.stdlib_dir = a.stdlib;
      RuleRuntime check(co, HostContext{});
      LoadResult res = check.load(tmp);
      if (!res.ok) {
        std::cerr << "vigil: discover: the proposal does not load (a fault of vigil discover: "
                     "please report it with the lines below); "
                  << a.write << " was not written\n";
        for (const auto& e : res.errors) std::cerr << e << "\n";
        ::unlink(tmp.c_str());
        return kExitFailed;
      }
    }
    if (::rename(tmp.c_str(), a.write.c_str()) != 0) {
      std::cerr << "vigil: --write: cannot write " << a.write << "\n";
      ::unlink(tmp.c_str());
      return kExitFailed;
    }
  }
  if (a.json) {
    std::cout << json{{"scans", scans}, {"window", window}, {"every", every},
                      {"candidates", cands}, {"rejected", out.value("rejected", 0)}}
                     .dump(2)
              << "\n";
  } else {
    print_table(cands);
    if (!a.write.empty())
      printf("wrote %zu proposed watches (mode = \"observe\") to %s; review it, then "
             "`vigil check %s`\n",
             cands.size(), a.write.c_str(), a.write.c_str());
  }
  return 0;
}

}  // namespace vigil::cli

// `vigil discover`: scans /proc over a window (host/proc/discover_scan),
// hands what it saw to the rules' discover policy (stdlib/vigil/discover.lua
// through RuleRuntime::discover) and prints or writes the proposed watches.
// It only reads: nothing running is touched.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "host/cli/discover.hpp"
#include "host/proc/discover_scan.hpp"
#include "lua/runtime.hpp"

using nlohmann::json;

namespace vigil::cli {

namespace {

struct Seen {
  DiscoveredProcess latest;
  int first = 0, last = 0, seen = 0;
};

bool exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

// /etc/init.d/*: their text, for the policy to find the script that
// starts an executable.
json init_scripts(const std::string& dir) {
  json out = json::array();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::string path = dir + "/" + n;
    std::ifstream in(path);
    if (!in) continue;
    std::string text(64 * 1024, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    out.push_back({{"path", path}, {"text", text}});
  }
  return out;
}

bool systemd_is_init() {
  std::ifstream in("/proc/1/comm");
  std::string comm;
  std::getline(in, comm);
  return comm == "systemd";
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
  std::map<std::pair<pid_t, uint64_t>, Seen> seen;
  timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (int i = 1; i <= scans; ++i) {
    ScanOptions so;
    so.details = i == scans;
    ScanStats stats;
    for (auto& p : scanner.scan(so, &stats)) {
      Seen& s = seen[{p.pid, p.start_time}];
      if (s.seen == 0) s.first = i;
      s.last = i;
      ++s.seen;
      s.latest = std::move(p);
    }
    // Progress on stderr (what a test waits for, what a person watches).
    fprintf(stderr, "vigil: discover: scan %d/%d: %zu processes, %zu network namespaces\n", i,
            scans, stats.processes, stats.namespaces);
    if (i == scans) break;
    double t = static_cast<double>(next.tv_sec) + next.tv_nsec / 1e9 + every;
    next.tv_sec = static_cast<time_t>(t);
    next.tv_nsec = static_cast<long>((t - static_cast<double>(next.tv_sec)) * 1e9);
    sleep_until(next);
  }

  json procs = json::array();
  for (auto& [id, s] : seen) {
    json j = s.latest.to_json();
    j["first"] = s.first;
    j["last"] = s.last;
    j["seen"] = s.seen;
    procs.push_back(std::move(j));
  }
  json input = {{"scans", scans},      {"window", window},
                {"every", every},      {"self", static_cast<int>(getpid())},
                {"systemd", systemd_is_init()}, {"init_scripts", init_scripts(a.init_dir)},
                {"processes", std::move(procs)}};
  std::string error;
  json out = rt.discover(input, error);
  if (out.is_null()) {
    std::cerr << "vigil: discover: " << error << "\n";
    return kExitFailed;
  }
  json cands = out.contains("candidates") && out["candidates"].is_array() ? out["candidates"]
                                                                           : json::array();
  // Lua has one empty table for {} and []: lists stay lists in the JSON.
  for (auto& c : cands)
    for (json* l : {&c["listening"], &c["process"]["listening"], &c["reasons"]})
      if (l->is_object() && l->empty()) *l = json::array();
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

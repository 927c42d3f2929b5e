// Discovery: the daemon's periodic `vigil discover` (rules: discover {
// every = "1h", window = "10m", scans = 5 }). Every `every`, `scans` scans
// of /proc spread over `window` on the loop's timers; each scan, and the
// policy after the last one (stdlib/vigil/discover.lua's run, in a rule
// state of its own), runs on a worker thread and
// comes back through a LoopInbox: a scan of 10,000 processes is over a
// second of CPU, and the loop never waits for it. The policy's state is
// given what the live rules set in vigil.discover (its weights,
// threshold, ...: RuleRuntime::discover_tuning), not the rule files again:
// files on disk may be a reload that was refused. One worker at a time;
// a scan due while the previous one still runs starts when it is done.
//
// The host keeps the previous run's proposals and reports the difference
// the policy computed: the first run's whole set as one event (VGL0211),
// then each new (VGL0212) and vanished (VGL0213) steady-state process,
// at most kListed of each per run (VGL0214 counts the rest). Processes
// the supervisor watches (adopted, members, started) are not proposed.
//
// Between scans, an exec the daemon's proc connector reports (when the
// daemon holds it for its watches anyway: no subscription is taken for
// discovery) is read from /proc at once, so a short-lived identity is in
// the window although no scan saw it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/loop/inbox.hpp"
#include "host/proc/discover_scan.hpp"
#include "host/proc/match.hpp"

namespace vigil {

struct DiscoverSchedule {
  double every = 0;   // seconds from one discovery's start to the next one's
  double window = 0;  // seconds from its first scan to its last
  int scans = 0;
  std::string where;  // file:line of the declaration (not compared)

  // The rules' normalized table (RuleRuntime::discover_schedule); nullopt
  // for null or a table the stdlib would not have made.
  static std::optional<DiscoverSchedule> from_json(const nlohmann::json& j);
  bool same(const DiscoverSchedule& o) const {
    return every == o.every && window == o.window && scans == o.scans;
  }
};

struct DiscoveryOptions {
  std::string stdlib_dir;
  std::string init_dir = "/etc/init.d";
  // The pids the supervisor watches now (asked before the last scan).
  std::function<std::vector<pid_t>()> watched;
  // The watches' matchers (asked before the last scan): what one of them
  // selects is not proposed either, found or not yet (an observe watch
  // still looking, an adoption after that last scan's list).
  std::function<std::vector<Matcher>()> matchers;
  // The live rules' vigil.discover tuning (asked before the last scan).
  std::function<nlohmann::json()> tuning;
};

class Discovery {
 public:
  static constexpr size_t kListed = 20;      // new (or vanished) events per run
  static constexpr size_t kBetween = 2000;   // identities read from execs per window

  Discovery(EventLoop& loop, EventLog& log, DiscoveryOptions options);
  ~Discovery();  // drops a run in flight and joins its worker (a scan stops at once)
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // A reload's schedule: the same one changes nothing; another restarts the
  // schedule now (a run in flight is dropped); what was found is kept.
  void configure(const DiscoverSchedule& s);
  const DiscoverSchedule& schedule() const { return schedule_; }

  // An exec the proc connector reported.
  void on_exec(pid_t pid);

  // The last finished run, as GET /v1/discover answers it: {at, window,
  // scans, candidates, text}; null before the first.
  const nlohmann::json& last() const { return last_; }
  bool running() const { return job_ != nullptr; }

  struct Job;  // one run: what the worker and the loop hand each other

 private:
  void start_run();
  void dispatch_scan();
  void scanned(std::shared_ptr<Job> job);
  void finished(Job& job);
  void report(const nlohmann::json& out);
  void failed(const std::string& error);

  EventLoop& loop_;
  EventLog& log_;
  DiscoveryOptions options_;
  DiscoverSchedule schedule_;
  LoopInbox inbox_;
  TimerId run_timer_ = 0, scan_timer_ = 0;
  std::shared_ptr<Job> job_;  // the run in progress (null between runs)
  // The worker threads not yet joined, each with the flag it sets as its
  // last act: joined once done (at the next dispatch, never blocking the
  // loop) and at destruction (a dropped run's worker is cancelled first,
  // so that wait is at most the policy's own budget), so no thread runs
  // on while the daemon exits.
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;
  void reap_workers(bool all);
  bool busy_ = false;         // job_ is on a worker now
  int index_ = 0;             // the scan last dispatched (1 for the first)
  MonoTime run_start_{};
  uint64_t generation_ = 0;   // bumped when a run is dropped: its results are ignored
  // Identities of execs since the last scan, and after which scan.
  std::vector<std::pair<int, DiscoveredProcess>> between_;
  size_t between_taken_ = 0;  // this window's, against kBetween
  DiscoverScanner one_;       // reads an exec's process on the loop
  nlohmann::json previous_;   // the last run's summaries (null: no run yet)
  nlohmann::json last_;
};

}  // namespace vigil

// Metrics: samples every watched process from /proc at a fixed interval
// and hands the figures to the CSV files, the Prometheus endpoint and
// `vigil top` (the control request "metrics"). Mechanism only: nothing
// here decides anything about a process.
//
// Each watched process keeps its /proc/PID/stat, status and io open and
// is read with one pread per file (and one fstat of /proc/PID/fd for the
// number of open fds, which Linux >= 6.2 reports as the directory's
// size). A single-threaded process that was not scheduled since the last
// sample (its schedstat run count did not move) cannot have switched
// context, done I/O or opened a file: its status, io and fd count are
// not read again (most supervised processes sleep most of the time; this
// halves the cost of a pass). The descriptors are bound to
// the process: once it is gone the reads fail, even if its pid is reused. A pass samples the
// watches a slice at a time, yielding to the loop in between.
#pragma once

#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/metrics/csv_writer.hpp"
#include "host/metrics/http_endpoint.hpp"
#include "host/metrics/sample.hpp"
#include "host/proc/proc_files.hpp"

namespace vigil {

class Supervisor;
struct Unit;

struct MetricsOptions {
  double interval = 0;  // seconds between samples; 0: metrics off
  bool csv = true;      // write the CSV files
  std::string csv_dir;  // empty: STATE_DIR/metrics
  uint64_t csv_max_bytes = 64ull << 20;
  size_t csv_keep = 14;
  std::string listen;  // Prometheus endpoint HOST:PORT; empty: none
  bool enabled() const { return interval > 0; }
};

class Metrics {
 public:
  Metrics(EventLoop& loop, EventLog& log, Supervisor& supervisor, MetricsOptions options);
  ~Metrics();

  // Opens the endpoint (a failure is an event, not fatal) and schedules
  // the first sample.
  void start();
  // The newest sample of every watch, as for the "metrics" request.
  nlohmann::json to_json() const;
  // The last hour of one watch (`points`: [time, cpu %, rss bytes, fds]),
  // one point every max(interval, 10 s): at most 361 points, 24 bytes
  // each, per watch. Null when the watch has none.
  nlohmann::json history(const std::string& watch) const;
  static constexpr double kHistorySeconds = 3600;
  std::string prometheus() const;
  int http_port() const { return http_ ? http_->port() : 0; }

 private:
  struct Proc {
    uint64_t start_time = 0;
    Fd stat, status, io, fd_dir, schedstat;
    uint64_t runs = 0;              // schedstat: times scheduled on a CPU (the main thread)
    bool io_ok = false;             // its io was readable
    int64_t fds = -1;               // open fds at the last sample
    uint64_t utime = 0, stime = 0;  // clock ticks at the last sample
    uint64_t read_bytes = 0, write_bytes = 0, vcs = 0, ivcs = 0;
    MonoTime at;
    bool seen = false;  // sampled before: deltas are from then
  };
  // One point of a watch's last hour: what the dashboard plots.
  struct Point {
    double time;  // unix seconds
    float cpu;    // user + system, % of one core
    uint32_t rss_kib;
    int32_t fds;  // -1: unknown
  };
  struct Track {
    std::unordered_map<pid_t, Proc> procs;
    WatchSample totals;  // counters accumulate here
    bool alive = false;  // still a unit in this pass
    std::deque<Point> history;  // the last hour, a point every history_step()
  };
  double history_step() const;

  void schedule();
  void begin_pass();
  void slice();
  void finish_pass();
  void sample_unit(const Unit& u, MonoTime now, double wall);
  bool sample_proc(Proc& p, pid_t pid, MonoTime now, WatchSample& s, double boot_now);

  EventLoop& loop_;
  EventLog& log_;
  Supervisor& supervisor_;
  MetricsOptions options_;
  ProcReader reader_;
  std::unique_ptr<CsvWriter> csv_;
  std::unique_ptr<HttpEndpoint> http_;
  std::map<std::string, Track> tracks_;
  std::vector<std::string> queue_;  // the pass in progress
  size_t next_ = 0;
  std::string rows_;
  uint64_t row_count_ = 0;
  MonoTime pass_start_;
  TimerId timer_ = 0;
  double last_pass_ = 0;  // wall time of the last complete pass
  // The sampler's own CPU time (thread CPU clock): the pass in progress,
  // the last complete one, all passes.
  double pass_cpu_ = 0, last_pass_cpu_ = 0, total_cpu_ = 0;
  uint64_t passes_ = 0;
};

}  // namespace vigil

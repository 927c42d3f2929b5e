// What the metrics sampler measures, and the pure functions around it:
// parsing /proc/PID/io, rendering the Prometheus text format and the CSV
// rows. Kept free of the loop and of /proc access so that unit tests can
// check them on fixed input.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vigil {

// /proc/PID/io: bytes this process caused to be read from and sent to
// the storage layer (not rchar/wchar, which also count pipes and sockets).
struct ProcIo {
  uint64_t rchar = 0;
  uint64_t wchar = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
};
std::optional<ProcIo> parse_proc_io(std::string_view text);
// The two context-switch lines of /proc/PID/status (its last lines: found
// from the end, without parsing the rest); false if either is missing.
bool parse_ctxt_switches(std::string_view status, uint64_t& voluntary, uint64_t& involuntary);
// The third field of /proc/PID/schedstat ("runtime_ns wait_ns runs"): how
// many times the task was scheduled on a CPU; 0 when unparsable.
uint64_t parse_schedstat_runs(std::string_view text);

// One watch at one sample. For a members watch every figure is the sum
// over its member processes, except uptime (the oldest member's).
// Counters (`*_seconds`, bytes, context switches) only grow for the life
// of the daemon: a process's figures are added as deltas between samples,
// and a new process (a restart, a new member) adds what it used since it
// started.
struct WatchSample {
  std::string watch;
  std::string state;  // Unit state name: running, backoff, ...
  bool up = false;    // at least one process runs
  pid_t pid = 0;      // the process (0: none, or a members watch)
  uint64_t processes = 0;
  uint64_t restarts = 0;
  double time = 0;  // wall clock of the sample

  // Gauges (only meaningful while processes > 0).
  double cpu_user_percent = 0;  // of one core, over the last interval
  double cpu_system_percent = 0;
  uint64_t rss_bytes = 0;
  uint64_t vsz_bytes = 0;
  int64_t threads = 0;
  int64_t open_fds = -1;  // -1: unreadable
  double uptime = 0;      // seconds

  // Counters.
  double cpu_user_seconds = 0;
  double cpu_system_seconds = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  bool io_known = false;  // /proc/PID/io was readable (root, or the same user)
  uint64_t voluntary_ctxt = 0;
  uint64_t involuntary_ctxt = 0;

  nlohmann::json to_json() const;
};

// Prometheus text exposition format 0.0.4, with # HELP and # TYPE.
std::string render_prometheus(const std::vector<WatchSample>& samples);
// A label value escaped for the text format (\\, \", \n).
std::string prometheus_escape(std::string_view value);

// The CSV header line and one row (each with its "\n").
extern const char* const kCsvHeader;
void append_csv_row(std::string& out, const WatchSample& s);

}  // namespace vigil

// /proc/PID/stat: the one file every check reads. Parsing never allocates
// for user processes (comm is at most 15 bytes, within std::string's
// inline buffer); reading goes through a ProcReader's reused buffer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "host/core/clock.hpp"

namespace vigil {

struct ProcStat {
  pid_t pid = 0;
  std::string comm;  // without the parentheses; may contain anything
  char state = '?';  // R S D Z T t X I ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  int tty_nr = 0;  // the controlling terminal's device number; 0: none
  uint32_t flags = 0;  // PF_* of the task
  uint64_t minflt = 0;
  uint64_t majflt = 0;
  uint64_t utime = 0;  // clock ticks
  uint64_t stime = 0;
  int64_t num_threads = 0;
  uint64_t start_time = 0;  // clock ticks after boot: with pid, the process identity
  uint64_t vsize = 0;       // bytes
  int64_t rss_pages = 0;
  uint64_t blkio_ticks = 0;  // aggregated block I/O delay (field 42), 0 if absent
  // Field 52: the wait status of a zombie (what its parent would reap),
  // readable by root; -1 if absent.
  int exit_code = -1;

  bool kernel_thread() const { return flags & 0x00200000; }  // PF_KTHREAD
  // Z and X: gone, whether or not the parent has reaped it yet.
  bool dead() const { return state == 'Z' || state == 'X'; }
};

// Parses the text of /proc/PID/stat. The comm field may hold spaces,
// parentheses and newlines, so the parser splits at the *last* ')'.
std::optional<ProcStat> parse_proc_stat(std::string_view text);
// As above, into `out` (reusing its comm's storage); false on bad text.
bool parse_proc_stat(std::string_view text, ProcStat& out);

// Reads and parses /proc/PID/stat; nullopt when the process is gone.
std::optional<ProcStat> read_proc_stat(pid_t pid);

// Start time of pid, or 0 when it is gone.
uint64_t proc_start_time(pid_t pid);

// True when pid exists with this start time and is not a zombie (state Z
// or X counts as dead: PID 1 here reaps orphans late).
bool proc_alive(pid_t pid, uint64_t start_time);

// When a process started (its start_time, clock ticks after boot), on the
// monotonic clock: the one conversion for the uptime of a process vigil
// did not just start (adopted, re-adopted). Never later than now.
MonoTime started_at(uint64_t start_time);

}  // namespace vigil

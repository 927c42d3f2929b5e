// Readers for /proc/PID files. They read into stack buffers: no allocation
// on the paths that run for every watched process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vigil {

struct ProcStat {
  pid_t pid = 0;
  std::string comm;  // without the parentheses; may contain anything
  char state = '?';  // R S D Z T t X I ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  uint64_t utime = 0;  // clock ticks
  uint64_t stime = 0;
  int64_t num_threads = 0;
  uint64_t start_time = 0;  // clock ticks after boot: with pid, the process identity
  uint64_t vsize = 0;
  int64_t rss_pages = 0;
};

// Parses the text of /proc/PID/stat. The comm field may hold spaces,
// parentheses and newlines, so the parser splits at the *last* ')'.
std::optional<ProcStat> parse_proc_stat(std::string_view text);

// Reads and parses /proc/PID/stat; nullopt when the process is gone.
std::optional<ProcStat> read_proc_stat(pid_t pid);

// Start time of pid, or 0 when it is gone.
uint64_t proc_start_time(pid_t pid);

// True when pid exists with this start time and is not a zombie (state Z
// or X counts as dead: PID 1 here reaps orphans late).
bool proc_alive(pid_t pid, uint64_t start_time);

}  // namespace vigil

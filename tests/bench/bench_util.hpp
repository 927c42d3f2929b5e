// What every benchmark in tests/bench needs: a monotonic clock in seconds,
// a fatal error naming the program, and a process's on-CPU time.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

inline double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

[[noreturn]] inline void die(const std::string& msg, int code = 1) {
  fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg.c_str());
  exit(code);
}

// On-CPU time of every thread of pid (schedstat), in ns; 0 once it is gone.
inline uint64_t run_ns(pid_t pid) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream f(e.path().string() + "/schedstat");
    uint64_t run = 0;
    f >> run;
    total += run;
  }
  return total;
}

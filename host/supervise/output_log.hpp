// Per-watch stdout/stderr files under the state directory. The program
// writes to them directly (O_APPEND), so its output never passes through
// vigil and a restart of vigil never breaks its stdout. Rotation is by
// size: the file is copied to NAME.1 (older ones shift up to `keep`) and
// truncated in place, which O_APPEND writers follow.
#pragma once

#include <cstdint>
#include <string>

#include "host/core/fd.hpp"

namespace vigil {

class OutputLog {
 public:
  OutputLog() = default;
  // Opens (creating) path; returns an error text or empty.
  std::string open(const std::string& path, uint64_t max_bytes, int keep);
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // Rotates when the file is over its size; returns an error text or empty.
  std::string rotate_if_needed();

 private:
  std::string path_;
  Fd fd_;
  uint64_t max_bytes_ = 0;
  int keep_ = 0;
};

}  // namespace vigil

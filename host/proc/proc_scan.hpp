// Enumerating processes: the numeric entries of /proc, read with
// getdents64 into a fixed buffer (no allocation per entry). Only used when
// a full scan is needed (discovery, re-resolving a match, the fallback
// when kernel process events are unavailable); in steady state vigil
// touches only the processes it watches.
#pragma once

#include <sys/types.h>

#include <optional>

#include "host/core/fd.hpp"

namespace vigil {

class PidIterator {
 public:
  PidIterator();  // opens /proc; an empty iteration when it cannot
  // The next process id (thread group leaders only: /proc lists no
  // threads at its top level), or nullopt at the end.
  std::optional<pid_t> next();

 private:
  Fd dir_;
  alignas(8) char buf_[16384];
  long len_ = 0;
  long off_ = 0;
};

}  // namespace vigil

#include "host/proc/proc_scan.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vigil {

PidIterator::PidIterator() : dir_(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}

std::optional<pid_t> PidIterator::next() {
  if (!dir_) return std::nullopt;
  for (;;) {
    if (off_ >= len_) {
      len_ = syscall(SYS_getdents64, dir_.get(), buf_, sizeof buf_);
      off_ = 0;
      if (len_ <= 0) {
        dir_.reset();
        return std::nullopt;
      }
    }
    auto* d = reinterpret_cast<const dirent64*>(buf_ + off_);
    off_ += d->d_reclen;
    const char* s = d->d_name;
    if (*s < '1' || *s > '9') continue;
    pid_t pid = 0;
    for (; *s >= '0' && *s <= '9'; ++s) pid = pid * 10 + (*s - '0');
    if (*s == '\0') return pid;
  }
}

}  // namespace vigil

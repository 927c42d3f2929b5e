#include "host/supervise/output_log.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/core/strings.hpp"

namespace vigil {

std::string OutputLog::open(const std::string& path, uint64_t max_bytes, int keep) {
  path_ = path;
  max_bytes_ = max_bytes;
  keep_ = keep;
  fd_ = Fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
  if (!fd_) return errno_text(errno);
  return {};
}

std::string OutputLog::rotate_if_needed() {
  if (!fd_ || max_bytes_ == 0) return {};
  struct stat st;
  if (fstat(fd_.get(), &st) != 0) return errno_text(errno);
  if (static_cast<uint64_t>(st.st_size) <= max_bytes_) return {};
  if (keep_ <= 0) {
    if (ftruncate(fd_.get(), 0) != 0) return errno_text(errno);
    return {};
  }
  for (int i = keep_ - 1; i >= 1; --i)
    ::rename((path_ + "." + std::to_string(i)).c_str(),
             (path_ + "." + std::to_string(i + 1)).c_str());
  Fd src(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  Fd dst(::open((path_ + ".1").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!src || !dst) return errno_text(errno);
  off_t offset = 0;
  while (offset < st.st_size) {
    ssize_t n = sendfile(dst.get(), src.get(), &offset, static_cast<size_t>(st.st_size - offset));
    if (n <= 0) return n < 0 ? errno_text(errno) : std::string("short copy");
  }
  if (ftruncate(fd_.get(), 0) != 0) return errno_text(errno);
  return {};
}

}  // namespace vigil

#include "host/supervise/output_log.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/inotify.h>
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
  if (!bounded()) return {};
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

LogRotation::LogRotation(EventLoop& loop, std::function<void()> pass)
    : loop_(loop), pass_(std::move(pass)), fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (fd_) watch_ = loop_.add(fd_.get(), EPOLLIN, [this](uint32_t) { on_events(); });
}

LogRotation::~LogRotation() {
  loop_.cancel(timer_);
  if (watch_) loop_.remove(watch_);
}

void LogRotation::opened() { schedule(); }

// A write (or more): the rest of the round's events wait in the kernel's
// queue for the pass, without waking the loop again.
void LogRotation::on_events() {
  drain();
  loop_.modify(watch_, 0);
  schedule();
}

void LogRotation::drain() {
  if (!fd_) return;
  alignas(inotify_event) char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n <= 0) return;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      if (ev->mask & IN_Q_OVERFLOW)
        all_ = true;
      else
        written_.insert(ev->wd);  // IN_MODIFY, or IN_IGNORED: the watch is gone, armed again
      p += sizeof(inotify_event) + ev->len;
    }
  }
}

void LogRotation::schedule() {
  if (timer_) return;
  MonoTime at = std::max(loop_.now() + kDelay, last_pass_ + kGap);
  timer_ = loop_.at(at, [this] {
    timer_ = 0;
    drain();
    unwatched_ = 0;
    pass_();
  });
}

bool LogRotation::take(OutputLog& log) {
  if (!log.bounded()) return false;
  if (log.wd_ >= 0 && !all_ && !written_.contains(log.wd_)) return false;
  log.wd_ = -1;
  if (fd_) {
    // The file the log holds open, whatever its path is now.
    std::string self = "/proc/self/fd/" + std::to_string(log.fd());
    log.wd_ = inotify_add_watch(fd_.get(), self.c_str(), IN_MODIFY | IN_ONESHOT);
  }
  if (log.wd_ < 0) ++unwatched_;
  ++looked_;
  return true;
}

void LogRotation::passed() {
  written_.clear();
  all_ = false;
  last_pass_ = loop_.now();
  if (watch_) loop_.modify(watch_, EPOLLIN);
  if (unwatched_ > 0) schedule();  // those are polled
}

}  // namespace vigil

// Per-watch stdout/stderr files under the state directory. The program
// writes to them directly (O_APPEND), so its output never passes through
// vigil and a restart of vigil never breaks its stdout. Rotation is by
// size: the file is copied to NAME.1 (older ones shift up to `keep`) and
// truncated in place, which O_APPEND writers follow.
//
// The sizes are looked at only after a write (LogRotation): the kernel
// tells which files were written, so a thousand idle programs' logs cost
// nothing between writes (issue 13: an idle vigil looked at 2000 files
// every minute).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>

#include "host/core/clock.hpp"
#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

class OutputLog {
 public:
  OutputLog() = default;
  // Opens (creating) path; returns an error text or empty.
  std::string open(const std::string& path, uint64_t max_bytes, int keep);
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // Rotated at a size at all.
  bool bounded() const { return fd_ && max_bytes_ > 0; }
  // Rotates when the file is over its size; returns an error text or empty.
  std::string rotate_if_needed();

 private:
  friend class LogRotation;
  std::string path_;
  Fd fd_;
  uint64_t max_bytes_ = 0;
  int keep_ = 0;
  int wd_ = -1;  // its write watch (LogRotation); -1: none yet
};

// When to look at the output logs' sizes: after they were written. Each
// bounded log has a one-shot inotify watch (IN_MODIFY): the first write
// after a look queues one event and nothing more. A write wakes the loop
// once per round (the inotify fd is polled again only after the pass),
// and the pass comes kDelay later, at most once per kGap, so a program
// that writes all the time costs one look per kGap, as the old fixed
// poll did, and an idle one costs nothing. Without inotify, or for a
// log whose watch could not be added (fs.inotify.max_user_watches), the
// pass polls every kGap.
class LogRotation {
 public:
  static constexpr Duration kDelay = std::chrono::seconds(1);
  static constexpr Duration kGap = std::chrono::seconds(10);

  // pass() runs on the loop when logs were written (or opened): it walks
  // the logs with take().
  LogRotation(EventLoop& loop, std::function<void()> pass);
  ~LogRotation();
  LogRotation(const LogRotation&) = delete;
  LogRotation& operator=(const LogRotation&) = delete;

  // A log was opened: it is looked at in the next pass (a file kept from
  // before may already be over its size), which arms its watch.
  void opened();
  // In a pass: whether log is to be looked at now (written since its
  // last look, or never looked at); if so its watch is armed again, before
  // the look, so that a write during it is not missed.
  bool take(OutputLog& log);
  // The pass is over.
  void passed();

  uint64_t looked() const { return looked_; }  // logs looked at, since the start

 private:
  void on_events();
  void drain();
  void schedule();

  EventLoop& loop_;
  std::function<void()> pass_;
  Fd fd_;
  WatchId watch_ = 0;
  TimerId timer_ = 0;
  std::unordered_set<int> written_;  // watches that fired since the last pass
  bool all_ = false;                 // events were lost: look at every log
  size_t unwatched_ = 0;             // logs of the last pass without a watch
  MonoTime last_pass_{};
  uint64_t looked_ = 0;
};

}  // namespace vigil

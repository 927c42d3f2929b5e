// EventLoop: the host's one single-threaded epoll loop. File descriptors
// (pidfds, sockets, signalfd, inotify) get callbacks; timers live in a heap
// whose earliest deadline becomes epoll_pwait2's timeout, so an idle daemon
// sleeps until its next timer (or forever) instead of polling. `post` defers work until the current
// callback returns (Lua never re-enters the loop).
//
// The work of one iteration is bounded, so that the loop gets back to its
// file descriptors (the control socket among them) soon whatever the
// supervised processes do: work that can come in floods (an exit to
// handle, a process to spawn) is `defer`red and runs in slices of at most
// kSlice per iteration, oldest first; due timers also run for at most
// kSlice per iteration, the rest on the next one. What did not fit is
// counted (stats()), so the bound is observable.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "host/core/clock.hpp"
#include "host/core/fd.hpp"

namespace vigil {

using TimerId = uint64_t;
using WatchId = uint64_t;

class EventLoop {
 public:
  using IoCallback = std::function<void(uint32_t events)>;
  using Task = std::function<void()>;

  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers fd (not owned) for `events`; the returned id unregisters it.
  WatchId add(int fd, uint32_t events, IoCallback cb);
  void modify(WatchId id, uint32_t events);
  void remove(WatchId id);

  TimerId after(Duration delay, Task task);
  TimerId at(MonoTime deadline, Task task);
  void cancel(TimerId id);
  bool pending(TimerId id) const { return timers_.contains(id); }

  void post(Task task);
  // Queues work to run in a bounded slice of a later iteration (after
  // the fds ready now were served), oldest first. Tasks posted by a
  // deferred task run right after it, inside its slice.
  void defer(Task task);
  size_t deferred() const { return deferred_.size(); }
  // Queues work that may wait until a burst is over: it runs once no fd
  // is ready and nothing is deferred, or once the oldest of it has
  // waited kLag (so a storm that never ends does not starve it), in
  // slices as deferred work does, oldest first. The bookkeeping of a
  // restart already made goes here: 100 processes killed at once are
  // all started again before the first one's exit is written up.
  void lag(Task task);
  static constexpr Duration kLag = std::chrono::milliseconds(50);

  // A slice: the longest the loop runs deferred tasks (and, separately,
  // due timers) before it polls its fds again. One task always runs, so a
  // single long task is not cut, only what follows it.
  static constexpr Duration kSlice = std::chrono::milliseconds(5);

  // Runs until stop(); returns the exit code given to stop().
  int run();
  // Runs one iteration, waiting at most `max_wait` (tests).
  void run_once(Duration max_wait);
  void stop(int code = 0);
  bool stopping() const { return stopping_; }

  MonoTime now() const { return MonoClock::now(); }

  // Worst time spent handling one wakeup (for benchmarks).
  Duration worst_iteration() const { return worst_iteration_; }

  // What the loop did, for `status` (daemon.loop) and benchmarks.
  struct Stats {
    uint64_t iterations = 0;
    uint64_t deferred_run = 0;  // deferred tasks run
    uint64_t slices_cut = 0;    // iterations that left deferred work for the next one
    uint64_t timers_cut = 0;    // iterations that left due timers for the next one
    size_t deferred_peak = 0;   // most deferred tasks queued at once
  };
  const Stats& stats() const { return stats_; }

 private:
  void dispatch_io(const epoll_event* events, int n);
  void run_timers();
  void run_posted();
  void run_deferred();
  void run_lagging(bool idle);

  struct Watch {
    int fd;
    IoCallback cb;
  };
  struct TimerEntry {
    MonoTime deadline;
    TimerId id;
    bool operator>(const TimerEntry& o) const {
      return deadline != o.deadline ? deadline > o.deadline : id > o.id;
    }
  };

  Fd epfd_;
  std::unordered_map<WatchId, Watch> watches_;
  WatchId next_watch_ = 1;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> heap_;
  std::unordered_map<TimerId, Task> timers_;
  TimerId next_timer_ = 1;
  std::vector<Task> posted_;
  std::deque<Task> deferred_;
  std::deque<std::pair<MonoTime, Task>> lagging_;
  Stats stats_;
  bool stopping_ = false;
  int exit_code_ = 0;
  Duration worst_iteration_{0};
};

}  // namespace vigil

// EventLoop: the host's one single-threaded epoll loop. File descriptors
// (pidfds, sockets, signalfd, inotify) get callbacks; timers live in a heap
// whose earliest deadline becomes epoll_pwait2's timeout, so an idle daemon
// sleeps until its next timer (or forever) instead of polling. `post` defers work until the current
// callback returns (Lua never re-enters the loop).
#pragma once

#include <sys/epoll.h>

#include <cstdint>
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

  // Runs until stop(); returns the exit code given to stop().
  int run();
  // Runs one iteration, waiting at most `max_wait` (tests).
  void run_once(Duration max_wait);
  void stop(int code = 0);
  bool stopping() const { return stopping_; }

  MonoTime now() const { return MonoClock::now(); }

  // Worst time spent handling one wakeup (for benchmarks).
  Duration worst_iteration() const { return worst_iteration_; }

 private:
  void dispatch_io(const epoll_event* events, int n);
  void run_timers();
  void run_posted();

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
  bool stopping_ = false;
  int exit_code_ = 0;
  Duration worst_iteration_{0};
};

}  // namespace vigil

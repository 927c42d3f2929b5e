// Reaper: owns the pidfd of every child vigil forked and turns its death
// into one callback, whichever comes first: the pidfd turning readable on
// the loop, or SIGCHLD. The callback runs while the child is still an
// unreaped zombie, so its pid (and process-group id) cannot be recycled
// yet: that is the moment to sweep the rest of its process group.
// Vigil is a child subreaper; orphans that reparent to it are reaped too.
//
// A death is noticed at once but handled later, in the loop's bounded
// slices (EventLoop::defer): a thousand children dying together make a
// thousand deferred tasks, not one iteration that runs the policy and
// spawns a replacement a thousand times before the control socket is
// read again. Until its task runs, a child's pidfd is not polled (it
// would stay readable) and it stays an unreaped zombie.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "host/core/exit_status.hpp"
#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

class Reaper {
 public:
  using OnExit = std::function<void(const ExitStatus&)>;
  explicit Reaper(EventLoop& loop) : loop_(loop) {}
  ~Reaper();

  void track(pid_t pid, Fd pidfd, OnExit on_exit);
  // Told of every reparented orphan reaped (vigil is a subreaper), before
  // it is reaped: an adopted process may be one of them.
  void set_orphan_handler(std::function<void(pid_t, const ExitStatus&)> h) {
    orphan_ = std::move(h);
  }
  // Told when a tracked child stops or continues (the kernel's SIGCHLD
  // with CLD_STOPPED / CLD_CONTINUED): the stopped check of vigil's own
  // children needs no polling. Set only while some watch checks stops.
  void set_stop_handler(std::function<void(pid_t)> h) { stopped_ = std::move(h); }
  bool has_stop_handler() const { return static_cast<bool>(stopped_); }
  bool tracked(pid_t pid) const { return children_.contains(pid); }
  // Signals through the pidfd: never hits a recycled pid.
  bool signal(pid_t pid, int sig);
  // Still reaped, but its exit is no one's concern any more.
  void ignore(pid_t pid);
  // What one SIGCHLD said (signalfd's ssi_pid, ssi_code).
  struct ChildSignal {
    pid_t pid;
    int code;  // CLD_EXITED, CLD_KILLED, CLD_STOPPED, ...
  };
  // Call with the SIGCHLDs read at once: reaps the orphans among them,
  // reports stops, and sweeps once the burst is over for what coalesced
  // signals hid. (A sweep per signal asked the kernel about every child
  // each time: 1000 children killed at once cost a million looks.)
  void on_sigchld(const std::vector<ChildSignal>& signals);
  size_t size() const { return children_.size(); }

 private:
  // The child's death is to be handled: queued once (deferred).
  void queue(pid_t pid);
  void handle(pid_t pid);
  void sweep();
  void post_sweep();
  void scan_stops();
  void reap_orphan(const siginfo_t& si);  // told to orphan_, then reaped

  struct Child {
    Fd pidfd;
    WatchId watch = 0;
    OnExit on_exit;
    bool queued = false;
  };
  EventLoop& loop_;
  std::unordered_map<pid_t, Child> children_;
  std::function<void(pid_t, const ExitStatus&)> orphan_;
  std::function<void(pid_t)> stopped_;
  // waitid(P_ALL) sees past no tracked zombie (WNOWAIT leaves it first in
  // line): once that one is handled, sweep again for what is behind it.
  pid_t sweep_blocked_by_ = 0;
  bool sweep_posted_ = false;
  // Deferred tasks check it: the reaper may be gone when they run.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

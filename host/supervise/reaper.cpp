#include "host/supervise/reaper.hpp"

#include <errno.h>
#include <sys/wait.h>

#include "host/core/pidfd.hpp"

namespace vigil {

namespace {
ExitStatus from_siginfo(const siginfo_t& si) {
  ExitStatus st;
  if (si.si_code == CLD_EXITED) {
    st.code = si.si_status;
  } else {
    st.signal = si.si_status;
    st.core = si.si_code == CLD_DUMPED;
  }
  return st;
}
}  // namespace

Reaper::~Reaper() {
  for (auto& [pid, child] : children_) loop_.remove(child.watch);
}

void Reaper::track(pid_t pid, Fd pidfd, OnExit on_exit) {
  Child c;
  // One-shot: reported once, then disabled by the kernel until handle()
  // re-arms it (only when the exit was not waitable yet). A readable
  // pidfd stays readable until reaped, and 100 children killed at once
  // used to cost 100 epoll_ctl calls before the first restart.
  c.watch = loop_.add(pidfd.get(), EPOLLIN | EPOLLONESHOT, [this, pid](uint32_t) { queue(pid); });
  c.pidfd = std::move(pidfd);
  c.on_exit = std::move(on_exit);
  children_.emplace(pid, std::move(c));
}

bool Reaper::signal(pid_t pid, int sig) {
  auto it = children_.find(pid);
  if (it == children_.end()) return false;
  return pidfd_send_signal(it->second.pidfd.get(), sig, nullptr, 0) == 0;
}

void Reaper::ignore(pid_t pid) {
  if (auto it = children_.find(pid); it != children_.end()) it->second.on_exit = [](const ExitStatus&) {};
}

void Reaper::queue(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end() || it->second.queued) return;
  it->second.queued = true;
  loop_.defer([this, pid, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired()) handle(pid);
  });
}

void Reaper::handle(pid_t pid) {
  auto it = children_.find(pid);
  if (it == children_.end()) return;
  it->second.queued = false;
  siginfo_t si{};
  // Peek first (WNOWAIT): the callback runs while the zombie pins the pid.
  if (waitid(P_PIDFD, static_cast<id_t>(it->second.pidfd.get()), &si,
             WEXITED | WNOHANG | WNOWAIT) != 0 ||
      si.si_pid == 0) {
    loop_.modify(it->second.watch, EPOLLIN | EPOLLONESHOT);  // not waitable yet: again
    return;
  }
  Child child = std::move(it->second);
  children_.erase(it);
  loop_.remove(child.watch);
  child.on_exit(from_siginfo(si));
  siginfo_t reaped{};
  waitid(P_PIDFD, static_cast<id_t>(child.pidfd.get()), &reaped, WEXITED | WNOHANG);
  if (sweep_blocked_by_ == pid) {
    sweep_blocked_by_ = 0;
    post_sweep();  // for what was behind it, once the burst is over
  }
}

void Reaper::on_sigchld(const std::vector<ChildSignal>& signals) {
  bool stops = false;
  for (const ChildSignal& cs : signals) {
    if (cs.code == CLD_STOPPED || cs.code == CLD_CONTINUED || cs.code == CLD_TRAPPED) {
      stops = true;
      continue;
    }
    // A tracked child's death comes through its pidfd. Any other is an
    // orphan reparented to us (we are a subreaper), or a child we no
    // longer track: reaped now, by its pid (it cannot be recycled before).
    if (cs.pid <= 0 || children_.contains(cs.pid)) continue;
    siginfo_t si{};
    if (waitid(P_PID, static_cast<id_t>(cs.pid), &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
        si.si_pid != cs.pid)
      continue;
    reap_orphan(si);
  }
  // Signals of children that died or stopped together may have
  // coalesced into one: one sweep (and look at stops) finds the rest,
  // after the burst.
  post_sweep();
  if (stops) scan_stops();
}

void Reaper::post_sweep() {
  if (sweep_posted_) return;
  sweep_posted_ = true;
  loop_.lag([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    sweep_posted_ = false;
    sweep();
    scan_stops();
  });
}

// Stops and continues, each reported once (no WNOWAIT: nothing is reaped
// here, WEXITED is not asked for).
void Reaper::scan_stops() {
  if (!stopped_) return;
  for (;;) {
    siginfo_t si{};
    if (waitid(P_ALL, 0, &si, WSTOPPED | WCONTINUED | WNOHANG) != 0 || si.si_pid == 0) return;
    if (children_.contains(si.si_pid)) stopped_(si.si_pid);
  }
}

void Reaper::sweep() {
  for (;;) {
    siginfo_t si{};
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) return;
    if (children_.contains(si.si_pid)) {
      // First in line and not reaped until its task runs: what is behind
      // it waits for that.
      sweep_blocked_by_ = si.si_pid;
      queue(si.si_pid);
      return;
    }
    // An orphan reparented to us (we are a subreaper), or a child we no
    // longer track: reap it.
    reap_orphan(si);
  }
}

void Reaper::reap_orphan(const siginfo_t& si) {
  if (orphan_) orphan_(si.si_pid, from_siginfo(si));
  waitpid(si.si_pid, nullptr, WNOHANG);
}

}  // namespace vigil

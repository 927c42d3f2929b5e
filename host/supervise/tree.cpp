// An adopted process's tree (kill = "tree", issue 12.14). A server that
// something else started (apache2, nginx, postgres) is a master and its
// workers. Signals to the master alone leave frozen workers holding the
// port, and after the master's death its workers keep serving and block
// the restart. Vigil finds the tree when it acts, from /proc: the
// descendants by parent pid, and the members of the session and of the
// process group the master leads (which survive the master: the kernel
// never reuses a session or group id while a process carries it).
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>

#include "host/core/clock.hpp"
#include "host/core/pidfd.hpp"
#include "host/core/strings.hpp"
#include "host/proc/proc_scan.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

std::vector<Supervisor::Relative> Supervisor::tree_of(pid_t pid, bool descendants) {
  struct Seen {
    pid_t ppid;
    uint64_t start_time;
    bool in;
  };
  std::map<pid_t, Seen> all;
  std::multimap<pid_t, pid_t> children;
  pid_t self = getpid();
  PidIterator it;
  ProcStat st;
  while (auto p = it.next()) {
    if (*p == pid || *p == self || !reader_.stat(*p, st) || st.dead()) continue;
    all[*p] = {st.ppid, st.start_time, st.session == pid || st.pgrp == pid};
    children.emplace(st.ppid, *p);
  }
  if (descendants) {
    std::vector<pid_t> todo = {pid};
    while (!todo.empty()) {
      pid_t p = todo.back();
      todo.pop_back();
      auto [b, e] = children.equal_range(p);
      for (auto c = b; c != e; ++c) {
        auto& s = all[c->second];
        if (s.in && c->second != p) continue;
        s.in = true;
        todo.push_back(c->second);
      }
    }
  }
  std::vector<Relative> out;
  for (const auto& [p, s] : all)
    if (s.in) out.push_back({p, s.start_time});
  return out;
}

Fd Supervisor::pin(const Relative& r) {
  Fd fd(pidfd_open(r.pid, 0));
  // Opened, then checked: the pidfd pins the process the scan saw.
  ProcStat st;
  if (!fd || !reader_.stat(r.pid, st) || st.start_time != r.start_time) return Fd();
  return fd;
}

void Supervisor::signal_relatives(const std::vector<Relative>& tree, int sig) {
  for (const auto& r : tree)
    if (Fd fd = pin(r)) pidfd_send_signal(fd.get(), sig, nullptr, 0);
}

void Supervisor::sweep_leftovers(Unit& u, pid_t pid, std::function<void(Unit&)> next) {
  std::vector<Relative> left = tree_of(pid, false);
  if (left.empty()) return next(u);
  struct Sweep {
    std::vector<Fd> fds;
    size_t count = 0;
    MonoTime kill_at, give_up_at;
    bool killed = false;
    std::function<void(Unit&)> next;
  };
  auto s = std::make_shared<Sweep>();
  for (const auto& r : left) {
    Fd fd = pin(r);
    if (!fd) continue;
    // TERM, then CONT: a frozen (stopped) worker acts on TERM only once
    // it runs again.
    pidfd_send_signal(fd.get(), SIGTERM, nullptr, 0);
    pidfd_send_signal(fd.get(), SIGCONT, nullptr, 0);
    s->fds.push_back(std::move(fd));
  }
  if (s->fds.empty()) return next(u);
  s->count = s->fds.size();
  s->kill_at = MonoClock::now() + from_seconds(u.spec.stop_timeout);
  s->give_up_at = s->kill_at + std::chrono::seconds(5);
  s->next = std::move(next);
  std::string name = u.name;
  auto tick = std::make_shared<std::function<void()>>();
  *tick = [this, name, pid, s, tick] {
    Unit* unit = find(name);
    if (!unit || !unit->m) {
      *tick = nullptr;  // the timer's copy is the one running
      return;
    }
    unit->m->sweep_timer = 0;
    std::erase_if(s->fds, [](const Fd& fd) {
      pollfd p{fd.get(), POLLIN, 0};
      return ::poll(&p, 1, 0) == 1;  // readable: it has exited
    });
    MonoTime now = MonoClock::now();
    if (!s->fds.empty() && now >= s->kill_at && !s->killed) {
      s->killed = true;
      for (const auto& fd : s->fds) pidfd_send_signal(fd.get(), SIGKILL, nullptr, 0);
    }
    if (!s->fds.empty() && now < s->give_up_at) {
      unit->m->sweep_timer = loop_.after(std::chrono::milliseconds(20), *tick);
      return;
    }
    std::string how = s->fds.empty() ? (s->killed ? "stopped, some with KILL after " +
                                                        fmt_seconds(unit->spec.stop_timeout) + "s"
                                                  : "stopped with TERM")
                                     : std::to_string(s->fds.size()) + " still running after KILL";
    log_.emit(Msg::LeftoversSwept, name,
              {{"pid", pid}, {"count", s->count}, {"how", how}, {"killed", s->killed}});
    auto next = std::move(s->next);
    *tick = nullptr;  // breaks the cycle; the timer's copy is the one running
    next(*unit);
  };
  u.m->sweep_timer = loop_.after(std::chrono::milliseconds(20), *tick);
}

}  // namespace vigil

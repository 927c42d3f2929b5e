// Supervisor, `pidfile` watches (issue 14 item 3): a program that
// daemonizes. Its start command runs as any started program does (limits,
// user, environment, its own session); once it has exited 0, the pid file
// is read, and the process it names is adopted by pidfd if it is the
// daemon that command started. Its death is then the watch's death, and a
// restart runs the start command again. Everything is bounded by
// `pidfile_timeout`; whatever fails is one event (VGL0196) and a failed
// start put to the restart policy, as a failed exec is.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "host/core/clock.hpp"
#include "host/core/strings.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {

// The longest wait between two looks at the pid file.
constexpr int kMaxPollMs = 250;

std::string exit_text(const ExitStatus& st) {
  if (st.signal) return "was killed by " + signal_name(st.signal);
  if (!st.known) return "ended";
  return "exited " + std::to_string(st.code);
}

}  // namespace

bool Supervisor::launch_daemon(Unit& u) {
  if (u.launch) return true;  // one start in flight
  std::string error;
  std::vector<std::pair<std::string, std::string>> env = notify_env(u);
  for (auto& kv : marks(u)) env.push_back(std::move(kv));
  auto spawned = spawn_process(u.spec, SpawnIo{u.out.fd(), u.err.fd(), std::move(env)}, error);
  if (!spawned) {
    daemon_failed(u, "start command: " + error);
    return false;
  }
  auto l = std::make_unique<Unit::Launch>();
  l->pid = spawned->pid;
  l->start_time = spawned->start_time;
  l->failure = spawned->failure;
  std::string name = u.name;
  pid_t pid = spawned->pid;
  reaper_.track(pid, std::move(spawned->pidfd), [this, name, pid](const ExitStatus& st) {
    on_launcher_exit(name, pid, st);
  });
  double timeout = u.spec.pidfile_timeout;
  l->deadline = loop_.after(from_seconds(timeout), [this, name, timeout] {
    Unit* unit = find(name);
    if (!unit || !unit->launch) return;
    Unit::Launch& la = *unit->launch;
    la.deadline = 0;
    if (la.running) {
      // Its group too: what it forked so far is no daemon of the watch.
      ::kill(-la.pid, SIGKILL);
      daemon_failed(*unit, "the start command did not exit within " + fmt_seconds(timeout) +
                               "s (killed); a program that does not daemonize needs no pidfile");
      return;
    }
    daemon_failed(*unit, "pid file " + unit->spec.pidfile + ": " + la.last + " after " +
                             fmt_seconds(timeout) + "s");
  });
  u.launch = std::move(l);
  set_state(u, UnitState::Starting);
  log_.emit(Msg::DaemonLaunched, u.name, {{"pid", pid}, {"pidfile", u.spec.pidfile}});
  return true;
}

void Supervisor::on_launcher_exit(const std::string& name, pid_t pid, const ExitStatus& st) {
  Unit* u = find(name);
  if (!u || !u->launch || u->launch->pid != pid) return;
  Unit::Launch& l = *u->launch;
  l.running = false;
  if (l.failure) return daemon_failed(*u, "start command: " + spawn_failure_text(*l.failure));
  // As systemd's Type=forking: the command that daemonizes exits 0 once
  // the daemon is set up; anything else is a failed start.
  if (st.signal || st.code != 0 || !st.known)
    return daemon_failed(*u, "the start command " + exit_text(st));
  look_at_pidfile(*u);
}

void Supervisor::look_at_pidfile(Unit& u) {
  Unit::Launch& l = *u.launch;
  l.poll = 0;
  uint64_t start_time = 0;
  bool fatal = false;
  std::string why;
  pid_t pid = daemon_pid(u, start_time, why, fatal);
  if (pid > 0) {
    loop_.cancel(l.deadline);
    u.launch.reset();
    if (adopt(u, pid, start_time, true, "the daemon its pid file names")) {
      u.armed.reset();
      return;
    }
    // It ended between the look and the pidfd: the daemon died at once.
    return daemon_failed(u, "pid file " + u.spec.pidfile + ": names pid " + std::to_string(pid) +
                                ", which ended as it was adopted");
  }
  if (fatal) return daemon_failed(u, "pid file " + u.spec.pidfile + ": " + why);
  l.last = why;
  std::string name = u.name;
  l.poll = loop_.after(std::chrono::milliseconds(l.delay_ms), [this, name] {
    Unit* unit = find(name);
    if (unit && unit->launch && !unit->launch->running) look_at_pidfile(*unit);
  });
  l.delay_ms = std::min(kMaxPollMs, l.delay_ms * 2);
}

// The sound rule (docs/rules.md "Daemons that write a pid file"): the
// file holds a pid (a decimal number on its first line) of a live process
// that (1) started after the start command did, so a stale file naming a
// recycled pid is not it, (2) descends from the start command or from
// vigil (vigil is a child subreaper, so the daemon a start command forked
// and left is reparented to vigil), and (3) is no other watch's: not one
// of vigil's tracked children, not adopted by another watch, not marked
// with another watch's name.
pid_t Supervisor::daemon_pid(const Unit& u, uint64_t& start_time, std::string& why, bool& fatal) {
  const Unit::Launch& l = *u.launch;
  Fd fd(::open(u.spec.pidfile.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    int err = errno;
    fatal = err != ENOENT && err != ENOTDIR;
    why = err == ENOENT ? "never appeared" : "cannot be read: " + errno_text(err);
    return 0;
  }
  struct stat sb;
  if (fstat(fd.get(), &sb) != 0) {
    why = "cannot be read: " + errno_text(errno);
    return 0;
  }
  if (S_ISDIR(sb.st_mode)) {
    fatal = true;
    why = "is a directory";
    return 0;
  }
  if (!S_ISREG(sb.st_mode)) {
    fatal = true;
    why = "is not a regular file";
    return 0;
  }
  char buf[64];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) {
    fatal = true;
    why = "cannot be read: " + errno_text(errno);
    return 0;
  }
  std::string_view text(buf, static_cast<size_t>(n));
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
    text.remove_suffix(1);
  if (text.empty()) {
    why = "is empty";
    return 0;
  }
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (ec != std::errc() || end != text.data() + text.size() || pid <= 0) {
    why = "does not hold a pid ('" + std::string(text.substr(0, 20)) + "')";
    return 0;
  }
  auto named = [&](const std::string& what) {
    why = "names pid " + std::to_string(pid) + ", " + what;
    return 0;
  };
  ProcStat st;
  if (pid == 1 || pid == getpid()) return named("which is not the daemon");
  if (!reader_.stat(pid, st) || st.dead()) return named("which is not running");
  if (l.start_time && st.start_time < l.start_time)
    return named("which started before the start command (a stale pid file)");
  if (reaper_.tracked(pid)) return named("which vigil started for something else");
  if (auto it = adopted_.find(pid); it != adopted_.end() && it->second != u.name)
    return named("which watch '" + it->second + "' watches");
  // Up its ancestry to the start command or to vigil (a few steps).
  bool descends = false;
  ProcStat up = st;
  for (int i = 0; i < 64 && up.ppid > 1; ++i) {
    if (up.ppid == l.pid || up.ppid == getpid()) {
      descends = true;
      break;
    }
    if (!reader_.stat(up.ppid, up)) break;
  }
  if (!descends) return named("which does not descend from the start command");
  if (!instance_.empty()) {
    // Marks (adopt.cpp) name the watch whose command started a process;
    // a daemon that kept its environment carries ours, or none.
    if (auto env = reader_.read(pid, "environ")) {
      std::string_view watch, instance;
      for (size_t at = 0; at < env->size();) {
        size_t e = env->find('\0', at);
        std::string_view kv = env->substr(at, e == std::string_view::npos ? e : e - at);
        at = e == std::string_view::npos ? env->size() : e + 1;
        size_t eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        if (kv.substr(0, eq) == kMarkWatch) watch = kv.substr(eq + 1);
        if (kv.substr(0, eq) == kMarkInstance) instance = kv.substr(eq + 1);
      }
      if (!watch.empty() && instance == instance_ && watch != u.name)
        return named("which watch '" + std::string(watch) + "' started");
    }
  }
  start_time = st.start_time;
  return pid;
}

void Supervisor::daemon_failed(Unit& u, const std::string& error) {
  if (u.launch) {
    loop_.cancel(u.launch->deadline);
    loop_.cancel(u.launch->poll);
    u.launch.reset();
  }
  log_.emit(Msg::DaemonFailed, u.name, {{"error", error}, {"pidfile", u.spec.pidfile}});
  record_failed_start(u, error);
  if (!u.want_running) return;
  if (u.paused) return set_state(u, UnitState::Stopped);
  // A failed start, put to the rules as any: it uses the restart budget.
  // From the loop, not from inside whatever called (a spawn in a decision).
  std::string name = u.name;
  loop_.post([this, name] {
    Unit* unit = find(name);
    if (!unit || unit->child || unit->launch || !unit->want_running || unit->paused ||
        unit->state == UnitState::Backoff)
      return;
    if (unit->last_exit) decide_exit(*unit, *unit->last_exit);
  });
}

// A stop while the daemon is being started: the start command (and what
// it forked in its group) goes; a daemon it already left and named is
// stopped as the watch's process would be.
void Supervisor::cancel_launch(Unit& u) {
  Unit::Launch& l = *u.launch;
  loop_.cancel(l.deadline);
  loop_.cancel(l.poll);
  if (l.running) {
    ::kill(-l.pid, SIGKILL);
  } else {
    uint64_t start_time = 0;
    bool fatal = false;
    std::string why;
    if (pid_t pid = daemon_pid(u, start_time, why, fatal); pid > 0) {
      ::kill(pid, u.spec.stop_signal);
      log_.emit(Msg::StopRequested, u.name, {{"pid", pid}, {"how", signal_name(u.spec.stop_signal)}});
    }
  }
  u.launch.reset();
}

}  // namespace vigil

// Supervisor, part four: probes (probes.hpp) and the sd_notify protocol.
// Probes run only while the watch's process runs; every answer carries the
// generation it was asked in, so an answer about a process that has since
// been replaced is dropped.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "host/core/pidfd.hpp"
#include "host/core/strings.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {

constexpr size_t kScriptOutputMax = 4096;

// The evidence, one line, for events.
std::string one_line(std::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c == '\n' || c == '\r') ? ' ' : c;
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace

const char* probe_kind_name(ProbeSpec::Kind k) {
  switch (k) {
    case ProbeSpec::Kind::Http: return "http";
    case ProbeSpec::Kind::Tcp: return "tcp";
    case ProbeSpec::Kind::Script: return "script";
    case ProbeSpec::Kind::File: return "file";
    case ProbeSpec::Kind::Notify: return "notify";
    case ProbeSpec::Kind::Rule: return "rule";
    case ProbeSpec::Kind::Exec: return "exec";
  }
  return "?";
}

void Supervisor::set_probes(ProbeEngine* engine, NotifySocket* notify) {
  engine_ = engine;
  notify_ = notify;
  if (notify_) notify_->set_handler([this](const NotifyMessage& m) { on_notify(m); });
}

// New specs (a declaration, a reload): probes restart when they changed.
void Supervisor::set_probe_specs(Unit& u, std::vector<ProbeSpec> specs) {
  if (u.probing && u.probing->specs == specs) return;
  bool running = u.probing && u.probing->active;
  if (u.probing) stop_probes(u);
  if (specs.empty()) {
    u.probing.reset();
    return;
  }
  uint64_t generation = u.probing ? u.probing->generation : 0;
  u.probing = std::make_unique<Probing>();
  u.probing->specs = std::move(specs);
  u.probing->generation = generation;
  if (running || (u.child && !u.child->failure && u.state == UnitState::Running)) start_probes(u);
}

std::vector<std::pair<std::string, std::string>> Supervisor::notify_env(const Unit& u) const {
  std::vector<std::pair<std::string, std::string>> env;
  if (!u.probing || !notify_ || !notify_->available()) return env;
  for (const auto& s : u.probing->specs) {
    if (s.kind != ProbeSpec::Kind::Notify) continue;
    env.emplace_back("NOTIFY_SOCKET", notify_->address());
    if (s.watchdog > 0)
      env.emplace_back("WATCHDOG_USEC", std::to_string(to_millis(s.watchdog) * 1000));
    break;
  }
  return env;
}

void Supervisor::start_probes(Unit& u) {
  if (!u.probing || !u.child || u.child->failure) return;
  Probing& p = *u.probing;
  if (p.active) stop_probes(u);
  ++p.generation;
  p.active = true;
  p.pid = u.child->pid;
  p.started = MonoClock::now();
  p.notified_ready = false;
  p.status.clear();
  p.runs.clear();
  p.runs.resize(p.specs.size());
  p.ready = false;
  for (size_t i = 0; i < p.specs.size(); ++i) {
    const ProbeSpec& s = p.specs[i];
    Probing::Run& r = p.runs[i];
    if (s.kind == ProbeSpec::Kind::Notify) {
      notify_pids_[p.pid] = u.name;
      r.started = true;
      r.last = p.started;
      r.watchdog = s.watchdog;
      arm_watchdog(u, i);
      continue;
    }
    if (s.readiness) {
      r.started = true;
      schedule_probe(u, i, Duration::zero());
    } else if (s.startup > 0) {
      schedule_probe(u, i, from_seconds(s.startup));  // or at readiness, if sooner
    } else {
      r.started = true;
      schedule_probe(u, i, from_seconds(s.every));
    }
  }
  if (!p.gated()) update_ready(u);
}

void Supervisor::stop_probes(Unit& u) {
  if (!u.probing) return;
  Probing& p = *u.probing;
  for (auto& r : p.runs) {
    loop_.cancel(r.timer);
    r.timer = 0;
    if (r.check && engine_) engine_->cancel(r.check);
    r.check = 0;
    if (r.script > 0) ::kill(-r.script, SIGKILL);  // its exit is ignored (generation)
    r.script = 0;
    r.token = 0;
    if (r.output_watch) loop_.remove(r.output_watch);
    r.output_watch = 0;
    r.output.reset();
  }
  if (p.pid) {
    auto it = notify_pids_.find(p.pid);
    if (it != notify_pids_.end() && it->second == u.name) notify_pids_.erase(it);
  }
  if (p.active) ++p.generation;
  p.active = false;
  p.ready = false;
}

void Supervisor::schedule_probe(Unit& u, size_t i, Duration delay) {
  Probing::Run& r = u.probing->runs[i];
  loop_.cancel(r.timer);
  std::string name = u.name;
  uint64_t gen = u.probing->generation;
  r.timer = loop_.after(delay, [this, name, i, gen] {
    Unit* unit = find(name);
    if (!unit || !unit->probing || unit->probing->generation != gen) return;
    unit->probing->runs[i].timer = 0;
    run_probe(*unit, i);
  });
}

void Supervisor::run_probe(Unit& u, size_t i) {
  Probing& p = *u.probing;
  const ProbeSpec& s = p.specs[i];
  Probing::Run& r = p.runs[i];
  r.started = true;
  if (r.check || r.script || r.token) {
    // Still waiting for the last one (its timeout is longer than `every`).
    schedule_probe(u, i, from_seconds(s.every));
    return;
  }
  std::string name = u.name;
  uint64_t gen = p.generation;
  auto answer = [this, name, i, gen](const ProbeResult& res) {
    Unit* unit = find(name);
    if (!unit || !unit->probing || unit->probing->generation != gen) return;
    Probing::Run& run = unit->probing->runs[i];
    run.check = 0;
    probe_result(*unit, i, res);
  };
  ProbeResult fail;
  switch (s.kind) {
    case ProbeSpec::Kind::Http:
    case ProbeSpec::Kind::Tcp:
      if (!engine_) {
        fail.reason = "HTTP and TCP probes are not available";
        return probe_result(u, i, fail);
      }
      r.check = s.kind == ProbeSpec::Kind::Http ? engine_->http(s.http, answer)
                                                : engine_->tcp(s.tcp, answer);
      return;
    case ProbeSpec::Kind::Script: return run_script_probe(u, i);
    case ProbeSpec::Kind::File: {
      struct stat st;
      ProbeResult res;
      if (::stat(s.path.c_str(), &st) != 0) {
        res.reason = s.path + ": " + errno_text(errno);
      } else {
        timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        double age = static_cast<double>(now.tv_sec - st.st_mtim.tv_sec) +
                     static_cast<double>(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
        res.ok = age <= s.max_age;
        if (!res.ok)
          res.reason = s.path + " not updated for " + seconds_text(age) + " (max " +
                       seconds_text(s.max_age) + ")";
      }
      return probe_result(u, i, res);
    }
    case ProbeSpec::Kind::Rule: {
      if (!policy_) {
        fail.reason = "no rules to run the check";
        return probe_result(u, i, fail);
      }
      r.token = next_token_++;
      uint64_t token = r.token;
      // The check must answer within its timeout.
      r.timer = loop_.after(from_seconds(s.timeout), [this, name, i, gen, token] {
        Unit* unit = find(name);
        if (!unit || !unit->probing || unit->probing->generation != gen) return;
        Probing::Run& run = unit->probing->runs[i];
        if (run.token != token) return;
        run.timer = 0;
        ProbeResult res;
        res.reason =
            "no answer from the check within " + seconds_text(unit->probing->specs[i].timeout);
        res.elapsed = unit->probing->specs[i].timeout;
        probe_answer(*unit, i, token, res);
      });
      policy_->run_probe(u, i, token);
      return;
    }
    case ProbeSpec::Kind::Notify: return;  // driven by the process's messages
    case ProbeSpec::Kind::Exec: return run_exec_probe(u, i);
  }
}

void Supervisor::probe_answer(Unit& u, size_t i, uint64_t token, const ProbeResult& res) {
  if (!u.probing || i >= u.probing->runs.size()) return;
  Probing::Run& r = u.probing->runs[i];
  if (!token || r.token != token) return;  // late, or about an earlier process
  r.token = 0;
  loop_.cancel(r.timer);
  r.timer = 0;
  probe_result(u, i, res);
}

void Supervisor::run_script_probe(Unit& u, size_t i) {
  Probing& p = *u.probing;
  const ProbeSpec& s = p.specs[i];
  Probing::Run& r = p.runs[i];
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    ProbeResult res;
    res.reason = "pipe: " + errno_text(errno);
    return probe_result(u, i, res);
  }
  Fd read_end(fds[0]), write_end(fds[1]);
  std::vector<std::pair<std::string, std::string>> env = {
      {"VIGIL_WATCH", u.name}, {"VIGIL_PID", std::to_string(p.pid)}, {"VIGIL_PROBE", s.name}};
  std::string name = u.name;
  uint64_t gen = p.generation;
  MonoTime began = MonoClock::now();
  std::string error;
  // Reads what the script wrote (kept up to kScriptOutputMax); true at
  // end of file.
  auto drain = [](Probing::Run& run) {
    char buf[4096];
    while (run.output) {
      ssize_t n = ::read(run.output.get(), buf, sizeof buf);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EINTR;
      size_t room = kScriptOutputMax - std::min(run.captured.size(), kScriptOutputMax);
      run.captured.append(buf, std::min(room, static_cast<size_t>(n)));
    }
    return true;
  };
  auto pid = run_command(
      s.command, env, s.timeout,
      [this, name, i, gen, began, drain](const ExitStatus& st, bool timed_out) {
        Unit* unit = find(name);
        if (!unit || !unit->probing || unit->probing->generation != gen) return;
        Probing::Run& run = unit->probing->runs[i];
        run.script = 0;
        drain(run);
        if (run.output_watch) loop_.remove(run.output_watch);
        run.output_watch = 0;
        run.output.reset();
        ProbeResult res;
        res.elapsed = to_seconds(MonoClock::now() - began);
        res.ok = st.code == 0 && !timed_out;
        if (timed_out)
          res.reason =
              "killed at its timeout (" + seconds_text(unit->probing->specs[i].timeout) + ")";
        else if (st.signal)
          res.reason = std::string("killed by ") + signal_name(st.signal);
        else if (!res.ok)
          res.reason = "exited " + std::to_string(st.code);
        res.excerpt = std::exchange(run.captured, {});
        if (!res.ok && !res.excerpt.empty()) res.reason += ": " + one_line(res.excerpt, 200);
        probe_result(*unit, i, res);
      },
      error, true, write_end.get());
  if (!pid) {
    ProbeResult res;
    res.reason = "cannot run " + s.command.front() + ": " + error;
    return probe_result(u, i, res);
  }
  r.script = *pid;
  r.captured.clear();
  r.output = std::move(read_end);
  r.output_watch = loop_.add(r.output.get(), EPOLLIN, [this, name, i, gen, drain](uint32_t) {
    Unit* unit = find(name);
    if (!unit || !unit->probing || unit->probing->generation != gen) return;
    Probing::Run& run = unit->probing->runs[i];
    if (drain(run) && run.output_watch) {
      loop_.remove(run.output_watch);  // closed: the exit collects the rest
      run.output_watch = 0;
    }
  });
}

void Supervisor::probe_result(Unit& u, size_t i, const ProbeResult& res) {
  Probing& p = *u.probing;
  const ProbeSpec& s = p.specs[i];
  Probing::Run& r = p.runs[i];
  r.result = res;
  r.at = wall_seconds();
  std::string name = u.name;
  uint64_t gen = p.generation;
  if (res.ok) {
    r.fails = 0;
    ++r.passes;
    if (!r.passed && r.passes >= s.success) {
      r.passed = true;
      if (r.failing) {
        r.failing = false;
        log_.emit(Msg::ProbeRecovered, u.name, {{"pid", p.pid}, {"probe", s.name}});
      }
    }
  } else {
    r.passes = 0;
    r.passed = false;
    ++r.fails;
    if (!r.failing) {
      nlohmann::json ev = {{"pid", p.pid},
                           {"probe", s.name},
                           {"kind", probe_kind_name(s.kind)},
                           {"fails", r.fails},
                           {"threshold", s.fails},
                           {"reason", res.reason},
                           {"elapsed", res.elapsed},
                           {"uptime", to_seconds(MonoClock::now() - p.started)}};
      if (res.status) ev["status"] = res.status;
      if (!res.excerpt.empty()) ev["evidence"] = res.excerpt;
      log_.emit(Msg::ProbeFailed, u.name, ev);
      if (r.fails >= s.fails) {
        r.failing = true;
        if (!s.readiness) {
          ev["evidence"] = res.excerpt;
          log_.emit(Msg::ProcessHung, u.name, ev);
          if (policy_ && !u.paused) policy_->on_hung(u, ev);
        }
      }
    }
  }
  // The rules may have acted: look again.
  Unit* unit = find(name);
  if (!unit || !unit->probing || unit->probing->generation != gen) return;
  update_ready(*unit);
  if (s.kind != ProbeSpec::Kind::Notify && !unit->probing->runs[i].timer)
    schedule_probe(*unit, i, from_seconds(s.every));
}

void Supervisor::update_ready(Unit& u) {
  Probing& p = *u.probing;
  if (!p.active) return;
  bool ready = true;
  std::string why;
  for (size_t i = 0; i < p.specs.size(); ++i) {
    const ProbeSpec& s = p.specs[i];
    const Probing::Run& r = p.runs[i];
    if (s.kind == ProbeSpec::Kind::Notify && s.ready && !p.notified_ready) {
      ready = false;
    } else if (s.readiness && !r.passed) {
      ready = false;
      if (why.empty() && r.fails > 0) why = "probe " + s.name + ": " + r.result.reason;
    }
  }
  if (ready == p.ready) return;
  p.ready = ready;
  schedule_advance();  // a dependent may be waiting for it
  changed();
  if (ready) {
    log_.emit(Msg::WatchReady, u.name,
              {{"pid", p.pid}, {"after", to_seconds(MonoClock::now() - p.started)}});
    // Liveness probes in their startup grace start now, if readiness is
    // something the watch reached (not merely a process that runs).
    for (size_t i = 0; p.gated() && i < p.specs.size(); ++i)
      if (!p.runs[i].started && !p.runs[i].check && !p.runs[i].script && !p.runs[i].token)
        schedule_probe(u, i, Duration::zero());
  } else {
    log_.emit(Msg::WatchNotReady, u.name,
              {{"pid", p.pid}, {"reason", why.empty() ? "a readiness probe failed" : why}});
  }
}

// The watchdog of a notify probe: fails when the process has not sent
// WATCHDOG=1 for its timeout; READY=1 must come within `startup`.
void Supervisor::arm_watchdog(Unit& u, size_t i) {
  Probing& p = *u.probing;
  const ProbeSpec& s = p.specs[i];
  Probing::Run& r = p.runs[i];
  loop_.cancel(r.timer);
  r.timer = 0;
  MonoTime deadline = MonoTime::max();
  // With `ready`, the watchdog runs from READY=1 (`startup` bounds the wait).
  if (r.watchdog > 0 && (!s.ready || p.notified_ready))
    deadline = r.last + from_seconds(r.watchdog);
  bool await_ready = s.ready && s.startup > 0 && !p.notified_ready && !r.ready_late;
  if (await_ready) deadline = std::min(deadline, p.started + from_seconds(s.startup));
  if (deadline == MonoTime::max()) return;
  std::string name = u.name;
  uint64_t gen = p.generation;
  r.timer = loop_.at(deadline, [this, name, i, gen] {
    Unit* unit = find(name);
    if (!unit || !unit->probing || unit->probing->generation != gen) return;
    Probing& pr = *unit->probing;
    const ProbeSpec& sp = pr.specs[i];
    Probing::Run& run = pr.runs[i];
    run.timer = 0;
    MonoTime now = MonoClock::now();
    ProbeResult res;
    if (sp.ready && sp.startup > 0 && !pr.notified_ready && !run.ready_late &&
        now >= pr.started + from_seconds(sp.startup)) {
      res.reason = "no READY=1 within " + seconds_text(sp.startup);
      res.elapsed = to_seconds(now - pr.started);
      run.ready_late = true;  // said once per process
    } else if (run.watchdog > 0 && (!sp.ready || pr.notified_ready) &&
               now >= run.last + from_seconds(run.watchdog)) {
      res.elapsed = to_seconds(now - run.last);
      res.reason = "no WATCHDOG=1 for " + seconds_text(res.elapsed);
      run.last = now;  // the next failure needs another silent period
    } else {
      return arm_watchdog(*unit, i);
    }
    probe_result(*unit, i, res);
    if ((unit = find(name)) && unit->probing && unit->probing->generation == gen)
      arm_watchdog(*unit, i);
  });
}

// Whose message is it? Only what can be proven (docs/operations.md,
// "Whose notification"):
//  1. the watched process itself (vigil's child is a zombie until vigil
//     reaps it, an adopted one is pinned by its pidfd: no reuse);
//  2. a process still there (alive or a zombie) that is the sender (its
//     pidfd, where the kernel gives one, rules out a reused pid) and is in
//     the watched process's group, or its descendant;
//  3. a sender already gone: the kernel keeps the cgroup it exited in;
//     that is proof when it is the watched process's cgroup and not
//     vigil's own (everything vigil starts shares that one).
// Otherwise nullptr, and `why`.
Unit* Supervisor::notify_owner(const NotifyMessage& msg, std::string& why) {
  auto owner = [&](pid_t p) -> Unit* {
    auto it = notify_pids_.find(p);
    return it == notify_pids_.end() ? nullptr : find(it->second);
  };
  if (Unit* u = owner(msg.pid)) return u;
  ProcStat st;
  bool there = reader_.stat(msg.pid, st) && (msg.pidfd < 0 || pidfd_is(msg.pidfd, msg.pid));
  if (there) {
    if (Unit* u = owner(st.pgrp); u && u->child && u->child->own_group) return u;
    // A descendant that made a group (or a session) of its own.
    pid_t p = st.ppid;
    for (int depth = 0; depth < 64 && p > 1 && p != getpid(); ++depth) {
      if (Unit* u = owner(p)) return u;
      ProcStat up;
      if (!reader_.stat(p, up)) break;
      p = up.ppid;
    }
    why = "pid " + std::to_string(msg.pid) +
          " is no watched process with a notify probe, nor in its process group, nor its "
          "descendant";
    return nullptr;
  }
  why = "the sender had exited before vigil read the message";
  auto cgroup = pidfd_cgroup_id(msg.pidfd);
  if (!cgroup) {
    why += msg.pidfd < 0 ? " (this kernel gives no pidfd of the sender to tell whose it was)"
                         : " (this kernel keeps no cgroup of an exited sender)";
    return nullptr;
  }
  std::optional<uint64_t> own;
  if (int self = pidfd_open(getpid(), 0); self >= 0) {
    own = pidfd_cgroup_id(self);
    ::close(self);
  }
  if (own && *own == *cgroup) {
    why +=
        "; it was in vigil's own cgroup, which proves nothing (send from a process that "
        "stays until the message is read, e.g. systemd-notify without --no-block)";
    return nullptr;
  }
  Unit* found = nullptr;
  for (const auto& [pid, name] : notify_pids_) {
    Unit* u = find(name);
    if (!u || !u->child) continue;
    int fd = pidfd_open(pid, 0);
    if (fd < 0) continue;
    auto theirs = pidfd_cgroup_id(fd);
    ::close(fd);
    if (theirs && *theirs == *cgroup) {
      if (found && found != u) {
        why += "; its cgroup holds more than one watched process";
        return nullptr;
      }
      found = u;
    }
  }
  if (!found) why += "; its cgroup is no watched process's";
  return found;
}

void Supervisor::notify_dropped(const NotifyMessage& msg, const std::string& why) {
  // Once per sender: a process pinging a socket that is not its own
  // would otherwise log every few seconds.
  if (!notify_dropped_.insert(msg.pid).second) return;
  if (notify_dropped_.size() > 4096) notify_dropped_ = {msg.pid};
  std::string keys;
  for (const auto& [k, v] : msg.fields) keys += (keys.empty() ? "" : ",") + k;
  log_.emit(Msg::NotifyDropped, "", {{"pid", msg.pid}, {"reason", why}, {"keys", keys}});
}

void Supervisor::on_notify(const NotifyMessage& msg) {
  if (!msg.problem.empty()) return notify_dropped(msg, msg.problem);
  std::string why;
  Unit* u = notify_owner(msg, why);
  if (!u) return notify_dropped(msg, why);
  if (!u->probing || !u->probing->active) return;
  Probing& p = *u->probing;
  size_t i = 0;
  while (i < p.specs.size() && p.specs[i].kind != ProbeSpec::Kind::Notify) ++i;
  if (i == p.specs.size()) return;
  std::string name = u->name;
  uint64_t gen = p.generation;
  auto still = [&] {
    Unit* again = find(name);
    return again && again->probing && again->probing->generation == gen ? again : nullptr;
  };
  if (const std::string* v = msg.get("STATUS")) {
    p.status = *v;
    log_.emit(Msg::NotifyStatus, name, {{"pid", msg.pid}, {"status", *v}});
  }
  if (const std::string* v = msg.get("WATCHDOG_USEC")) {
    char* end = nullptr;
    unsigned long long usec = strtoull(v->c_str(), &end, 10);
    if (end && *end == '\0' && !v->empty()) {
      p.runs[i].watchdog = static_cast<double>(usec) / 1e6;
      p.runs[i].last = MonoClock::now();
      arm_watchdog(*u, i);
    }
  }
  if (const std::string* v = msg.get("WATCHDOG")) {
    Probing::Run& r = p.runs[i];
    if (*v == "1") {
      r.last = MonoClock::now();
      if (r.fails > 0 || !r.passed) {
        ProbeResult ok;
        ok.ok = true;
        probe_result(*u, i, ok);
        if (!(u = still())) return;
      }
    } else if (*v == "trigger") {
      ProbeResult res;
      res.reason = "the process asked for it (WATCHDOG=trigger)";
      probe_result(*u, i, res);
      if (!(u = still())) return;
    }
  }
  if (const std::string* v = msg.get("READY"); v && *v == "1" && !u->probing->notified_ready) {
    u->probing->notified_ready = true;
    u->probing->runs[i].last = MonoClock::now();
    arm_watchdog(*u, i);
    update_ready(*u);
  }
}

}  // namespace vigil

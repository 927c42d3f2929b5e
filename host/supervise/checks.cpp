// Supervisor, part three: processes that are alive but not well. Every
// `checks.every` seconds the stat line of each watched process is read
// (one small read per process: steady state touches only watched pids)
// and a process stopped (T) or blocked in uninterruptible sleep (D) for
// longer than its threshold is reported, once per episode, and handed to
// the rules. Dead processes that linger as zombies because their parent
// does not reap them are reported too.
#include <algorithm>

#include "host/core/clock.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {

enum class Bad { None, Stopped, Blocked };

Bad classify(char state) {
  if (state == 'T' || state == 't') return Bad::Stopped;
  if (state == 'D') return Bad::Blocked;
  return Bad::None;
}

}  // namespace

void Supervisor::schedule_checks() {
  double every = 0;
  for (const auto& [name, u] : units_)
    if (u->checks.enabled() && (every == 0 || u->checks.every < every)) every = u->checks.every;
  if (!zombies_.empty() && every == 0) every = 1;
  if (every == 0) {
    loop_.cancel(check_timer_);
    check_timer_ = 0;
    return;
  }
  if (check_timer_) return;
  check_timer_ = loop_.after(from_seconds(every), [this] {
    check_timer_ = 0;
    run_checks();
    schedule_checks();
  });
}

void Supervisor::run_checks() {
  MonoTime now = MonoClock::now();
  std::vector<std::string> names;
  for (const auto& [name, u] : units_)
    if (u->child && u->checks.enabled()) names.push_back(name);
  for (const auto& name : names)
    if (Unit* u = find(name); u && u->child) check_unit(*u, now);

  for (auto it = zombies_.begin(); it != zombies_.end();) {
    ProcStat st;
    if (!reader_.stat(it->pid, st) || st.start_time != it->start_time || st.state != 'Z') {
      it = zombies_.erase(it);  // reaped at last
      continue;
    }
    Unit* u = find(it->unit);
    double threshold = u ? u->checks.zombie : 10;
    if (threshold <= 0) {
      it = zombies_.erase(it);  // not wanted for this watch
      continue;
    }
    double age = to_seconds(now - it->since);
    if (age >= threshold) {
      nlohmann::json ev = {{"pid", it->pid},
                           {"ppid", st.ppid},
                           {"state", "zombie"},
                           {"for", age},
                           {"threshold", threshold}};
      log_.emit(Msg::ZombieUnreaped, it->unit, ev);
      if (u && policy_ && !u->paused) policy_->on_state(*u, ev);
      it = zombies_.erase(it);
      continue;
    }
    ++it;
  }
}

void Supervisor::check_unit(Unit& u, MonoTime now) {
  Unit::Child& c = *u.child;
  ProcStat st;
  bool read = c.stat_fd ? reader_.stat_at(c.stat_fd.get(), st) : reader_.stat(c.pid, st);
  if (!read || st.start_time != c.start_time) return;  // gone: its exit comes
  Bad was = classify(c.seen_state);
  Bad is = classify(st.state);
  if (is != was) {
    if (c.state_reported && was != Bad::None)
      log_.emit(Msg::StateCleared, u.name,
                {{"pid", c.pid},
                 {"state", std::string(1, st.state)},
                 {"was", std::string(1, c.seen_state)}});
    c.seen_state = st.state;
    c.state_since = now;
    c.state_reported = false;
    return;
  }
  c.seen_state = st.state;
  if (is == Bad::None || c.state_reported) return;
  double threshold = is == Bad::Stopped ? u.checks.stopped : u.checks.blocked;
  double age = to_seconds(now - c.state_since);
  if (threshold <= 0 || age < threshold) return;
  c.state_reported = true;
  nlohmann::json ev = {{"pid", c.pid},
                       {"state", is == Bad::Stopped ? "stopped" : "blocked"},
                       {"for", age},
                       {"threshold", threshold}};
  if (is == Bad::Blocked) {
    // Where in the kernel it waits: the operator's first clue.
    if (auto w = reader_.read(c.pid, "wchan")) ev["wchan"] = std::string(*w);
  }
  log_.emit(is == Bad::Stopped ? Msg::StateStopped : Msg::StateBlocked, u.name, ev);
  if (policy_ && !u.paused) policy_->on_state(u, ev);
}

void Supervisor::watch_zombie(const std::string& name, pid_t pid, uint64_t start_time, pid_t ppid) {
  zombies_.push_back({name, pid, start_time, ppid, MonoClock::now()});
  schedule_checks();
}

}  // namespace vigil

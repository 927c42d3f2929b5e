// Supervisor, part two: processes vigil did not start. Adopting one
// (pidfd, start time), learning how it ended, restart scripts and finding
// the new instance by the match, keeping member sets of counted watches
// current from kernel process events (or /proc scans without them), and
// re-adopting what a previous vigil supervised.
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "host/core/clock.hpp"
#include "host/core/pidfd.hpp"
#include "host/core/strings.hpp"
#include "host/proc/proc_scan.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

void Supervisor::load_journal() {
  Journal::Loaded j = journal_.load();
  journal_previous_ = std::move(j.entries);
  first_apply_ = true;
  nlohmann::json moved = j.moved_to.empty() ? nlohmann::json(nullptr) : nlohmann::json(j.moved_to);
  if (!j.unreadable.empty())
    log_.emit(Msg::JournalUnreadable, "",
              {{"path", journal_.path()}, {"error", j.unreadable}, {"moved_to", moved}});
  else if (j.bad_lines > 0)
    log_.emit(Msg::JournalDamaged, "",
              {{"path", journal_.path()},
               {"error", j.damage},
               {"bad_lines", j.bad_lines},
               {"kept", journal_previous_.size()},
               {"moved_to", moved}});
}

std::vector<std::pair<std::string, std::string>> Supervisor::marks(const Unit& u) const {
  if (instance_.empty()) return {};
  return {
      {kMarkWatch, u.name}, {kMarkSpec, hex_digest(spec_hash(u.spec))}, {kMarkInstance, instance_}};
}

void Supervisor::set_proc_events(ProcEvents* events, double scan_interval) {
  events_ = events;
  scan_interval_ = scan_interval;
  update_interest();
}

void Supervisor::set_rule_interest(unsigned events) {
  rule_events_ = events;
  update_interest();
}

// The one place that decides what vigil hears from the kernel, from the
// watches as they are now: every exit, fork and exec while a count
// exists; execs while a watch waits for its process to appear; non-zero
// exits while a process vigil did not start (or started before it
// restarted) is watched, or a watch with a match may adopt one; what the
// rules' vigil.proc.on subscriptions ask for. Nothing at all when only
// started watches exist: their children are watched by pidfd, and the
// kernel connector stays closed, so what other software on the machine
// does never wakes vigil.
unsigned Supervisor::wanted_events() const {
  unsigned want = rule_events_;
  if (adopting_ || !adopted_.empty()) want |= ProcEvents::NonzeroExits;
  for (const auto& name : matching_) {
    auto it = units_.find(name);
    if (it == units_.end() || it->second->remove_when_stopped) continue;
    const Unit& u = *it->second;
    want |= ProcEvents::NonzeroExits;
    if (u.kind() == Unit::Kind::Members)
      want |= ProcEvents::Exits | ProcEvents::Forks | ProcEvents::Execs;
    else if (u.finding())
      want |= ProcEvents::Execs;
  }
  return want;
}

void Supervisor::update_interest() {
  if (!events_) return;
  unsigned before = events_->subscribed() ? events_->events_wanted() : 0;
  unsigned want = wanted_events();
  events_->set_events(want);
  // A process that exec'd after the last look in /proc but before the
  // kernel was asked for exec events was never heard of (a watch's worker
  // forked by a master vigil just started): once the current callback is
  // done, one scan finds every such process for every watch looking.
  bool widened = (want & ~before & (ProcEvents::Execs | ProcEvents::Forks)) != 0;
  if (widened && events_->subscribed() && !widen_scan_posted_) {
    widen_scan_posted_ = true;
    loop_.post([this] {
      widen_scan_posted_ = false;
      rescan();
    });
  }
}

// After something that may need less of the kernel (an adopted process
// gone, a watch erased): decided once the current callback is done.
void Supervisor::update_interest_soon() {
  if (!events_ || interest_posted_) return;
  interest_posted_ = true;
  loop_.post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    interest_posted_ = false;
    update_interest();
  });
}

// A new (or re-added) unit gets its process: the one a previous vigil ran
// for it if that still runs (named by the journal, or else found by its
// marks), else by kind. Units that must be found by their match, or by
// their marks, are queued: apply() finds them all in one /proc scan each.
void Supervisor::reattach(Unit& u) {
  auto prev = journal_previous_.find(u.name);
  if (prev != journal_previous_.end()) {
    JournalEntry e = prev->second;
    journal_previous_.erase(prev);
    if (readopt(u, e, "re-adopted after vigil restarted")) {
      // What a previous vigil ran of a group this node does not hold (it
      // may be running elsewhere by now) is a leftover: stopped.
      if (in_standby(u)) stop(u);
      return;
    }
  }
  if (!u.autostart) {
    // Declared, checked and shown; started when asked (what a previous
    // vigil started for it was re-adopted above).
    u.want_running = false;
    u.held = true;
    set_state(u, UnitState::Stopped);
    return;
  }
  // Not named by the journal (lost, damaged, or a write that never made
  // it): a process vigil started for it may still run.
  if (first_apply_ && !instance_.empty() && !u.spec.argv.empty() &&
      u.kind() != Unit::Kind::Members) {
    to_recover_.push_back(u.name);
    return;
  }
  start_fresh(u);
}

void Supervisor::start_fresh(Unit& u) {
  if (in_standby(u)) {
    // A clustered group this node does not hold: shown, neither started
    // nor looked for (the takeover does both).
    u.want_running = false;
    set_state(u, UnitState::Stopped);
    return;
  }
  if (u.kind() == Unit::Kind::Started || u.ct) return start_process(u);
  to_discover_.push_back(u.name);
}

// Adopts the process a previous vigil recorded (or marked) for u, if it
// still runs and still fits the watch.
bool Supervisor::readopt(Unit& u, const JournalEntry& e, const char* how) {
  ProcStat st;
  bool alive = reader_.stat(e.pid, st) && st.start_time == e.start_time && !st.dead();
  if (!alive) return false;
  bool fits = u.kind() == Unit::Kind::Started  ? e.spawned && !u.spec.argv.empty()
              : u.kind() == Unit::Kind::Single ? u.m->match.matches(st, reader_, parent_pid(u)) ||
                                                     (e.spawned && !u.spec.argv.empty())
                                               : false;
  if (!fits || !adopt(u, e.pid, e.start_time, e.spawned, how)) return false;
  if (e.spawned && !u.spec.argv.empty() && e.spec_hash != spec_hash(u.spec)) {
    // It runs what the watch used to say: restart it with what it says now.
    log_.emit(Msg::WatchChanged, u.name, {{"where", u.where}});
    restart(u);
  }
  return true;
}

// A process running as this real uid may be one vigil started for u:
// vigil's own user, or the watch's `user`.
bool Supervisor::may_be_ours(const Unit& u, uid_t uid) const {
  if (uid == geteuid()) return true;
  if (u.spec.user.empty()) return false;
  passwd pw, *found = nullptr;
  char buf[4096];
  if (getpwnam_r(u.spec.user.c_str(), &pw, buf, sizeof buf, &found) == 0 && found)
    return pw.pw_uid == uid;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(u.spec.user.data(), u.spec.user.data() + u.spec.user.size(), n);
  return ec == std::errc() && end == u.spec.user.data() + u.spec.user.size() && n == uid;
}

// The processes that a previous vigil on this state directory started for
// `names` and that its journal does not name, found by their marks in one
// pass over /proc. vigil starts every process in a session of its own and
// a session leader stays one, so only session leaders' environments are
// read; a marked leader whose parent carries the same marks is a child
// that made a session of its own, not the watch's process.
void Supervisor::recover(std::vector<std::string> names) {
  struct Found {
    pid_t pid;
    uint64_t start_time;
    uint64_t spec;
  };
  std::map<std::string, Found> found;
  if (!names.empty()) {
    std::set<std::string> wanted(names.begin(), names.end());
    // The watch whose marks of this instance pid carries, or "".
    auto marked = [&](pid_t pid, uint64_t* spec) -> std::string {
      auto env = reader_.read(pid, "environ");
      if (!env) return "";
      std::string_view watch, digest, instance;
      for (size_t at = 0; at < env->size();) {
        size_t end = env->find('\0', at);
        std::string_view kv = env->substr(at, end == std::string_view::npos ? end : end - at);
        at = end == std::string_view::npos ? env->size() : end + 1;
        size_t eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view k = kv.substr(0, eq), v = kv.substr(eq + 1);
        if (k == kMarkWatch) watch = v;  // the last one wins: vigil's come after the spec's
        if (k == kMarkSpec) digest = v;
        if (k == kMarkInstance) instance = v;
      }
      if (watch.empty() || instance != instance_) return "";
      if (spec) std::from_chars(digest.data(), digest.data() + digest.size(), *spec, 16);
      return std::string(watch);
    };
    PidIterator it;
    ProcStat st;
    while (auto pid = it.next()) {
      if (*pid == getpid() || !reader_.stat(*pid, st) || st.dead() || st.session != *pid) continue;
      uint64_t spec = 0;
      std::string watch = marked(*pid, &spec);
      if (watch.empty() || !wanted.contains(watch)) continue;
      if (st.ppid > 1 && marked(st.ppid, nullptr) == watch) continue;
      // Marks are only text: anyone can put them on a process. Trust them
      // only on one that runs as vigil or as the watch's user.
      auto status = reader_.status(*pid);
      Unit* u = find(watch);
      if (!status || !u || !may_be_ours(*u, status->uid)) continue;
      auto [f, added] = found.try_emplace(watch, Found{*pid, st.start_time, spec});
      if (!added && st.start_time < f->second.start_time) f->second = {*pid, st.start_time, spec};
    }
  }
  for (const auto& name : names) {
    Unit* u = find(name);
    if (!u || u->child || u->remove_when_stopped) continue;
    auto f = found.find(name);
    if (f != found.end() && readopt(*u, {f->second.pid, f->second.start_time, true, f->second.spec},
                                    "found by its marks; the journal did not name it")) {
      if (in_standby(*u)) stop(*u);  // a leftover of a group held elsewhere now
      continue;
    }
    start_fresh(*u);
  }
}

// Finds the processes of many units in one pass over /proc: a full scan
// reads every process's stat line once, and its other files at most once
// whatever the number of matchers. Units whose match names a parent watch
// go in a second pass, once the first has found their parents.
void Supervisor::discover(std::vector<std::string> names) {
  std::vector<std::string> later;
  for (int pass = 0; pass < 2 && !names.empty(); ++pass) {
    struct Pending {
      Unit* unit;
      pid_t parent;
      std::vector<FoundProcess> found;
    };
    std::vector<Pending> pending;
    for (const auto& name : names) {
      Unit* u = find(name);
      if (!u || !u->m || u->child || u->remove_when_stopped) continue;
      if (pass == 0 && u->m->match.uses_parent_watch()) {
        later.push_back(name);
        continue;
      }
      pending.push_back({u, parent_pid(*u), {}});
    }
    if (!pending.empty()) {
      std::vector<pid_t> exclude = commands_;
      exclude.push_back(getpid());
      scan_processes(reader_, exclude, [&](ProcView& v) {
        for (auto& p : pending)
          if (p.unit->m->match.matches(v, p.parent))
            p.found.push_back({v.stat().pid, v.stat().start_time});
      });
    }
    for (auto& p : pending) {
      std::sort(p.found.begin(), p.found.end(), [](const FoundProcess& a, const FoundProcess& b) {
        return a.start_time != b.start_time ? a.start_time < b.start_time : a.pid < b.pid;
      });
      settle(*p.unit, p.found);
    }
    names = std::move(later);
    later.clear();
  }
}

// What a unit does with the processes a scan found for it.
void Supervisor::settle(Unit& u, std::vector<FoundProcess>& found) {
  if (u.kind() == Unit::Kind::Members) {
    std::map<pid_t, uint64_t> now;
    for (const auto& f : found) now[f.pid] = f.start_time;
    for (const auto& [pid, st] : now) u.m->forks.erase(pid);
    bool changed = now != u.m->members;
    u.m->members = std::move(now);
    if (u.state == UnitState::Stopped && u.want_running && !u.paused)
      set_state(u, UnitState::Running);
    check_bounds(u, changed);
    return;
  }
  if (u.child) return;
  if (u.m->match.spec().select == MatchSpec::Select::Newest)
    std::reverse(found.begin(), found.end());
  const char* how = u.m->finding && (u.m->find_timer || u.m->script_pid)
                        ? "started by the restart script"
                    : u.m->finding ? "appeared"
                                   : "found";
  for (const auto& f : found) {
    // Vigil's own children belong to the watch that started them. (Two
    // watches may adopt the same foreign process: each sees it through
    // its own pidfd.)
    if (reaper_.tracked(f.pid)) continue;
    if (adopt(u, f.pid, f.start_time, false, how)) return;
  }
  if (!u.m->finding && u.want_running && !u.paused && u.state != UnitState::Exhausted)
    start_process(u, false);  // not there: start it, run its script, or wait
}

bool Supervisor::adopt(Unit& u, pid_t pid, uint64_t start_time, bool own_group, const char* how) {
  // Its exit must be heard: subscribed before it is known to be alive.
  if (events_ && !events_->subscribed()) {
    adopting_ = true;
    update_interest();
    adopting_ = false;
  }
  Fd pidfd(pidfd_open(pid, 0));
  if (!pidfd) return false;
  // The pidfd pins the process: if the start time still matches after it
  // was opened, it is the process the match saw, not a recycled pid.
  ProcStat st;
  if (!reader_.stat(pid, st) || st.start_time != start_time || st.dead()) return false;
  end_find(u);
  Unit::Child c;
  c.pid = pid;
  c.start_time = start_time;
  c.started = started_at(start_time);  // its uptime counts from its start, not from now
  c.adopted = true;
  c.own_group = own_group && st.pgrp == pid;
  c.daemon = !u.spec.pidfile.empty();  // vigil's, though not its child
  c.overruns = events_ ? events_->overruns() : 0;
  c.events_epoch = events_ && events_->subscribed() ? events_->epoch() : 0;
  c.pidfd = std::move(pidfd);
  std::string name = u.name;
  c.watch = loop_.add(c.pidfd.get(), EPOLLIN, [this, name, pid](uint32_t) {
    // Handled in a slice of the loop, like the deaths of vigil's children
    // (many adopted processes can end at once); readable until then, so
    // not polled meanwhile.
    Unit* unit = find(name);
    if (!unit || !unit->child || unit->child->pid != pid || !unit->child->watch) return;
    loop_.modify(unit->child->watch, 0);
    defer([this, name, pid] {
      Unit* u = find(name);
      if (u && u->child && u->child->pid == pid) on_adopted_exit(*u);
    });
  });
  u.child = std::move(c);
  adopted_[pid] = u.name;
  set_state(u, UnitState::Running);
  record(u);
  log_.emit(Msg::ProcessAdopted, u.name, {{"pid", pid}, {"how", how}});
  start_probes(u);
  return true;
}

// How an adopted process ended, from the first source that knows: reaping
// it (it was reparented to vigil), its zombie's stat line (field 52), the
// proc connector's exit event. The kernel makes the pidfd readable just
// before it queues the exit event, so when neither the zombie nor the
// event is there yet, vigil looks again a moment later before it decides
// (with the kernel filtering for non-zero exits: nothing heard = 0).
void Supervisor::on_adopted_exit(Unit& u, bool again) {
  if (!u.child || !u.child->adopted) return;
  Unit::Child& c = *u.child;
  pid_t pid = c.pid;
  if (c.watch) {
    loop_.remove(c.watch);  // level-triggered: it stays readable
    c.watch = 0;
  }
  std::optional<ExitStatus> status;
  siginfo_t si{};
  if (waitid(P_PIDFD, static_cast<id_t>(c.pidfd.get()), &si, WEXITED | WNOHANG) == 0 &&
      si.si_pid == pid) {
    status = si.si_code == CLD_EXITED ? ExitStatus{si.si_status, 0, false}
                                      : ExitStatus{-1, si.si_status, si.si_code == CLD_DUMPED};
  }
  ProcStat st;
  bool zombie = reader_.stat(pid, st) && st.start_time == c.start_time && st.state == 'Z';
  if (!status && zombie && st.exit_code >= 0) status = ExitStatus::from_wait(st.exit_code);
  if (events_) events_->drain();
  if (!u.child) return;  // cannot happen (draining runs no rules on it), but cheap
  if (!status) {
    if (auto it = exits_.find(pid); it != exits_.end()) status = it->second;
  }
  if (!status && !again) {
    std::string name = u.name;
    loop_.after(std::chrono::milliseconds(5), [this, name, pid] {
      Unit* unit = find(name);
      if (unit && unit->child && unit->child->pid == pid) on_adopted_exit(*unit, true);
    });
    return;
  }
  if (!status) {
    // Heard since it was adopted, with nothing lost, and only non-zero
    // exits asked for: it exited 0.
    bool nonzero_only = events_ && events_->filtering() && events_->subscribed() &&
                        c.events_epoch != 0 && c.events_epoch == events_->epoch() &&
                        (events_->events_wanted() & ProcEvents::NonzeroExits) != 0 &&
                        (events_->events_wanted() & ProcEvents::Exits) == 0 &&
                        events_->overruns() == c.overruns;
    status = nonzero_only ? ExitStatus{0, 0, false} : ExitStatus::unknown();
  }
  exits_.erase(pid);
  if (zombie) watch_zombie(u.name, pid, c.start_time, st.ppid);
  on_exit(u, *status);
}

void Supervisor::run_restart_script(Unit& u) {
  if (u.m->sweep_timer) return;  // the sweep under way runs it
  // kill = "tree": what the old process left (workers holding the port)
  // is stopped first, so that the script starts from a clean slate. A
  // live process with the old pid means the pid was reused, which the
  // kernel allows only once no process carries it as a session or group.
  auto old = u.last_exit ? reader_.stat(u.last_exit->pid) : std::nullopt;
  if (u.m->adopt.kill_tree && u.last_exit && u.last_exit->pid && (!old || old->dead()))
    return sweep_leftovers(u, u.last_exit->pid, [this](Unit& unit) {
      if (unit.want_running && !unit.child && !unit.m->script_pid) start_script(unit);
    });
  start_script(u);
}

void Supervisor::start_script(Unit& u) {
  std::string error;
  std::vector<std::pair<std::string, std::string>> env = {{"VIGIL_WATCH", u.name}};
  if (u.last_exit && u.last_exit->pid)
    env.emplace_back("VIGIL_PID", std::to_string(u.last_exit->pid));
  // A daemon the script starts can talk sd_notify to vigil.
  for (auto& kv : notify_env(u)) env.push_back(std::move(kv));
  std::string name = u.name;
  auto shared_pid = std::make_shared<pid_t>(0);
  auto pid = run_command(
      u.m->adopt.restart_script, env, u.m->adopt.script_timeout,
      [this, name, shared_pid](const ExitStatus& st, bool timed_out) {
        on_script_exit(name, *shared_pid, st, timed_out);
      },
      error, false);
  if (!pid) return restart_failed(u, "restart script: " + error);
  *shared_pid = *pid;
  u.m->script_pid = *pid;
  set_state(u, UnitState::Starting);
  log_.emit(Msg::RestartScript, u.name,
            {{"pid", *pid}, {"command", join(u.m->adopt.restart_script, " ")}});
}

void Supervisor::on_script_exit(const std::string& name, pid_t pid, const ExitStatus& st,
                                bool timed_out) {
  Unit* u = find(name);
  if (!u || !u->m || u->m->script_pid != pid) return;
  u->m->script_pid = 0;
  if (!u->want_running) return;
  if (timed_out)
    return restart_failed(*u, "restart script timed out after " +
                                  fmt_seconds(u->m->adopt.script_timeout) + "s and was killed");
  if (st.signal) return restart_failed(*u, "restart script killed by " + signal_name(st.signal));
  if (st.code != 0) return restart_failed(*u, "restart script exited " + std::to_string(st.code));
  // The script did its part: now the match must find the process.
  if (u->kind() == Unit::Kind::Single && try_find(*u, "started by the restart script")) return;
  wait_for_count(*u);
}

// After a restart (script or start): the match has `find_within` seconds
// to find the process (single) or the count to recover (members).
void Supervisor::wait_for_count(Unit& u) {
  if (u.kind() == Unit::Kind::Members) {
    scan_members(u);
    u.m->finding = true;  // check_bounds ends the wait once the count is back
    check_bounds(u, true);
    if (!u.m->finding) return;
  }
  u.m->finding = true;
  update_interest();
  // Exec events are heard from here on. One that came before the kernel
  // was asked for them (the script's daemon exec'd while the filter still
  // passed only exits) is in /proc: look once more.
  if (u.kind() == Unit::Kind::Single && try_find(u, "started by the restart script")) return;
  std::string name = u.name;
  double within = u.m->adopt.find_within;
  u.m->find_timer = loop_.after(from_seconds(within), [this, name, within] {
    Unit* unit = find(name);
    if (!unit || !unit->m->finding) return;
    unit->m->find_timer = 0;
    if (unit->kind() == Unit::Kind::Single && try_find(*unit, "started by the restart script"))
      return;
    unit->m->finding = false;
    std::string what = unit->kind() == Unit::Kind::Members
                           ? std::to_string(unit->m->members.size()) + " processes match (" +
                                 unit->m->match.spec().describe() + "), under the minimum"
                           : "no process matches (" + unit->m->match.spec().describe() + ")";
    restart_failed(*unit, what + " " + fmt_seconds(within) + "s after the restart");
  });
  schedule_scan();
}

void Supervisor::restart_failed(Unit& u, const std::string& error) {
  log_.emit(Msg::RestartFailed, u.name, {{"error", error}});
  ExitInfo e = record_failed_start(u, error);
  if (!u.want_running) return;
  if (u.paused) return set_state(u, UnitState::Stopped);
  decide_exit(u, e);
}

void Supervisor::begin_find(Unit& u) {
  if (!u.m || u.child) return;
  u.m->finding = true;
  schedule_scan();
  update_interest();
}

void Supervisor::end_find(Unit& u) {
  if (!u.m) return;
  bool was = u.m->finding;
  u.m->finding = false;
  if (u.m->find_timer) loop_.cancel(u.m->find_timer);
  u.m->find_timer = 0;
  if (was) update_interest();
}

pid_t Supervisor::parent_pid(const Unit& u) {
  if (!u.m || u.m->match.spec().parent.empty()) return 0;
  auto it = units_.find(u.m->match.spec().parent);
  if (it == units_.end() || !it->second->child) return 0;
  return it->second->child->pid;
}

bool Supervisor::try_find(Unit& u, const char* how) {
  if (!u.m || u.child) return false;
  std::vector<pid_t> exclude = commands_;
  exclude.push_back(getpid());
  auto found = find_processes(u.m->match, reader_, parent_pid(u), exclude);
  if (u.m->match.spec().select == MatchSpec::Select::Newest)
    std::reverse(found.begin(), found.end());
  for (const auto& f : found) {
    if (reaper_.tracked(f.pid)) continue;  // another watch's child
    if (adopt(u, f.pid, f.start_time, false, how)) return true;
  }
  return false;
}

void Supervisor::scan_members(Unit& u) {
  std::vector<pid_t> exclude = commands_;
  exclude.push_back(getpid());
  auto found = find_processes(u.m->match, reader_, parent_pid(u), exclude);
  std::map<pid_t, uint64_t> now;
  for (const auto& f : found) now[f.pid] = f.start_time;
  u.m->members = std::move(now);
}

// How long a member's fork may run without exec'ing before it counts (a
// helper forks and execs in microseconds; a forking worker stays).
constexpr double kForkGrace = 1.0;

void Supervisor::fork_added(Unit& u, pid_t pid, uint64_t start_time) {
  u.m->forks[pid] = {start_time, MonoClock::now()};
  if (u.m->fork_timer) return;
  std::string name = u.name;
  u.m->fork_timer = loop_.after(from_seconds(kForkGrace), [this, name] { count_old_forks(name); });
}

// Forks that outlived the grace without exec'ing are members now.
void Supervisor::count_old_forks(const std::string& name) {
  Unit* u = find(name);
  if (!u || !u->m) return;
  Unit::Matching& m = *u->m;
  m.fork_timer = 0;
  MonoTime now = MonoClock::now(), next{};
  bool added = false;
  for (auto it = m.forks.begin(); it != m.forks.end();) {
    MonoTime due = it->second.second + from_seconds(kForkGrace);
    if (due <= now) {
      added |= m.members.emplace(it->first, it->second.first).second;
      it = m.forks.erase(it);
    } else {
      if (next == MonoTime{} || due < next) next = due;
      ++it;
    }
  }
  if (!m.forks.empty())
    m.fork_timer = loop_.after(next - now, [this, name] { count_old_forks(name); });
  if (added) check_bounds(*u, true);
}

void Supervisor::member_added(Unit& u, pid_t pid, uint64_t start_time) {
  u.m->forks.erase(pid);
  if (!u.m->members.emplace(pid, start_time).second) return;
  check_bounds(u, true);
}

void Supervisor::member_removed(Unit& u, pid_t pid) {
  u.m->forks.erase(pid);
  if (!u.m->members.erase(pid)) return;
  check_bounds(u, true);
}

void Supervisor::set_count_limits(Unit& u, CountLimits limits) {
  if (!u.m) return;  // not a match watch: nothing to count
  u.m->count = limits;
  check_bounds(u, true);
}

namespace {

// The `k` newest of a set's members (key -> age), newest first.
template <class Members>
nlohmann::json newest_of(const Members& members, int64_t k, const char* key, const char* age) {
  std::vector<std::pair<typename Members::mapped_type, typename Members::key_type>> by_age;
  for (const auto& [id, at] : members) by_age.emplace_back(at, id);
  std::sort(by_age.rbegin(), by_age.rend());
  nlohmann::json newest = nlohmann::json::array();
  for (size_t i = 0; i < by_age.size() && static_cast<int64_t>(i) < k; ++i)
    newest.push_back({{key, by_age[i].second}, {age, by_age[i].first}});
  return newest;
}

}  // namespace

// One owner of a set's count (same-name processes, same-image containers):
// VGL0125/VGL0126 once per episode, VGL0127 when it ends, and the rules'
// on_count with the newest members when over.
void Supervisor::check_bounds(Unit& u, bool changed) {
  Unit::Counting* counter = u.counter();
  if (!counter) return;
  Unit::Counting& m = *counter;
  int64_t n = static_cast<int64_t>(u.ct ? u.ct->members.size() : u.m->members.size());
  int64_t min = m.count ? m.count->min : 1;
  int64_t max = m.count ? m.count->max : -1;
  Unit::Bounds b = max >= 0 && n > max ? Unit::Bounds::Over
                   : n < min           ? Unit::Bounds::Under
                                       : Unit::Bounds::Within;
  Unit::Bounds before = m.bounds;
  m.bounds = b;
  bool crossed = false;
  if (b != Unit::Bounds::Within) {
    if (m.hold_timer) loop_.cancel(m.hold_timer);
    m.hold_timer = 0;
    if (b != m.reported) {
      // Out of the limits, or out on the other side: reported once.
      crossed = true;
      if (m.reported == Unit::Bounds::Within) {
        m.crossings = 0;
        m.peak = m.low = n;
        m.out_since = MonoClock::now();
      }
      m.reported = b;
      Msg msg = b == Unit::Bounds::Over ? Msg::CountOver : Msg::CountUnder;
      log_.emit(msg, u.name,
                {{"count", n},
                 {"of", u.ct ? "containers" : "processes"},
                 {"min", min},
                 {"max", max < 0 ? nlohmann::json(nullptr) : nlohmann::json(max)}});
    }
    if (crossed || before == Unit::Bounds::Within) ++m.crossings;
    m.peak = std::max(m.peak, n);
    m.low = std::min(m.low, n);
  } else if (m.reported != Unit::Bounds::Within && !m.hold_timer) {
    // Back within: the episode ends once the count stays there.
    double hold = m.count ? m.count->hold : CountLimits{}.hold;
    std::string name = u.name;
    m.hold_timer = loop_.after(from_seconds(std::max(0.0, hold)), [this, name] {
      Unit* unit = find(name);
      Unit::Counting* c = unit ? unit->counter() : nullptr;
      if (!c || !c->hold_timer) return;
      c->hold_timer = 0;
      end_episode(*unit);
    });
  }
  // A restart that was waiting for the count to recover is done.
  if (b != Unit::Bounds::Under && u.m && u.m->finding) {
    end_find(u);
    set_state(u, UnitState::Running);
  }
  if (b != Unit::Bounds::Under && u.ct && u.ct->filling) {
    u.ct->filling = false;
    loop_.cancel(u.ct->fill_timer);
    u.ct->fill_timer = 0;
    set_state(u, UnitState::Running);
  }
  // Within: the rules hear of it when the episode ends.
  if (b == Unit::Bounds::Within || (!crossed && !changed)) return;
  // `again`: out again before the hold ended (the same episode; a
  // restart for the minimum is still wanted, a hook command is not).
  nlohmann::json ev = {{"count", n},
                       {"min", min},
                       {"crossed", crossed},
                       {"again", !crossed && before == Unit::Bounds::Within}};
  ev["max"] = max < 0 ? nlohmann::json(nullptr) : nlohmann::json(max);
  ev["bounds"] = b == Unit::Bounds::Over ? "over" : "under";
  // The newest first: the ones "kill_newest" (processes, by start time)
  // or "stop_newest" (containers, by creation) would take.
  if (b == Unit::Bounds::Over)
    ev["newest"] = u.ct ? newest_of(u.ct->members, n - max, "id", "created")
                        : newest_of(u.m->members, n - max, "pid", "start_time");
  // Stopped (by an operator, or stopping what it started): no action.
  if (u.paused || !u.want_running || !policy_) return;
  bool recovering = u.timer || (u.m && (u.m->finding || u.m->script_pid)) ||
                    (u.ct && (u.ct->filling || u.ct->busy));
  if (b == Unit::Bounds::Under && recovering) return;
  policy_->on_count(u, ev);
}

// The count stayed within its limits for the hold: one event for the
// whole episode, however often it went out meanwhile (a storm).
void Supervisor::end_episode(Unit& u) {
  Unit::Counting& m = *u.counter();
  if (m.reported == Unit::Bounds::Within || m.bounds != Unit::Bounds::Within) return;
  m.reported = Unit::Bounds::Within;
  int64_t n = static_cast<int64_t>(u.ct ? u.ct->members.size() : u.m->members.size());
  int64_t min = m.count ? m.count->min : 1;
  int64_t max = m.count ? m.count->max : -1;
  nlohmann::json maxj = max < 0 ? nlohmann::json(nullptr) : nlohmann::json(max);
  log_.emit(Msg::CountWithin, u.name,
            {{"count", n},
             {"of", u.ct ? "containers" : "processes"},
             {"min", min},
             {"max", maxj},
             {"crossings", m.crossings},
             {"peak", m.peak},
             {"low", m.low},
             {"for", std::round(to_seconds(MonoClock::now() - m.out_since) * 10) / 10}});
  if (u.paused || !u.want_running || !policy_) return;
  policy_->on_count(u, {{"count", n},
                        {"min", min},
                        {"max", maxj},
                        {"crossed", true},
                        {"bounds", "within"},
                        {"crossings", m.crossings}});
}

bool Supervisor::needs_exec_events() const {
  for (const auto& [name, u] : units_)
    if (u->kind() == Unit::Kind::Members || u->finding()) return true;
  return false;
}

void Supervisor::schedule_scan() {
  if (events_ || scan_timer_ || !needs_exec_events()) return;
  scan_timer_ = loop_.after(from_seconds(scan_interval_), [this] {
    scan_timer_ = 0;
    rescan();
    schedule_scan();
  });
}

void Supervisor::rescan() {
  std::vector<std::string> names;
  for (const auto& [name, u] : units_)
    if (!u->remove_when_stopped &&
        (u->kind() == Unit::Kind::Members || (u->finding() && !u->child)))
      names.push_back(name);
  discover(std::move(names));
}

void Supervisor::on_proc_event(const ProcEvent& ev) {
  if (ev.kind == ProcEvent::Kind::Exit) {
    if (adopted_.contains(ev.pid)) exits_[ev.pid] = ExitStatus::from_wait(ev.status);
    std::vector<std::string> in;
    for (const auto& name : matching_) {
      Unit* u = find(name);
      if (!u || !u->m) continue;
      u->m->forks.erase(ev.pid);
      if (u->m->members.contains(ev.pid)) in.push_back(name);
    }
    // One by one, looked up again: the rules run between them.
    for (const auto& name : in)
      if (Unit* u = find(name)) member_removed(*u, ev.pid);
    return;
  }
  if (!needs_exec_events()) return;
  ProcStat st;
  ProcView view(reader_);
  bool have_stat = false;
  auto load = [&] {
    if (!have_stat) {
      have_stat = reader_.stat(ev.pid, st) && !is_own_command(st);
      if (have_stat) view.reset(st);
    }
    return have_stat;
  };
  // Only watches with a match care; copied, as the rules run in between.
  std::vector<std::string> names(matching_.begin(), matching_.end());
  for (const auto& name : names) {
    Unit* u = find(name);
    if (!u || !u->m || u->remove_when_stopped) continue;
    if (u->kind() == Unit::Kind::Members) {
      if (ev.kind == ProcEvent::Kind::Fork && u->m->match.inherited_by_fork()) {
        // A fork of a member is a member, of anything else is not; it
        // counts once it execs into one or outlives the fork grace.
        if ((u->m->members.contains(ev.parent) || u->m->forks.contains(ev.parent)) && load() &&
            !st.dead())
          fork_added(*u, ev.pid, st.start_time);
        continue;
      }
      if (!load()) continue;
      if (u->m->match.matches(view, parent_pid(*u)))
        member_added(*u, ev.pid, st.start_time);
      else
        member_removed(*u, ev.pid);
    } else if (u->finding() && !u->child && ev.kind != ProcEvent::Kind::Fork) {
      if (!load() || reaper_.tracked(ev.pid)) continue;
      if (u->m->match.matches(view, parent_pid(*u)))
        adopt(*u, ev.pid, st.start_time, false,
              u->m->find_timer ? "started by the restart script" : "appeared");
    }
  }
}

}  // namespace vigil

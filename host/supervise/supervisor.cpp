#include "host/supervise/supervisor.hpp"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "host/core/clock.hpp"
#include "host/core/json_out.hpp"
#include "host/core/pidfd.hpp"
#include "host/core/strings.hpp"

namespace vigil {

Fd open_stat(pid_t pid, const char* file) {
  char path[48];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  return Fd(::open(path, O_RDONLY | O_CLOEXEC));
}

const char* unit_state_name(UnitState s) {
  switch (s) {
    case UnitState::Starting: return "starting";
    case UnitState::Running: return "running";
    case UnitState::Backoff: return "backoff";
    case UnitState::Exhausted: return "exhausted";
    case UnitState::Stopped: return "stopped";
    case UnitState::Waiting: return "waiting";
    case UnitState::Done: return "done";
  }
  return "stopped";
}

std::string ExitInfo::describe() const {
  if (!error.empty()) return "failed to start: " + error;
  if (!status.known) return "exited (status unknown)";
  if (status.signal)
    return "killed by " + signal_name(status.signal) + (status.core ? " (core dumped)" : "");
  return "exited " + std::to_string(status.code);
}

namespace {

// One description of each status object, written through JsonTree (a
// tree, to_json) or JsonText (text, write_json): see json_out.hpp.
template <class W>
void write_exit(const ExitInfo& e, W& w) {
  w.begin_object();
  w.key("pid").num(static_cast<int64_t>(e.pid));
  w.key("uptime").num(e.uptime);
  w.key("at").str(rfc3339(e.wall));
  if (e.status.known && !e.status.signal)
    w.key("code").num(static_cast<int64_t>(e.status.code));
  else
    w.key("code").null();
  if (e.status.signal)
    w.key("signal").str(signal_name(e.status.signal));
  else
    w.key("signal").null();
  if (!e.error.empty()) w.key("error").str(e.error);
  if (!e.killed.empty()) w.key("killed").str(e.killed);
  w.end_object();
}

template <class W>
void write_strings(const std::vector<std::string>& list, W& w) {
  w.begin_array();
  for (const auto& s : list) w.str(s);
  w.end_array();
}

template <class W>
void write_unit(const Unit& u, W& w) {
  w.begin_object();
  w.key("name").str(u.name);
  w.key("state").str(u.paused ? "paused" : unit_state_name(u.state));
  if (u.child)
    w.key("pid").num(static_cast<int64_t>(u.child->pid));
  else
    w.key("pid").null();
  w.key("restarts").num(u.restarts);
  w.key("since").str(rfc3339(u.since));
  if (u.child)
    w.key("uptime").num(to_seconds(MonoClock::now() - u.child->started));
  else
    w.key("uptime").null();
  if (u.last_exit)
    write_exit(*u.last_exit, w.key("last_exit"));
  else
    w.key("last_exit").null();
  w.key("paused").boolean(u.paused);
  if (u.state == UnitState::Done) w.key("outcome").str(u.done_ok ? "success" : "failure");
  if (u.oneshot) w.key("oneshot").boolean(true);
  if (!u.autostart) w.key("autostart").boolean(false);
  if (u.observe) w.key("mode").str("observe");
  w.key("where").str(u.where);
  if (u.ct) {
    const Unit::Containing& ct = *u.ct;
    w.key("match").str(describe_container_match(ct.decl.match));
    w.key("container").begin_object();
    if (ct.id.empty())
      w.key("id").null();
    else
      w.key("id").str(ct.id.substr(0, 12));
    w.key("name").str(ct.info.name);
    w.key("image").str(ct.info.image.empty() ? ct.decl.match.image : ct.info.image);
    w.key("state").str(!ct.engine_up                       ? "unknown"
                       : ct.counted()                      ? (ct.members.empty() ? "none" : "running")
                       : ct.id.empty()                     ? "none"
                                                           : ct.info.status);
    // Vigil's own health checks (exec probes, the image's HEALTHCHECK).
    std::string health;
    if (u.probing && u.probing->active)
      for (size_t i = 0; i < u.probing->specs.size() && i < u.probing->runs.size(); ++i) {
        if (u.probing->specs[i].kind != ProbeSpec::Kind::Exec) continue;
        const Probing::Run& r = u.probing->runs[i];
        if (r.failing || (r.at > 0 && !r.result.ok))
          health = "unhealthy";
        else if (health.empty())
          health = r.passed ? "healthy" : "starting";
      }
    w.key("health").str(health);
    w.key("engine_restarts").num(ct.engine_restarts);
    w.key("restart_policy").str(ct.info.restart_policy);
    w.key("observes").boolean(ct.observes());
    if (ct.counted()) {
      w.key("members").begin_array();
      for (const auto& [id, created] : ct.members) w.str(id.substr(0, 12));
      w.end_array();
    }
    w.end_object();
  }
  if (const Unit::Counting* c = u.counter()) {
    w.key("count").num(static_cast<uint64_t>(u.ct ? u.ct->members.size() : u.m->members.size()));
    if (c->count) {
      w.key("min").num(c->count->min);
      if (c->count->max < 0)
        w.key("max").null();
      else
        w.key("max").num(c->count->max);
    }
    w.key("bounds").str(c->bounds == Unit::Bounds::Over    ? "over"
                        : c->bounds == Unit::Bounds::Under ? "under"
                                                           : "within");
  }
  if (u.m) {
    w.key("match").str(u.m->match.spec().describe());
    w.key("adopted").boolean(u.child && u.child->adopted);
  }
  if (u.kind() == Unit::Kind::Members) {
    w.key("pids").begin_array();
    for (const auto& [pid, st] : u.m->members) w.num(static_cast<int64_t>(pid));
    w.end_array();
  }
  if (!u.overrides.empty()) {
    w.key("overrides").begin_object();
    for (const auto& [k, v] : u.overrides) w.key(k).str(v);
    w.end_object();
  }
  w.key("ready").boolean(u.ready());
  if (!u.group.empty()) w.key("group").str(u.group);
  if (!u.after.empty()) write_strings(u.after, w.key("after"));
  if (u.state == UnitState::Waiting || u.queued) {
    write_strings(u.waiting_for, w.key("waiting_for"));
    double in = to_seconds(u.not_before - MonoClock::now());
    if (in > 0) w.key("restart_in").num(in);
  }
  if (u.probing) {
    const Probing& p = *u.probing;
    w.key("probes").begin_array();
    for (size_t i = 0; i < p.specs.size(); ++i) {
      const ProbeSpec& s = p.specs[i];
      w.begin_object();
      w.key("name").str(s.name);
      w.key("kind").str(probe_kind_name(s.kind));
      w.key("readiness").boolean(s.gates_ready());
      if (p.active && i < p.runs.size()) {
        const Probing::Run& r = p.runs[i];
        w.key("fails").num(static_cast<int64_t>(r.fails));
        w.key("passing").boolean(r.passed);
        if (r.at > 0)
          w.key("last").str(rfc3339(r.at));
        else
          w.key("last").null();
        if (r.at > 0 && !r.result.ok) w.key("reason").str(r.result.reason);
      }
      w.end_object();
    }
    w.end_array();
    if (!p.status.empty()) w.key("status").str(p.status);
  }
  w.end_object();
}

}  // namespace

nlohmann::json ExitInfo::to_json() const {
  JsonTree w;
  write_exit(*this, w);
  return w.take();
}

nlohmann::json Unit::to_json() const {
  JsonTree w;
  write_unit(*this, w);
  return w.take();
}

void Unit::write_json(std::string& out) const {
  JsonText w(out);
  write_unit(*this, w);
}

Supervisor::Supervisor(EventLoop& loop, EventLog& log, std::string log_dir,
                       std::string journal_path)
    : loop_(loop), log_(log), log_dir_(std::move(log_dir)), reaper_(loop), journal_(journal_path) {
  if (journal_.enabled()) {
    size_t slash = journal_path.rfind('/');
    instance_ = instance_id(slash == std::string::npos ? "." : journal_path.substr(0, slash));
  }
  // An adopted process that was reparented to vigil (it is a subreaper)
  // is reaped by the reaper: keep its status for the pidfd callback.
  reaper_.set_orphan_handler([this](pid_t pid, const ExitStatus& st) {
    if (adopted_.contains(pid)) exits_[pid] = st;
  });
  journal_.set_snapshot([this] {
    std::map<std::string, JournalEntry> now;
    for (const auto& [name, u] : units_)
      if (u->child && !u->child->failure)
        now[name] = {u->child->pid, u->child->start_time,
                     !u->child->adopted || u->child->own_group || u->child->daemon,
                     spec_hash(u->spec)};
    return now;
  });
}

Supervisor::~Supervisor() {
  loop_.cancel(scan_timer_);
  loop_.cancel(check_timer_);
  loop_.cancel(advance_timer_);
  if (containers_) containers_->set_listener(nullptr);
  for (auto& [name, g] : groups_) loop_.cancel(g.rearm_timer);
  for (auto& [name, u] : units_) {
    if (u->ct) cancel_container_timers(*u->ct);
    cancel_timer(*u);
    stop_probes(*u);
    if (u->m) loop_.cancel(u->m->find_timer);
    if (u->m) loop_.cancel(u->m->kill_timer);
    if (Unit::Counting* c = u->counter()) loop_.cancel(c->hold_timer);
    if (u->m) loop_.cancel(u->m->fork_timer);
    if (u->child) {
      loop_.cancel(u->child->kill_timer);
      if (u->child->watch) loop_.remove(u->child->watch);
    }
  }
}

void Supervisor::defer(std::function<void()> task) {
  loop_.defer([alive = std::weak_ptr<bool>(alive_), task = std::move(task)] {
    if (!alive.expired()) task();
  });
}

Unit* Supervisor::find(const std::string& name) {
  auto it = units_.find(name);
  return it == units_.end() ? nullptr : it->second.get();
}

size_t Supervisor::running_count() const {
  size_t n = 0;
  for (const auto& [name, u] : units_) n += u->state == UnitState::Running;
  return n;
}

bool Supervisor::is_own_command(const ProcStat& st) const {
  auto own = [&](pid_t p) {
    return std::find(commands_.begin(), commands_.end(), p) != commands_.end();
  };
  return st.pid == getpid() || own(st.pid) || own(st.pgrp);
}

void Supervisor::set_state(Unit& u, UnitState s) {
  if (u.state == s) return;
  u.state = s;
  u.since = wall_seconds();
  if (s == UnitState::Running) check_soon(u);  // its first sample
  schedule_advance();                          // something may wait for this one
  changed();
}

void Supervisor::cancel_timer(Unit& u) {
  if (u.timer) loop_.cancel(u.timer);
  u.timer = 0;
}

// What makes a different process: the start spec, and for adopted watches
// the match and how to restart. Policy, limits and checks change live.
bool Supervisor::same_spec(const Unit& u, const Declaration& d) const {
  const ProcessSpec& current = u.respawn_with ? u.respawn_with->spec : u.spec;
  bool same_match =
      (u.m != nullptr) == d.match.has_value() && (!u.m || u.m->match.spec() == d.match->spec());
  const ContainerDecl* container = u.respawn_with && u.respawn_with->container
                                       ? &*u.respawn_with->container
                                   : u.ct ? &u.ct->decl
                                          : nullptr;
  bool same_container = (container != nullptr) == d.container.has_value() &&
                        (!container || *container == *d.container);
  return current == d.spec && same_match && same_container && (!u.m || u.m->adopt == d.adopt);
}

void Supervisor::add_unit(Declaration d) {
  auto fresh = std::make_unique<Unit>();
  Unit& u = *fresh;
  u.name = d.name;
  u.since = wall_seconds();
  units_.emplace(d.name, std::move(fresh));
  log_.emit(Msg::WatchAdded, d.name, {{"where", d.where}});
  replace_spec(u, std::move(d));
  reattach(u);
}

void Supervisor::replace_spec(Unit& u, Declaration d) {
  u.where = std::move(d.where);
  u.spec = std::move(d.spec);
  u.checks = d.checks;
  if (d.match) {
    u.m = std::make_unique<Unit::Matching>(std::move(*d.match), std::move(d.adopt), d.count);
    u.m->stop_on_remove = d.stop_on_remove;
    matching_.insert(u.name);
  } else {
    u.m.reset();
    matching_.erase(u.name);
  }
  if (u.ct) cancel_container_timers(*u.ct);
  if (d.container) {
    u.ct = std::make_unique<Unit::Containing>(std::move(*d.container));
    u.ct->engine_up = containers_ && containers_->up();
  } else {
    u.ct.reset();
  }
  u.out = OutputLog();
  u.err = OutputLog();
  u.after = std::move(d.after);
  u.settle = d.settle;
  u.group = std::move(d.group);
  u.oneshot = d.oneshot;
  u.autostart = d.autostart;
  u.observe = d.observe;
  set_probe_specs(u, std::move(d.probes));
}

void Supervisor::apply(std::vector<Declaration> decls, std::vector<GroupDecl> groups) {
  apply_groups(std::move(groups));
  std::map<std::string, Declaration*> wanted;
  for (auto& d : decls) wanted[d.name] = &d;

  std::vector<std::string> removed;
  for (auto& [name, u] : units_)
    if (!wanted.contains(name) && !u->remove_when_stopped) removed.push_back(name);
  for (const auto& name : removed) {
    Unit* u = find(name);
    log_.emit(Msg::WatchRemoved, name, {});
    u->respawn_with.reset();
    u->restart_when_stopped = false;
    if (u->foreign() && !u->child->stopping && !(u->m && u->m->stop_on_remove)) {
      // Someone else's process: vigil stops watching it and leaves it
      // running, as it does when it shuts down.
      release(*u, "its watch was removed from the rules");
      erase(name);
      continue;
    }
    u->remove_when_stopped = true;
    stop(*u);  // may erase u
  }
  for (auto& d : decls) {
    Unit* u = find(d.name);
    if (!u) {
      add_unit(std::move(d));
      continue;
    }
    if (u->remove_when_stopped) {
      // Removed by an earlier reload whose stop has not finished: it is
      // wanted again, with this declaration, once it is down.
      u->remove_when_stopped = false;
      u->want_running = true;
      log_.emit(Msg::WatchAdded, d.name, {{"where", d.where}});
      if (u->child || (u->m && u->m->stopping)) {
        u->respawn_with = std::make_unique<Declaration>(std::move(d));
      } else {
        replace_spec(*u, std::move(d));
        reattach(*u);
      }
      continue;
    }
    if (same_spec(*u, d)) {
      // Same process: keep it. Limits and checks take effect now.
      u->where = d.where;
      u->checks = d.checks;
      u->after = d.after;
      u->settle = d.settle;
      u->group = d.group;
      u->oneshot = d.oneshot;
      u->observe = d.observe;
      u->autostart = d.autostart;  // what it does now stays: autostart is for the load that adds it
      if (u->m) u->m->stop_on_remove = d.stop_on_remove;
      if (u->m && u->m->count != d.count && d.count) set_count_limits(*u, *d.count);
      // A changed declaration waiting for the stop to finish is this one
      // now, whole: the unit takes it when its process is down.
      if (u->respawn_with) *u->respawn_with = d;
      set_probe_specs(*u, std::move(d.probes));
      continue;
    }
    log_.emit(Msg::WatchChanged, d.name, {{"where", d.where}});
    if (u->foreign() && !u->child->stopping) {
      // Someone else's process is not stopped for a new declaration: vigil
      // lets go of it and looks again by the new match (which may find the
      // same process).
      bool was_wanted = u->want_running && !u->paused;
      release(*u, "its watch changed; looking again by its match");
      end_find(*u);
      replace_spec(*u, std::move(d));
      if (was_wanted) reattach(*u);
    } else if (u->child || (u->m && !u->m->own.empty())) {
      u->respawn_with = std::make_unique<Declaration>(std::move(d));
      stop(*u);
    } else {
      bool was_wanted = u->want_running && !u->paused && u->state != UnitState::Exhausted;
      end_find(*u);
      replace_spec(*u, std::move(d));
      if (was_wanted) reattach(*u);
    }
  }
  rebuild_dependents();
  for (const auto& name : std::exchange(to_standby_, {}))
    if (Group* g = find_group(name); g && g->decl.clustered && !g->held) {
      bool runs = false;
      for (const auto& unit : g->decl.units)
        if (Unit* u = find(unit); u && (u->child || u->script_pid())) runs = true;
      if (runs) {
        log_.emit(Msg::GroupStandby, name, {});
        stop_ordered(g->decl.units);
      }
    }
  // The kernel first, /proc second: a process that execs while the scan
  // runs is then heard of as an event instead of missed between the two
  // (and widening posts one reconciling rescan after the switch).
  update_interest();
  recover(std::exchange(to_recover_, {}));
  discover(std::exchange(to_discover_, {}));
  journal_previous_.clear();  // only the first apply after a restart re-adopts
  first_apply_ = false;
  schedule_checks();
  schedule_scan();
  update_interest();
  schedule_advance();
}

void Supervisor::open_output(Unit& u) {
  if (!u.spec.capture_output || log_dir_.empty()) return;
  auto open_one = [&](OutputLog& log, const char* stream) {
    if (log.fd() >= 0) return;
    std::string path = log_dir_ + "/" + u.name + "." + stream + ".log";
    std::string err = log.open(path, u.spec.log_max_bytes, u.spec.log_keep);
    if (!err.empty()) log_.emit(Msg::OutputLogError, u.name, {{"path", path}, {"error", err}});
    if (log.bounded()) rotation_.opened();
  };
  open_one(u.out, "stdout");
  open_one(u.err, "stderr");
}

std::string Supervisor::output_path(const Unit& u, bool stderr_stream, std::string& why) const {
  if (u.spec.argv.empty()) {
    why = "'" + u.name + "' has no captured output: vigil does not start its process (" +
          (u.m && !u.m->adopt.restart_script.empty() ? "a restart_script starts it" : "it is adopted") +
          "), so its output goes wherever its own starter sent it";
    return "";
  }
  if (!u.spec.capture_output || log_dir_.empty()) {
    why = "'" + u.name + "' has no captured output (its rule says log = false)";
    return "";
  }
  return log_dir_ + "/" + u.name + (stderr_stream ? ".stderr.log" : ".stdout.log");
}

void Supervisor::start_process(Unit& u, bool look_first) {
  cancel_timer(u);
  if (in_standby(u)) {
    // A clustered group runs only where it is held: the takeover (or an
    // operator's start of the group) starts it.
    u.want_running = false;
    if (!u.child) set_state(u, UnitState::Stopped);
    return;
  }
  if (u.observe) {
    // Observed: nothing is started, whatever asked; the process is waited
    // for by its match.
    u.want_running = true;
    if (u.child || u.finding()) return;
    if (look_first && u.kind() == Unit::Kind::Single && try_find(u, "found")) return;
    set_state(u, UnitState::Stopped);
    begin_find(u);
    return;
  }
  u.want_running = true;
  if (u.child || u.script_pid() || u.finding()) return;
  // In dependency order: it waits until what it requires is ready.
  if (u.queued) return schedule_advance();
  if (!u.after.empty() && !deps_ready(u)) {
    pull_in(u);
    log_.emit(Msg::WaitingForDeps, u.name, {{"for", join(u.waiting_for, ", ")}});
    return enqueue(u);
  }
  if (u.ct) return start_container(u);
  if (u.kind() == Unit::Kind::Members) {
    // The missing instances, all at once and as one restart (at least
    // one: an operator start of a full set adds one). Each is a member by
    // its match; the count must then recover. A restart script runs once.
    if (!u.m->adopt.restart_script.empty()) return run_restart_script(u);
    if (u.spec.argv.empty()) return;
    int64_t min = u.m->count ? u.m->count->min : 1;
    int64_t missing = std::max<int64_t>(1, min - static_cast<int64_t>(u.m->members.size()));
    std::string error;
    for (int64_t i = 0; i < missing; ++i)
      if (!spawn_member(u, error)) return restart_failed(u, error);
    set_state(u, UnitState::Starting);
    wait_for_count(u);
    return;
  }
  if (!u.spec.argv.empty()) {
    // A single watch whose process is already there (it appeared meanwhile)
    // needs no second copy.
    if (look_first && u.kind() == Unit::Kind::Single && try_find(u, "found")) return;
    spawn(u);
    return;
  }
  if (u.m && !u.m->adopt.restart_script.empty()) return run_restart_script(u);
  // Nothing vigil can start: its process may be running already (an
  // operator start, a changed match), else wait for it to appear.
  if (look_first && u.kind() == Unit::Kind::Single && try_find(u, "found")) return;
  set_state(u, UnitState::Stopped);
  begin_find(u);
}

bool Supervisor::spawn_member(Unit& u, std::string& error) {
  open_output(u);
  auto spawned = spawn_process(u.spec, SpawnIo{u.out.fd(), u.err.fd(), {}}, error);
  if (!spawned || spawned->failure) {
    error = spawned ? "cannot start: " + spawn_failure_text(*spawned->failure)
                    : "cannot start: " + error;
    return false;
  }
  pid_t pid = spawned->pid;
  u.m->own[pid] = spawned->start_time;
  std::string name = u.name;
  reaper_.track(pid, std::move(spawned->pidfd),
                [this, name, pid](const ExitStatus&) { on_own_exit(name, pid); });
  log_.emit(Msg::ProcessStarted, u.name, {{"pid", pid}});
  return true;
}

// One of the members vigil started ended (it is still an unreaped zombie:
// its group id is pinned). While a stop is in flight, what it left in its
// group goes too, and the stop is done with the last one.
void Supervisor::on_own_exit(const std::string& name, pid_t pid) {
  Unit* u = find(name);
  if (!u || !u->m || !u->m->own.erase(pid)) return;
  if (!u->m->stopping) return;
  ::kill(-pid, SIGKILL);
  if (!u->m->own.empty()) return;
  u->m->stopping = false;
  loop_.cancel(u->m->kill_timer);
  u->m->kill_timer = 0;
  finish_stopped(*u, "the processes vigil started ended");
}

// Stops the members vigil started: the stop signal to each one's process
// group, KILL to what is left after the stop timeout.
void Supervisor::stop_own(Unit& u) {
  u.m->stopping = true;
  int sig = u.spec.stop_signal;
  for (const auto& [pid, st] : u.m->own) {
    if (::kill(-pid, sig) != 0) reaper_.signal(pid, sig);
    ::kill(-pid, SIGCONT);
    log_.emit(Msg::StopRequested, u.name, {{"pid", pid}, {"how", signal_name(sig)}});
  }
  std::string name = u.name;
  double timeout = u.spec.stop_timeout;
  u.m->kill_timer = loop_.after(from_seconds(timeout), [this, name, timeout] {
    Unit* unit = find(name);
    if (!unit || !unit->m || !unit->m->stopping) return;
    unit->m->kill_timer = 0;
    for (const auto& [pid, st] : unit->m->own) {
      if (::kill(-pid, SIGKILL) != 0) reaper_.signal(pid, SIGKILL);
      log_.emit(Msg::KilledAfterGrace, name, {{"pid", pid}, {"timeout", timeout}});
    }
  });
}

bool Supervisor::spawn(Unit& u, bool quiet) {
  cancel_timer(u);
  if (u.child) return true;
  u.want_running = true;
  open_output(u);
  // A daemon that writes a pid file: its start command runs, the daemon
  // is adopted from the file (never by the standing order's quiet start).
  if (!u.spec.pidfile.empty()) return !quiet && launch_daemon(u);
  std::string error;
  std::vector<std::pair<std::string, std::string>> env = notify_env(u);
  for (auto& kv : marks(u)) env.push_back(std::move(kv));
  // The loop goes on while the child execs (the exec's result comes back
  // through execs_known): a burst of restarts, or a launch, spawns on
  // both cores instead of one exec after the other (issue 13).
  SpawnIo io{u.out.fd(), u.err.fd(), std::move(env)};
  io.wait_exec = false;
  auto spawned = spawn_process(u.spec, io, error);
  if (!spawned) {
    if (quiet) return false;  // the caller goes the usual way
    // Could not even fork: the rules decide, as for any failed start.
    ExitInfo e;
    e.error = error;
    e.wall = wall_seconds();
    u.last_exit = e;
    log_.emit(Msg::SpawnFailed, u.name, {{"error", error}});
    std::string name = u.name;
    loop_.post([this, name] {
      Unit* unit = find(name);
      if (unit && !unit->child && unit->state != UnitState::Backoff)
        on_exit(*unit, ExitStatus{127, 0, false});
    });
    return false;
  }
  Unit::Child c;
  c.pid = spawned->pid;
  c.start_time = spawned->start_time;
  c.started = MonoClock::now();
  c.failure = spawned->failure;
  c.exec_pending = spawned->exec_pending;
  c.unconfirmed = quiet;
  Unit* up = &u;
  u.child = std::move(c);
  reaper_.track(spawned->pid, std::move(spawned->pidfd),
                [this, up](const ExitStatus& st) { on_exit(*up, st); });
  // In the journal at once: a vigil killed before the exec is known must
  // find this process, not start a second one.
  record(u);
  if (u.child->exec_pending) {
    set_state(u, UnitState::Starting);
    // Told at the end of the burst, all at once (one advance of the
    // start order for a launch of 1000, not one each).
    execs_.push_back({u.name, u.child->pid, quiet});
    if (execs_.size() == 1) loop_.lag([this] { execs_known(); });
    return true;
  }
  launched(u, quiet);
  return true;
}

// The exec results of the children spawned since the last call, from
// their flights (spawn_outcome). A child that ended first was told at
// its exit (on_exit); one whose watch is gone or restarted meanwhile
// only has its flight landed.
void Supervisor::execs_known() {
  std::vector<PendingExec> list = std::move(execs_);
  execs_.clear();
  for (const PendingExec& p : list) {
    Unit* u = find(p.name);
    if (!u || !u->child || u->child->pid != p.pid || !u->child->exec_pending) {
      spawn_outcome(p.pid);
      continue;
    }
    exec_result(*u);
    launched(*u, p.quiet);
  }
}

// How the exec of u's child went, from its flight (spawn_outcome).
void Supervisor::exec_result(Unit& u) {
  u.child->exec_pending = false;
  u.child->failure = spawn_outcome(u.child->pid);
}

// What follows a start once the exec is known.
void Supervisor::launched(Unit& u, bool quiet) {
  if (u.child->failure) {
    set_state(u, UnitState::Starting);  // the child exits 127; on_exit reports it
    return;
  }
  set_state(u, UnitState::Running);
  if (!quiet) {
    log_.emit(Msg::ProcessStarted, u.name, {{"pid", u.child->pid}});
    u.armed.reset();  // asked at its exit (a launch asks nothing)
  }
  start_probes(u);
}

// The rules may answer otherwise now: each running process's order is
// asked again at its exit (not now: a reload of 1000 watches would ask
// 1000 questions).
void Supervisor::forget_orders() {
  for (auto& [name, u] : units_) u->armed.reset();
}

// The rules' standing order for the process just restarted (asked now,
// off the path of its exit).
void Supervisor::ask_arm(Unit& u) {
  u.armed = policy_ && u.kind() == Unit::Kind::Started && u.child && !u.child->failure &&
            policy_->arm(u);
}

void Supervisor::release(Unit& u, const char* reason) {
  if (!u.child) return;
  Unit::Child& c = *u.child;
  log_.emit(Msg::ProcessReleased, u.name, {{"pid", c.pid}, {"reason", reason}});
  loop_.cancel(c.kill_timer);
  if (c.watch) loop_.remove(c.watch);
  // Another watch may have adopted the same process: its record stays.
  if (auto it = adopted_.find(c.pid); it != adopted_.end() && it->second == u.name) {
    adopted_.erase(it);
    update_interest_soon();
  }
  stop_probes(u);
  u.child.reset();
  journal_.clear(u.name);
  set_state(u, UnitState::Stopped);
}

// Keeps the journal in step with the unit's process.
void Supervisor::record(Unit& u) {
  if (!u.child || u.child->failure) return journal_.clear(u.name);
  journal_.set(u.name, {u.child->pid, u.child->start_time,
                        !u.child->adopted || u.child->own_group || u.child->daemon,
                        spec_hash(u.spec)});
}

void Supervisor::on_exit(Unit& u, const ExitStatus& st) {
  // Ended before the loop learnt how its exec went: it has landed now.
  if (u.child && u.child->exec_pending) exec_result(u);
  // An exit the rules have not answered yet comes first: its restart,
  // made by their standing order, is this process.
  if (u.pending_exit) settle_exit(u);
  ExitInfo e;
  e.status = st;
  e.wall = wall_seconds();
  bool was_stopping = false;
  if (u.child) {
    Unit::Child& c = *u.child;
    e.pid = c.pid;
    e.uptime = to_seconds(MonoClock::now() - c.started);
    if (c.failure)
      e.error = spawn_failure_text(*c.failure);
    if (!c.adopted) {
      // The leader is still an unreaped zombie, so its group id is pinned:
      // sweep whatever is left of the group (KillMode=control-group).
      ::kill(-c.pid, SIGKILL);
    }
    loop_.cancel(c.kill_timer);
    if (c.watch) loop_.remove(c.watch);
    if (c.adopted && adopted_.erase(c.pid)) update_interest_soon();
    was_stopping = c.stopping;
    e.killed = std::move(c.killed);
    stop_probes(u);
    u.child.reset();
    journal_.clear(u.name);
  } else if (u.last_exit) {
    e = *u.last_exit;  // spawn failed before there was a child
  }
  u.last_exit = e;
  if (restart_armed(u, e, was_stopping)) return;
  finish_exit(u, e, was_stopping);
}

// Puts an end (an exit, a failed start) to the rules. A decision made
// before a later part of the rules failed stands; with none at all the
// process is not left dead: it is restarted after a pause (VGL0120).
void Supervisor::decide_exit(Unit& u, const ExitInfo& e) {
  uint64_t before = u.decisions;
  if (policy_) policy_->on_exit(u, e);
  if (u.decisions == before) {
    log_.emit(Msg::PolicyFallback, u.name, {{"delay", 1.0}});
    restart_later(u, 1.0);
  }
}

// A start that failed before there was a process: the watch's last exit.
ExitInfo Supervisor::record_failed_start(Unit& u, const std::string& error) {
  ExitInfo e;
  e.error = error;
  e.wall = wall_seconds();
  e.pid = u.last_exit ? u.last_exit->pid : 0;
  u.last_exit = e;
  return e;
}

nlohmann::json Supervisor::exit_fields(const Unit& u, const ExitInfo& e) const {
  nlohmann::json fields = {{"pid", e.pid}, {"how", e.describe()}, {"uptime", e.uptime}};
  nlohmann::json ej = e.to_json();
  fields["code"] = ej["code"];
  fields["signal"] = ej["signal"];
  fields["restarts"] = u.restarts;
  return fields;
}

void Supervisor::finish_exit(Unit& u, const ExitInfo& e, bool was_stopping) {
  nlohmann::json fields = exit_fields(u, e);
  if (u.queued || u.stop_queued) {
    // Going down anyway, in order: restarted once, with the others.
    if (e.pid && !was_stopping) log_.emit(Msg::ProcessExited, u.name, fields);
    finish_stopped(u, e.pid ? e.describe() : "not running");
    return;
  }
  if (was_stopping || !u.want_running) {
    finish_stopped(u, e.pid ? e.describe() : "not running");
    return;
  }
  if (!e.error.empty() && e.pid) {
    fields["error"] = e.error;
    log_.emit(Msg::SpawnFailed, u.name, fields);
  } else if (e.pid) {
    log_.emit(Msg::ProcessExited, u.name, fields);
  }
  if (u.paused) {
    set_state(u, UnitState::Stopped);
    log_.emit(Msg::DeathWhilePaused, u.name, {{"pid", e.pid}});
    // An adopted process may come back by itself meanwhile.
    if (u.kind() == Unit::Kind::Single) begin_find(u);
    return;
  }
  decide_exit(u, e);
  // The rules' last decision was a restart at once: it starts now, inside
  // this callback, instead of from its timer on the way round the loop.
  // What the exit wrote (the file sinks' lines, posted) then goes out
  // after the clone, not before it (issue 13: the restart path).
  if (u.timer && u.timer == u.at_once && loop_.pending(u.timer) && !u.paused && u.want_running)
    start_process(u);
}

// The rules said, when this process started, that its exit is answered
// by a restart at once whatever the exit: the replacement starts now,
// before anything else is done about the exit, and the exit is written
// up and put to the rules once the burst is over (EventLoop::lag), so
// that 100 processes killed at once are all running again before the
// first exit's events and policy call (issue 13). The rules' answer then
// confirms the restart (restart_later with no delay), or overrules it.
bool Supervisor::restart_armed(Unit& u, const ExitInfo& e, bool was_stopping) {
  std::optional<bool> armed = std::exchange(u.armed, std::nullopt);
  if (!policy_ || was_stopping || !u.want_running || u.paused || u.queued || u.stop_queued ||
      !e.pid || !e.error.empty() || u.kind() != Unit::Kind::Started || u.timer)
    return false;
  // Not asked since its start (a launch, a reload): asked now, one
  // short question instead of the whole exit policy before the spawn.
  if (!(armed ? *armed : policy_->arm(u)) || !spawn(u, true)) return false;
  u.pending_exit = std::make_unique<ExitInfo>(e);
  std::string name = u.name;
  loop_.lag([this, name] {
    if (Unit* unit = find(name); unit && unit->pending_exit) settle_exit(*unit);
  });
  return true;
}

void Supervisor::settle_exit(Unit& u) {
  ExitInfo e = std::move(*u.pending_exit);
  u.pending_exit.reset();
  bool ask = u.child && u.child->unconfirmed && u.want_running && !u.paused && !u.queued &&
             !u.stop_queued && policy_;
  if (ask)
    finish_exit(u, e, false);
  else  // stopped, paused or restarted in order meanwhile: nothing left to decide
    log_.emit(Msg::ProcessExited, u.name, exit_fields(u, e));
  // The restart was made: whatever the rules did, a replacement still
  // unanswered stands, counted.
  confirm_armed(u);
  report_armed(u);
}

// The standing order's restart stands: counted as restart_later counts
// one. Its start is reported once the rules have answered (report_armed),
// so the log reads exit, decision, start.
void Supervisor::confirm_armed(Unit& u) {
  if (!u.child || !u.child->unconfirmed) return;
  u.child->unconfirmed = false;
  u.child->unreported = true;
  ++u.decisions;
  double uptime = u.last_exit ? u.last_exit->uptime : 0;
  u.ledger.add(u.ledger.history, mono_seconds(MonoClock::now()), uptime);
  ++u.restarts;
}

void Supervisor::report_armed(Unit& u) {
  if (!u.child || !u.child->unreported) return;
  u.child->unreported = false;
  if (u.child->failure) return;  // it exits 127: on_exit reports it
  log_.emit(Msg::ProcessStarted, u.name, {{"pid", u.child->pid}});
  ask_arm(u);
}

// Called by every decision but a restart at once: if the standing order
// started a replacement the rules have not answered for, they answered
// otherwise. The replacement, a moment old, is killed (its exit is no
// one's concern) and the answer is carried out as if it had never started.
void Supervisor::overrule(Unit& u) {
  if (!u.child || !u.child->unconfirmed) return;
  Unit::Child& c = *u.child;
  log_.emit(Msg::StandingOrderOverruled, u.name,
            {{"pid", c.pid}, {"was", u.last_exit ? u.last_exit->pid : 0}});
  signal_process(u, SIGKILL);
  reaper_.ignore(c.pid);
  loop_.cancel(c.kill_timer);
  stop_probes(u);
  u.child.reset();
  journal_.clear(u.name);
  set_state(u, UnitState::Stopped);
}

void Supervisor::restart_later(Unit& u, double delay) {
  if (delay <= 0 && u.child && u.child->unconfirmed)
    return confirm_armed(u);  // what the standing order did
  overrule(u);
  ++u.decisions;
  double uptime = u.last_exit ? u.last_exit->uptime : 0;
  u.ledger.add(u.ledger.history, mono_seconds(MonoClock::now()), uptime);
  ++u.restarts;
  cancel_timer(u);
  end_find(u);
  std::string name = u.name;
  auto go = [this, name] {
    Unit* unit = find(name);
    if (!unit) return;
    unit->timer = 0;
    if (!unit->paused && unit->want_running) start_process(*unit);
  };
  // Even "at once" is the unit's timer: a later decision (the rules may
  // make a second one) cancels it instead of both starting the process.
  set_state(u, delay <= 0 ? UnitState::Starting : UnitState::Backoff);
  u.timer = loop_.after(from_seconds(std::max(0.0, delay)), go);
  u.at_once = delay <= 0 ? u.timer : 0;
}

void Supervisor::exhaust(Unit& u, std::optional<double> rearm_after) {
  overrule(u);
  ++u.decisions;
  cancel_timer(u);
  end_find(u);
  set_state(u, UnitState::Exhausted);
  if (!rearm_after) return;
  std::string name = u.name;
  u.timer = loop_.after(from_seconds(*rearm_after), [this, name] {
    Unit* unit = find(name);
    if (!unit || unit->state != UnitState::Exhausted) return;
    unit->timer = 0;
    unit->ledger.clear();
    log_.emit(Msg::Rearmed, name, {{"reason", "cool-down"}});
    // Paused: it is no longer exhausted, so resume() starts it.
    set_state(*unit, UnitState::Stopped);
    if (!unit->paused && unit->want_running) start_process(*unit);
  });
}

void Supervisor::lose(Unit& u) {
  overrule(u);
  ++u.decisions;
  cancel_timer(u);
  set_state(u, UnitState::Stopped);
  begin_find(u);
}

void Supervisor::finish(Unit& u, bool ok, const std::string& why) {
  overrule(u);
  ++u.decisions;
  cancel_timer(u);
  u.want_running = false;
  u.done_ok = ok;
  set_state(u, UnitState::Done);
  nlohmann::json fields = {{"how", u.last_exit ? u.last_exit->describe() : "not running"},
                           {"why", why}};
  if (u.oneshot) fields["oneshot"] = true;
  log_.emit(ok ? Msg::ProcessDone : Msg::ProcessDoneFailed, u.name, fields);
  // A oneshot that succeeded is what its dependents were waiting for.
  if (ok && u.oneshot) schedule_advance();
}

void Supervisor::start(Unit& u, const char* reason) {
  u.want_running = true;
  u.held = false;
  if (u.child) return;
  // An operator start is a fresh start: the budget is re-armed.
  if (u.state == UnitState::Exhausted) log_.emit(Msg::Rearmed, u.name, {{"reason", reason}});
  u.ledger.clear();
  if (!u.paused) {
    end_find(u);
    start_process(u);
  }
}

void Supervisor::signal_process(Unit& u, int sig) {
  if (u.ct) return signal_container(u, sig);
  Unit::Child& c = *u.child;
  if (!c.adopted) {
    // The group first (pinned while the leader is unreaped); the leader
    // alone if it has not reached setsid() yet.
    if (::kill(-c.pid, sig) != 0) reaper_.signal(c.pid, sig);
    return;
  }
  // Not our child: the pidfd pins its identity. Its group only when vigil
  // made it (and only while the leader is alive, which pins the group id).
  // With kill = "tree", its workers too (found before the master is
  // signalled: once it is gone, its children are someone else's).
  std::vector<Relative> tree;
  if (!c.own_group && u.m && u.m->adopt.kill_tree) tree = tree_of(c.pid);
  if (pidfd_send_signal(c.pidfd.get(), sig, nullptr, 0) == 0 && c.own_group) ::kill(-c.pid, sig);
  signal_relatives(tree, sig);
}

std::vector<pid_t> Supervisor::send_signal(Unit& u, int sig, std::string& error) {
  std::vector<pid_t> sent;
  int err = 0;
  if (u.kind() == Unit::Kind::Members) {
    for (const auto& [pid, start_time] : u.m->members) {
      Fd fd = pin({pid, start_time});
      if (fd && pidfd_send_signal(fd.get(), sig, nullptr, 0) == 0)
        sent.push_back(pid);
      else
        err = fd ? errno : ESRCH;
    }
    if (sent.empty())
      error = u.m->members.empty() ? "'" + u.name + "' has no process to signal (no member runs)"
                                   : "cannot signal the members of '" + u.name + "': " +
                                         errno_text(err);
    return sent;
  }
  if (!u.child || u.child->failure) {
    error = "'" + u.name + "' has no process to signal (it is " +
            (u.paused ? "paused" : unit_state_name(u.state)) + ")";
    return sent;
  }
  const Unit::Child& c = *u.child;
  // Vigil's own child: the reaper holds its pidfd; an adopted process is
  // watched through a pidfd of its own.
  bool ok = c.adopted ? pidfd_send_signal(c.pidfd.get(), sig, nullptr, 0) == 0
                      : reaper_.signal(c.pid, sig);
  if (!ok) {
    error = "cannot signal '" + u.name + "' (pid " + std::to_string(c.pid) +
            "): " + (c.adopted || reaper_.tracked(c.pid) ? errno_text(errno) : "it has ended");
    return sent;
  }
  sent.push_back(c.pid);
  return sent;
}

void Supervisor::begin_stop(Unit& u) {
  if (u.ct) return stop_container(u);
  Unit::Child& c = *u.child;
  c.stopping = true;
  pid_t pid = c.pid;
  bool by_command = false;
  if (!u.spec.stop_command.empty()) {
    std::string error;
    // Like systemd's ExecStop, the command learns whom to stop.
    // It runs to its end, which may be after the process's (pg_ctl stop,
    // `kill $MAINPID; while kill -0 $MAINPID; ...` wait for it to go), and
    // no longer than the stop timeout; a failure is only what it says.
    std::string name = u.name;
    double timeout = u.spec.stop_timeout;
    auto cpid = run_command(
        u.spec.stop_command, {{"MAINPID", std::to_string(pid)}, {"VIGIL_WATCH", u.name}}, timeout,
        [this, name, timeout](const ExitStatus& st, bool timed_out) {
          if (timed_out)
            log_.emit(Msg::StopCommandFailed, name,
                      {{"error", "still running after the stop timeout (" + seconds_text(timeout) +
                                     "); killed"}});
          else if (st.code != 0 || st.signal)
            log_.emit(Msg::StopCommandFailed, name,
                      {{"error", st.signal ? "killed by " + signal_name(st.signal)
                                           : "exited " + std::to_string(st.code)}});
        },
        error);
    if (cpid) {
      log_.emit(Msg::StopRequested, u.name, {{"pid", pid}, {"how", "stop command"}});
      by_command = true;
    } else {
      log_.emit(Msg::StopCommandFailed, u.name, {{"error", error + "; sending the stop signal"}});
    }
  }
  if (!by_command) {
    signal_process(u, u.spec.stop_signal);
    signal_process(u, SIGCONT);
    log_.emit(Msg::StopRequested, u.name, {{"pid", pid}, {"how", signal_name(u.spec.stop_signal)}});
  }
  kill_after(u, u.spec.stop_timeout);
}

void Supervisor::kill_after(Unit& u, double after) {
  Unit::Child& c = *u.child;
  loop_.cancel(c.kill_timer);
  c.kill_timer = loop_.after(from_seconds(after), [this, name = u.name, pid = c.pid, after] {
    Unit* unit = find(name);
    if (!unit || !unit->child || unit->child->pid != pid) return;
    unit->child->kill_timer = 0;
    if (unit->ct)
      pidfd_send_signal(unit->child->pidfd.get(), SIGKILL, nullptr, 0);
    else
      signal_process(*unit, SIGKILL);
    log_.emit(Msg::KilledAfterGrace, name, {{"pid", pid}, {"timeout", after}});
  });
}

bool Supervisor::kill_process(Unit& u, int signal, const std::string& reason) {
  if (!u.child) return false;
  log_.emit(Msg::ProcessKilled, u.name,
            {{"pid", u.child->pid}, {"signal", signal_name(signal)}, {"reason", reason}});
  signal_process(u, signal);
  // Signals that ask a program to do something (continue, reload, rotate
  // its logs) are just sent; the others are meant to end it.
  bool ends_it = signal != SIGCONT && signal != SIGSTOP && signal != SIGTSTP && signal != SIGHUP &&
                 signal != SIGUSR1 && signal != SIGUSR2 && signal != SIGWINCH;
  if (!ends_it) return true;
  if (u.child->killed.empty()) u.child->killed = reason.empty() ? "killed by vigil" : reason;
  // A stopped (or frozen) process acts on the signal only once continued.
  signal_process(u, SIGCONT);
  if (signal != SIGKILL) {
    // Whatever it does with the signal, it is gone after the grace time.
    std::string name = u.name;
    pid_t pid = u.child->pid;
    double timeout = u.spec.stop_timeout;
    loop_.cancel(u.child->kill_timer);
    u.child->kill_timer = loop_.after(from_seconds(timeout), [this, name, pid, timeout] {
      Unit* unit = find(name);
      if (!unit || !unit->child || unit->child->pid != pid) return;
      unit->child->kill_timer = 0;
      signal_process(*unit, SIGKILL);
      log_.emit(Msg::KilledAfterGrace, name, {{"pid", pid}, {"timeout", timeout}});
    });
  }
  return true;
}

void Supervisor::stop(Unit& u, std::function<void()> done) {
  // Stopped by an operator (or a reload): no longer part of an ordered
  // restart that would start it again, nor restarted by the operator,
  // nor started by what requires it.
  u.restart_when_stopped = false;
  u.held = false;
  if (u.queued) {
    u.queued = false;
    unqueue(u.name);
  }
  halt(u, std::move(done));
}

void Supervisor::halt(Unit& u, std::function<void()> done) {
  u.want_running = false;
  cancel_timer(u);
  end_find(u);
  if (u.launch) cancel_launch(u);
  if (u.script_pid() > 0) {
    // A restart script in flight has nothing to restart any more.
    ::kill(-u.script_pid(), SIGKILL);
  }
  if (!u.child && u.ct && u.ct->counted() && (u.ct->stops || stop_counted(u))) {
    // A counted container watch: what vigil started for it goes.
    if (done) u.stop_waiters.push_back(std::move(done));
    return;
  }
  if (!u.child && u.m && !u.m->own.empty()) {
    // A set: what vigil started for it goes; what it found stays.
    if (done) u.stop_waiters.push_back(std::move(done));
    if (!u.m->stopping) stop_own(u);
    return;
  }
  if (!u.child) {
    bool was_stopped = u.state == UnitState::Stopped;
    set_state(u, UnitState::Stopped);
    if (!was_stopped) log_.emit(Msg::Stopped, u.name, {{"how", "not running"}});
    if (done) done();
    if (u.remove_when_stopped) erase(u.name);
    return;
  }
  if (u.observe && !u.child->stopping) {
    // Observed: vigil lets go of the process instead of stopping it.
    release(u, "mode = \"observe\": let go, not stopped");
    if (done) done();
    if (u.remove_when_stopped) erase(u.name);
    return;
  }
  if (done) u.stop_waiters.push_back(std::move(done));
  if (!u.child->stopping) begin_stop(u);
}

void Supervisor::finish_stopped(Unit& u, const std::string& how) {
  set_state(u, u.queued ? UnitState::Waiting : UnitState::Stopped);
  log_.emit(Msg::Stopped, u.name, {{"how", how}});
  auto waiters = std::move(u.stop_waiters);
  u.stop_waiters.clear();
  if (u.remove_when_stopped) {
    std::string name = u.name;
    erase(name);  // u is gone after this
    for (auto& w : waiters) w();
    return;
  }
  if (u.respawn_with) {
    auto d = std::move(u.respawn_with);
    u.restart_when_stopped = false;
    replace_spec(u, std::move(*d));
    u.want_running = true;
    if (!u.paused) start_process(u);
  } else if (std::exchange(u.restart_when_stopped, false)) {
    u.want_running = true;
    if (!u.paused) start_process(u);
  }
  for (auto& w : waiters) w();
}

void Supervisor::restart(Unit& u, std::function<void()> done) {
  u.ledger.history.clear();
  if (!u.child && !(u.m && !u.m->own.empty())) {
    start(u, "operator restart");
    if (done) done();
    return;
  }
  // Restart with the same declaration, the unit's own: stop, then start
  // it again. (A changed declaration already waiting, respawn_with, is
  // taken instead.)
  if (u.queued) {
    u.queued = false;
    unqueue(u.name);
  }
  u.restart_when_stopped = true;
  halt(u, std::move(done));
}

void Supervisor::pause(Unit& u) {
  if (u.paused) return;
  u.paused = true;
  if (u.state == UnitState::Backoff) {
    cancel_timer(u);
    set_state(u, UnitState::Stopped);
  }
  changed();
  log_.emit(Msg::Paused, u.name, {});
}

void Supervisor::resume(Unit& u) {
  if (!u.paused) return;
  u.paused = false;
  changed();
  log_.emit(Msg::Resumed, u.name, {});
  if (u.want_running && !u.child && u.state != UnitState::Exhausted &&
      u.kind() != Unit::Kind::Members)
    start_process(u);
}

void Supervisor::stop_all(std::function<void()> done) {
  // Dependents first, as for a group stop.
  std::vector<std::string> names;
  for (auto& [name, u] : units_) {
    if (u->foreign()) {
      // Someone else's process: vigil going away does not stop it.
      cancel_timer(*u);
      end_find(*u);
      continue;
    }
    names.push_back(name);
  }
  stop_ordered(names, std::move(done));
}

void Supervisor::detach_all() {
  // The journal already names every process; the next vigil adopts them.
  for (auto& [name, u] : units_) {
    cancel_timer(*u);
    end_find(*u);
    stop_probes(*u);
    if (u->child) loop_.cancel(u->child->kill_timer);
  }
}

std::optional<pid_t> Supervisor::run_command(
    const std::vector<std::string>& argv,
    const std::vector<std::pair<std::string, std::string>>& env, double timeout, CommandDone done,
    std::string& error, bool sweep, int output_fd) {
  auto cmd = spawn_command(argv, error, env, output_fd);
  if (!cmd) return std::nullopt;
  pid_t pid = cmd->pid;
  commands_.push_back(pid);
  auto timed_out = std::make_shared<bool>(false);
  TimerId timer = loop_.after(from_seconds(timeout), [this, pid, timed_out] {
    *timed_out = true;
    if (::kill(-pid, SIGKILL) != 0) reaper_.signal(pid, SIGKILL);
  });
  reaper_.track(pid, std::move(cmd->pidfd),
                [this, pid, timer, timed_out, sweep, done = std::move(done)](const ExitStatus& st) {
                  loop_.cancel(timer);
                  std::erase(commands_, pid);
                  if (sweep) ::kill(-pid, SIGKILL);  // the leader is still a zombie: group pinned
                  if (done) done(st, *timed_out);
                });
  return pid;
}

void Supervisor::rotate_logs() {
  for (auto& [name, u] : units_) {
    for (OutputLog* log : {&u->out, &u->err}) {
      if (!rotation_.take(*log)) continue;  // not written since its last look
      std::string err = log->rotate_if_needed();
      if (!err.empty())
        log_.emit(Msg::OutputLogError, name, {{"path", log->path()}, {"error", err}});
    }
  }
  rotation_.passed();
}

void Supervisor::erase(std::string name) {
  auto it = units_.find(name);
  if (it == units_.end()) return;
  Unit& u = *it->second;
  // An exit the rules had not answered yet is still written up.
  if (u.pending_exit) log_.emit(Msg::ProcessExited, name, exit_fields(u, *u.pending_exit));
  cancel_timer(u);
  end_find(u);
  stop_probes(u);
  journal_.clear(name);
  units_.erase(it);
  if (matching_.erase(name)) update_interest_soon();
  unqueue(name);
}

}  // namespace vigil

// Supervisor, part (containers): container watches (`container "web" {
// match = ... }`). A container is a unit like any other: its budget,
// backoff, ladder and group order are the rules' and the supervisor's as
// for a process. Only three things differ, and each is branched here once:
//   start  the engine finds the container (by the match) and starts it,
//          then its main process (State.Pid, a host pid) is adopted by
//          pidfd through Supervisor::adopt, so its death is seen at once
//          and goes the adopted-process exit path (status from the proc
//          connector; the engine's `die` event later adds its exit code);
//   stop   stop?t= through the engine (the process is foreign: vigil never
//          signals it for its own reasons);
//   news   the engine's events and resyncs: a restart the engine made
//          itself (restart policy other than `no`) is adopted and counted,
//          never made twice; a removed container is an event, and the
//          rules decide at the next start.
#include <signal.h>

#include <set>

#include "host/core/clock.hpp"
#include "host/core/pidfd.hpp"
#include "host/core/strings.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {

std::string short_id(const std::string& id) {
  std::string s = id.rfind("sha256:", 0) == 0 ? id.substr(7) : id;
  return s.substr(0, 12);
}

std::string label(const ContainerInfo& c) {
  if (c.name.empty()) return short_id(c.id);
  return c.name + " (" + short_id(c.id) + ")";
}

}  // namespace

std::string describe_container_match(const ContainerMatch& m) {
  std::vector<std::string> parts;
  if (!m.name.empty()) parts.push_back("name=" + m.name);
  if (!m.id.empty()) parts.push_back("id=" + m.id);
  if (!m.image.empty()) parts.push_back("image=" + m.image);
  if (!m.compose_project.empty()) parts.push_back("compose_project=" + m.compose_project);
  if (!m.compose_service.empty()) parts.push_back("service=" + m.compose_service);
  for (const auto& [k, v] : m.labels) parts.push_back("label " + k + (v.empty() ? "" : "=" + v));
  return join(parts, ", ");
}

// The engine's own state, once per change (the engine reports only
// changes): an operator sees when container watches went blind and when
// they could see again.
void ContainerListener::engine_up(const std::string& version) {
  s_.log_.emit(Msg::EngineUp, "",
               {{"engine", s_.containers_ ? s_.containers_->config().host : ""}, {"version", version}});
  s_.on_engine_up();
}

void ContainerListener::engine_down(const std::string& why) {
  s_.log_.emit(Msg::EngineDown, "",
               {{"engine", s_.containers_ ? s_.containers_->config().host : ""}, {"error", why}});
  s_.engine_down_seen_ = true;
  for (auto& [name, u] : s_.units_)
    if (u->ct) u->ct->engine_up = false;
  s_.changed();
}

void ContainerListener::container_event(const ContainerEvent& ev) { s_.on_container_event(ev); }

void ContainerListener::resync(const std::vector<ContainerInfo>& all) { s_.on_resync(all); }

template <class F>
auto Supervisor::on_unit(const std::string& name, F fn) {
  return [this, alive = std::weak_ptr<bool>(alive_), name, fn = std::move(fn)](auto&&... args) {
    if (alive.expired()) return;
    Unit* u = find(name);
    if (!u || !u->ct) return;
    fn(*u, std::forward<decltype(args)>(args)...);
  };
}

void Supervisor::set_containers(ContainerEngine* engine) {
  if (containers_ == engine) return;
  if (containers_) containers_->set_listener(nullptr);
  containers_ = engine;
  for (auto& [name, u] : units_)
    if (u->ct) u->ct->engine_up = engine && engine->up();
  if (engine) engine->set_listener(&container_listener_);
}

Unit* Supervisor::container_unit(const std::string& id) {
  if (id.empty()) return nullptr;
  for (auto& [name, u] : units_)
    if (u->ct && u->ct->id == id) return u.get();
  return nullptr;
}

// The one start of a container watch (start_process branches here).
void Supervisor::start_container(Unit& u) {
  Unit::Containing& ct = *u.ct;
  if (ct.busy || ct.grace_timer) return;
  if (!containers_ || !containers_->up()) {
    // Not a failed start: nothing is known of the container. The watch
    // waits for the engine (its budget untouched) and starts once it answers.
    // Not said while the first connection is still being made.
    if (!ct.engine_wait && (!containers_ || engine_down_seen_))
      log_.emit(Msg::ContainerNoEngine, u.name,
                {{"why", containers_ ? "the engine at " + containers_->config().host + " is down"
                                     : std::string("no engine configured")}});
    ct.engine_wait = true;
    set_state(u, UnitState::Stopped);
    return;
  }
  ct.engine_wait = false;
  if (ct.counted()) return start_counted(u);
  ct.busy = true;
  set_state(u, UnitState::Starting);
  containers_->find(
      ct.decl.match, true,
      on_unit(u.name, [this](Unit& unit, const std::string& error, std::vector<ContainerInfo> found) {
        unit.ct->busy = false;
        if (unit.child || !unit.want_running || unit.paused) return;
        if (!error.empty()) return restart_failed(unit, "cannot find the container: " + error);
        // The one it had, else the newest running, else the newest.
        const ContainerInfo* pick = nullptr;
        for (const auto& c : found)
          if (c.id == unit.ct->id) pick = &c;
        for (int pass = 0; pass < 2 && !pick; ++pass)
          for (const auto& c : found)
            if ((pass == 1 || c.running) && (!pick || c.created > pick->created)) pick = &c;
        if (!pick) {
          std::string what = describe_container_match(unit.ct->decl.match);
          // It had one and it is gone (removed by hand): a failed start,
          // which the rules answer. Never had one: a warning, and it waits.
          if (unit.ct->seen) return restart_failed(unit, "no container matches (" + what + ")");
          log_.emit(Msg::ContainerNoMatch, unit.name, {{"match", what}});
          set_state(unit, UnitState::Stopped);
          return;
        }
        start_found(unit, *pick);
      }));
}

void Supervisor::start_found(Unit& u, const ContainerInfo& info) {
  Unit::Containing& ct = *u.ct;
  if (ct.id != info.id) ct.taken_over = false;
  ct.id = info.id;
  ct.seen = true;
  ct.info = info;
  if (info.running && info.pid > 0) {
    // Right after a death the engine may still say "running" with the
    // dead pid (its conmon has not reported yet): asked again shortly,
    // not taken as a failed start.
    ProcStat st;
    bool dead = (u.last_exit && u.last_exit->pid == info.pid) || !reader_.stat(info.pid, st) ||
                st.dead();
    if (dead && ct.stale_tries < 100) {
      ++ct.stale_tries;
      ct.busy = true;
      loop_.after(std::chrono::milliseconds(50), on_unit(u.name, [this](Unit& unit) {
        unit.ct->busy = false;
        if (!unit.child && unit.want_running && !unit.paused) start_container(unit);
      }));
      return;
    }
    ct.stale_tries = 0;
    if (ct.observes() && !ct.stopped_by_vigil && u.last_exit && u.last_exit->pid) {
      // Running again with a new process after a death: the engine's
      // restart (its event may still be on the way).
      ++ct.engine_restarts;
      log_.emit(Msg::ContainerEngineRestart, u.name,
                {{"container", label(info)}, {"policy", info.restart_policy}});
      return adopt_container(u, info, "restarted by the engine");
    }
    return adopt_container(u, info, "found running");
  }
  ct.stale_tries = 0;
  if (ct.observes() && !ct.stopped_by_vigil && u.last_exit && u.last_exit->pid) {
    // The engine restarts it itself: its start event adopts the new
    // process. Vigil starts it only if the engine has not within the grace.
    ct.grace_timer = loop_.after(from_seconds(ct.decl.engine_grace), on_unit(u.name, [this](Unit& unit) {
      unit.ct->grace_timer = 0;
      unit.ct->stopped_by_vigil = true;  // the engine did not: vigil does
      if (!unit.child && unit.want_running && !unit.paused) start_container(unit);
    }));
    return;
  }
  log_.emit(Msg::ContainerStarting, u.name, {{"container", label(info)}, {"how", "starting"}});
  ct.busy = true;
  containers_->start(info.id, on_unit(u.name, [this](Unit& unit, const std::string& error) {
    unit.ct->busy = false;
    if (unit.child || !unit.want_running) return;
    if (!error.empty()) {
      log_.emit(Msg::ContainerCallFailed, unit.name,
                {{"call", "start"}, {"container", label(unit.ct->info)}, {"error", error}});
      return restart_failed(unit, "the engine could not start the container: " + error);
    }
    unit.ct->busy = true;
    containers_->inspect(unit.ct->id, on_unit(unit.name, [this](Unit& un, const std::string& err,
                                                                const ContainerInfo& now) {
      un.ct->busy = false;
      if (un.child || !un.want_running) return;
      if (!err.empty()) return restart_failed(un, "cannot inspect the container: " + err);
      if (!now.running || now.pid <= 0) {
        un.ct->info = now;
        return restart_failed(un, "the container exited at once (code " +
                                      std::to_string(now.exit_code) + ")");
      }
      adopt_container(un, now, "started");
    }));
  }));
}

void Supervisor::adopt_container(Unit& u, const ContainerInfo& info, const char* how) {
  Unit::Containing& ct = *u.ct;
  if (u.child) return;
  if (ct.grace_timer) loop_.cancel(ct.grace_timer);
  ct.grace_timer = 0;
  ct.id = info.id;
  ct.info = info;
  ct.seen = true;
  ct.stopped_by_vigil = false;
  ProcStat st;
  std::string why = std::string(how) + ": container " + label(info);
  if (!reader_.stat(info.pid, st) || st.dead() || !adopt(u, info.pid, st.start_time, false, why.c_str()))
    return restart_failed(u, "the container's main process (pid " + std::to_string(info.pid) +
                                 ") ended before vigil could watch it");
  if (ct.decl.take_over && !ct.taken_over && !info.restart_policy.empty() &&
      info.restart_policy != "no" && containers_) {
    ct.taken_over = true;
    std::string policy = info.restart_policy;
    containers_->set_restart_policy(
        info.id, "no", on_unit(u.name, [this, policy](Unit& unit, const std::string& error) {
          if (!error.empty()) {
            unit.ct->taken_over = false;
            log_.emit(Msg::ContainerCallFailed, unit.name,
                      {{"call", "update (restart policy)"},
                       {"container", label(unit.ct->info)},
                       {"error", error}});
            return;
          }
          unit.ct->info.restart_policy = "no";
          log_.emit(Msg::ContainerTakenOver, unit.name,
                    {{"container", label(unit.ct->info)}, {"policy", policy}});
        }));
  }
}

// begin_stop branches here: stop?t= through the engine; the death is seen
// by the pidfd as always. If the engine cannot (it is gone), the stop
// signal goes through the pidfd instead: an operator's stop is kept.
void Supervisor::stop_container(Unit& u) {
  Unit::Child& c = *u.child;
  Unit::Containing& ct = *u.ct;
  c.stopping = true;
  ct.stopped_by_vigil = true;
  if (ct.grace_timer) loop_.cancel(ct.grace_timer);
  ct.grace_timer = 0;
  double timeout = ct.decl.stop_timeout;
  pid_t pid = c.pid;
  log_.emit(Msg::StopRequested, u.name,
            {{"pid", pid}, {"how", "engine stop (t=" + seconds_text(timeout) + ")"}});
  if (containers_ && containers_->up() && !ct.id.empty()) {
    containers_->stop(ct.id, timeout, on_unit(u.name, [this, pid](Unit& unit, const std::string& error) {
      if (error.empty() || !unit.child || unit.child->pid != pid) return;
      log_.emit(Msg::ContainerCallFailed, unit.name,
                {{"call", "stop"}, {"container", label(unit.ct->info)}, {"error", error}});
      pidfd_send_signal(unit.child->pidfd.get(), SIGTERM, nullptr, 0);
    }));
  } else {
    pidfd_send_signal(c.pidfd.get(), SIGTERM, nullptr, 0);
  }
  // The engine KILLs after `timeout`; if the process outlives that by far,
  // vigil does (the engine may have gone meanwhile).
  kill_after(u, timeout + 5);
}

// signal_process branches here (a hang's kill, KILL after a grace): the
// engine's kill, or the pidfd when the engine does not answer.
void Supervisor::signal_container(Unit& u, int sig) {
  if (!u.child) return;
  if (!containers_ || !containers_->up() || u.ct->id.empty()) {
    pidfd_send_signal(u.child->pidfd.get(), sig, nullptr, 0);
    return;
  }
  pid_t pid = u.child->pid;
  containers_->kill(u.ct->id, signal_name(sig),
                    on_unit(u.name, [this, pid, sig](Unit& unit, const std::string& error) {
                      if (error.empty() || !unit.child || unit.child->pid != pid) return;
                      log_.emit(Msg::ContainerCallFailed, unit.name,
                                {{"call", "kill"}, {"container", label(unit.ct->info)}, {"error", error}});
                      pidfd_send_signal(unit.child->pidfd.get(), sig, nullptr, 0);
                    }));
}

// An exec probe (or the image's HEALTHCHECK, run by vigil: the engine's
// own health timers do not run without systemd). Its answer goes the
// probes' one threshold path (probe_answer), so `fails` in a row make the
// container hung and the rules decide as for a process.
void Supervisor::run_exec_probe(Unit& u, size_t i) {
  Probing& p = *u.probing;
  const ProbeSpec& s = p.specs[i];
  Probing::Run& r = p.runs[i];
  ProbeResult fail;
  if (!u.ct || u.ct->id.empty() || !containers_) {
    fail.reason = "no container engine to run the check in";
    return probe_result(u, i, fail);
  }
  // A container being stopped takes no exec (the engine refuses it), and
  // none runs while the engine does not answer: neither is a failure of
  // its health (a reconnect must not kill a healthy container).
  if ((u.child && u.child->stopping) || !containers_->up())
    return schedule_probe(u, i, from_seconds(s.every));
  std::vector<std::string> argv = s.command;
  if (s.healthcheck) {
    const auto& hc = u.ct->info.healthcheck;
    if (hc.empty() || hc[0] == "NONE") {
      fail.reason = "the image has no HEALTHCHECK";
      return probe_result(u, i, fail);
    }
    if (hc[0] == "CMD-SHELL")
      argv = {"/bin/sh", "-c", hc.size() > 1 ? hc[1] : std::string()};
    else if (hc[0] == "CMD")
      argv.assign(hc.begin() + 1, hc.end());
    else
      argv = hc;
  }
  r.token = next_token_++;
  uint64_t token = r.token, gen = p.generation;
  containers_->exec(u.ct->id, argv, s.timeout,
                    [this, alive = std::weak_ptr<bool>(alive_), name = u.name, i, gen,
                     token](const ExecResult& x) {
                      if (alive.expired()) return;
                      Unit* unit = find(name);
                      if (!unit || !unit->probing || unit->probing->generation != gen) return;
                      ProbeResult res;
                      res.elapsed = x.seconds;
                      if (!x.error.empty()) {
                        res.reason = x.error;
                      } else if (x.exit_code != 0) {
                        std::string said = x.err.empty() ? x.out : x.err;
                        if (size_t nl = said.find('\n'); nl != std::string::npos) said.resize(nl);
                        res.reason = "exited " + std::to_string(x.exit_code) +
                                     (said.empty() ? "" : ": " + said);
                        res.excerpt = (x.out + x.err).substr(0, 512);
                      } else {
                        res.ok = true;
                      }
                      probe_answer(*unit, i, token, res);
                    });
}

void Supervisor::on_engine_up() {
  engine_down_seen_ = false;
  std::vector<std::string> waiting;
  for (auto& [name, u] : units_) {
    if (!u->ct) continue;
    u->ct->engine_up = true;
    if (u->ct->engine_wait) waiting.push_back(name);
  }
  changed();
  for (const auto& name : waiting) {
    Unit* u = find(name);
    if (!u || !u->ct->engine_wait || u->child) continue;
    u->ct->engine_wait = false;
    if (u->want_running && !u->paused && u->state != UnitState::Exhausted) start_process(*u);
  }
}

// Watches that have no container yet (their match found none): an engine
// start or create may be theirs; they look again, once per burst.
void Supervisor::find_lost_containers() {
  if (find_lost_posted_) return;
  find_lost_posted_ = true;
  loop_.post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    find_lost_posted_ = false;
    std::vector<std::string> names;
    for (auto& [name, u] : units_)
      if (u->ct && !u->ct->counted() && u->ct->id.empty() && !u->child && !u->ct->busy &&
          u->want_running && !u->paused &&
          u->state == UnitState::Stopped && !u->queued)
        names.push_back(name);
    for (const auto& name : names)
      if (Unit* u = find(name)) start_process(*u);
  });
}

// The container a watch had is gone (its remove event, or missing from a
// resync's list).
void Supervisor::container_removed(Unit& u) {
  Unit::Containing& ct = *u.ct;
  log_.emit(Msg::ContainerRemoved, u.name, {{"container", label(ct.info)}});
  std::string id = std::exchange(ct.id, std::string());
  // A container's processes outlive the container only when a start raced
  // its removal (Podman 4.3 accepts a start between the kill and the
  // remove of `rm -f`), adopted or not yet: nobody owns them any more.
  // They are found by the container's full id in their cgroup path
  // (libpod-ID, docker-ID.scope, /docker/ID) and ended; a death goes the
  // usual way (the next start finds no container, and the rules decide).
  // The engine's monitor of the container (Podman's conmon, in
  // libpod-conmon-ID) is the engine's, and is left alone.
  if (id.size() < 32) return;
  std::vector<Relative> left;
  scan_processes(reader_, {}, [&](ProcView& v) {
    const std::string* cg = v.cgroup();
    if (cg && cg->find(id) != std::string::npos && cg->find("conmon") == std::string::npos)
      left.push_back({v.stat().pid, v.stat().start_time});
  });
  for (const Relative& f : left) {
    Fd fd = pin(f);
    if (!fd) continue;
    log_.emit(Msg::ContainerLeakKilled, u.name, {{"pid", f.pid}, {"container", label(ct.info)}});
    pidfd_send_signal(fd.get(), SIGKILL, nullptr, 0);
  }
}

void Supervisor::on_container_event(const ContainerEvent& ev) {
  // Any container's start, death or removal may change a counted set.
  static const std::set<std::string> kSetChanges = {"start", "restart", "die", "stop",
                                                    "destroy", "remove", "create", "unpause",
                                                    "pause"};
  if (kSetChanges.count(ev.action)) {
    std::vector<std::string> counted;
    for (auto& [name, unit] : units_)
      if (unit->ct && unit->ct->counted()) counted.push_back(name);
    for (const auto& name : counted)
      if (Unit* cu = find(name)) list_members(*cu);
  }
  Unit* u = container_unit(ev.id);
  if (!u) {
    if (ev.action == "start" || ev.action == "create") find_lost_containers();
    return;
  }
  Unit::Containing& ct = *u->ct;
  if (ev.action == "die") {
    if (ev.exit_code) {
      // The death was the pidfd's news already (it comes first: the
      // process the watch has now, if any, is the next one), and its
      // status the proc connector's; the engine's word fills a status
      // that was not known.
      pid_t pid = u->last_exit ? u->last_exit->pid : 0;
      if (u->last_exit && !u->last_exit->status.known)
        u->last_exit->status = ExitStatus{*ev.exit_code, 0, false};
      log_.emit(Msg::ContainerExitCode, u->name,
                {{"container", label(ct.info)}, {"pid", pid}, {"code", *ev.exit_code}});
    }
    return;
  }
  if (ev.action == "destroy" || ev.action == "remove") {  // Docker says destroy, Podman remove
    container_removed(*u);
    if (ct.grace_timer) {
      // Waiting for the engine's restart of a container that is gone now:
      // vigil's start finds nothing, and the rules decide.
      loop_.cancel(ct.grace_timer);
      ct.grace_timer = 0;
      if (!u->child && u->want_running && !u->paused) start_container(*u);
    }
    changed();
    return;
  }
  if (ev.action == "start" || ev.action == "restart") {
    // Someone else started it: the engine (its restart policy), or an
    // operator. Vigil's own start is `busy` and adopts by itself.
    if (u->child || ct.busy || !u->want_running || u->paused || u->queued || u->stop_queued ||
        u->state == UnitState::Exhausted)
      return;
    bool by_engine = ct.observes() && !ct.stopped_by_vigil;
    if (by_engine) {
      ++ct.engine_restarts;
      log_.emit(Msg::ContainerEngineRestart, u->name,
                {{"container", label(ct.info)}, {"policy", ct.info.restart_policy}});
    }
    cancel_timer(*u);  // a backoff restart would be a second one
    ct.busy = true;
    std::string how = by_engine ? "restarted by the engine" : "started outside vigil";
    containers_->inspect(ev.id, on_unit(u->name, [this, how](Unit& unit, const std::string& error,
                                                            const ContainerInfo& info) {
      unit.ct->busy = false;
      if (unit.child || !unit.want_running) return;
      if (!error.empty() || !info.running || info.pid <= 0) return start_container(unit);
      adopt_container(unit, info, how.c_str());
    }));
    return;
  }
}

// After each (re)connection: what the stream may have missed. Only the
// pidfd says a container's process died; the list only adds what runs
// now and was not watched, and what was removed meanwhile.
void Supervisor::on_resync(const std::vector<ContainerInfo>& all) {
  std::vector<std::string> names;
  for (auto& [name, u] : units_)
    if (u->ct) names.push_back(name);
  for (const auto& name : names) {
    Unit* u = find(name);
    if (!u) continue;
    Unit::Containing& ct = *u->ct;
    ct.engine_up = true;
    if (ct.counted()) {
      list_members(*u);
      continue;
    }
    if (ct.id.empty()) continue;
    const ContainerInfo* now = nullptr;
    for (const auto& c : all)
      if (c.id == ct.id) now = &c;
    if (!now) {
      container_removed(*u);
      continue;
    }
    if (now->restart_count > ct.info.restart_count && !u->child)
      ct.engine_restarts += static_cast<uint64_t>(now->restart_count - ct.info.restart_count);
    if (u->child) {
      ct.info = *now;  // the same process goes on (its pidfd says if not)
      continue;
    }
    if (now->running && now->pid > 0 && u->want_running && !u->paused && !ct.busy && !u->queued &&
        !u->stop_queued && u->state != UnitState::Exhausted) {
      cancel_timer(*u);
      adopt_container(*u, *now, "found running at resync");
    } else {
      ct.info = *now;
    }
  }
  changed();
  find_lost_containers();
}

}  // namespace vigil

// --- Same-image counts -----------------------------------------------------
// A container watch with `count` has no container of its own: its members
// are the running containers its match selects (by image ID, labels,
// compose labels), listed again after every engine event that can change
// the set and after each resync. The count is check_bounds's, as for
// same-name processes: VGL0125-VGL0127 and the rules' on_count, whose
// "stop_newest" comes back as stop_member_container and whose "start"
// (a restart, under the budget) as start_counted.

namespace vigil {

void Supervisor::cancel_container_timers(Unit::Containing& ct) {
  loop_.cancel(ct.grace_timer);
  loop_.cancel(ct.fill_timer);
  loop_.cancel(ct.hold_timer);
  ct.grace_timer = ct.fill_timer = ct.hold_timer = 0;
}

// The set's members from an engine list: its running containers. True
// when the set changed.
bool Supervisor::take_members(Unit::Containing& ct, const std::vector<ContainerInfo>& found) {
  std::map<std::string, double> now;
  for (const auto& f : found)
    if (f.running) now[f.id] = f.created;
  bool changed_set = now != ct.members;
  ct.members = std::move(now);
  ct.seen = ct.seen || !ct.members.empty();
  return changed_set;
}

void Supervisor::list_members(Unit& u) {
  Unit::Containing& ct = *u.ct;
  if (!containers_ || !containers_->up()) return;
  if (ct.listing) {
    ct.list_again = true;
    return;
  }
  ct.listing = true;
  containers_->find(
      ct.decl.match, false,
      on_unit(u.name, [this](Unit& unit, const std::string& error, std::vector<ContainerInfo> found) {
        Unit::Containing& c = *unit.ct;
        c.listing = false;
        if (c.list_again) {
          // Something changed while this list was made: the next one counts.
          c.list_again = false;
          return list_members(unit);
        }
        if (!error.empty()) return;  // the engine's down event tells
        bool changed_set = take_members(c, found);
        if (unit.want_running && !unit.paused && !c.filling && !c.busy && !c.stops &&
            unit.state != UnitState::Exhausted && !unit.timer)
          set_state(unit, c.members.empty() ? UnitState::Stopped : UnitState::Running);
        check_bounds(unit, changed_set);
        changed();
      }));
}

// start_container branches here for a counted watch: the set is listed
// (stopped containers too); with `fill` (on_under = "start") what is
// missing to the minimum is started, then created from the template.
void Supervisor::start_counted(Unit& u) {
  Unit::Containing& ct = *u.ct;
  if (ct.busy || ct.filling) return;
  ct.busy = true;
  containers_->find(
      ct.decl.match, true,
      on_unit(u.name, [this](Unit& unit, const std::string& error, std::vector<ContainerInfo> found) {
        Unit::Containing& c = *unit.ct;
        c.busy = false;
        if (!unit.want_running || unit.paused) return;
        if (!error.empty()) return restart_failed(unit, "cannot list the containers: " + error);
        bool seen_before = c.seen;
        take_members(c, found);
        std::vector<ContainerInfo> stopped;
        for (auto& f : found)
          if (!f.running && f.status != "removing" && f.status != "dead") stopped.push_back(std::move(f));
        int64_t missing = c.decl.count->min - static_cast<int64_t>(c.members.size());
        if (missing <= 0 || !c.decl.fill) {
          if (c.members.empty() && !seen_before)
            log_.emit(Msg::ContainerNoMatch, unit.name,
                      {{"match", describe_container_match(c.decl.match)}});
          set_state(unit, c.members.empty() ? UnitState::Stopped : UnitState::Running);
          check_bounds(unit, true);
          changed();
          return;
        }
        fill_count(unit, std::move(stopped), missing);
      }));
}

void Supervisor::fill_count(Unit& u, std::vector<ContainerInfo> stopped, int64_t missing) {
  Unit::Containing& ct = *u.ct;
  std::sort(stopped.begin(), stopped.end(),
            [](const ContainerInfo& a, const ContainerInfo& b) { return a.created > b.created; });
  if (static_cast<int64_t>(stopped.size()) > missing) stopped.resize(static_cast<size_t>(missing));
  int64_t creating = missing - static_cast<int64_t>(stopped.size());
  if (creating > 0 && !ct.decl.create) {
    if (stopped.empty())
      return restart_failed(u, std::to_string(ct.members.size()) + " containers match (" +
                                   describe_container_match(ct.decl.match) +
                                   "), under the minimum of " +
                                   std::to_string(ct.decl.count->min) +
                                   ", none is stopped and the watch has no `create` template");
    creating = 0;  // what there is; the count decides after
  }
  log_.emit(Msg::ContainerCountFill, u.name,
            {{"count", ct.members.size()},
             {"min", ct.decl.count->min},
             {"starting", stopped.size()},
             {"creating", creating}});
  set_state(u, UnitState::Starting);
  ct.filling = true;
  // The count must reach its minimum within the grace, or the start failed.
  ct.fill_timer = loop_.after(from_seconds(ct.decl.engine_grace), on_unit(u.name, [this](Unit& unit) {
    Unit::Containing& c = *unit.ct;
    c.fill_timer = 0;
    if (!c.filling) return;
    c.filling = false;
    restart_failed(unit, std::to_string(c.members.size()) + " containers run " +
                             seconds_text(c.decl.engine_grace) +
                             " after the start, under the minimum of " +
                             std::to_string(c.decl.count->min));
  }));
  ct.topped_up = false;
  for (const auto& c : stopped) fill_start(u, c.id, true);
  for (int64_t i = 0; i < creating; ++i) fill_create(u);
}

// Every call of a fill has answered: if the set is still under its
// minimum (a started container was being removed as it was listed, or
// ended at once), what is missing is created from the template, once.
void Supervisor::fill_answered(Unit& u) {
  Unit::Containing& ct = *u.ct;
  if (--ct.fill_calls > 0 || !ct.filling || ct.topped_up || !ct.decl.create) return;
  ct.topped_up = true;
  containers_->find(
      ct.decl.match, false,
      on_unit(u.name, [this](Unit& unit, const std::string& error, std::vector<ContainerInfo> found) {
        Unit::Containing& c = *unit.ct;
        if (!error.empty() || !c.filling) return;
        int64_t running = 0;
        for (const auto& f : found) running += f.running;
        for (int64_t i = running; i < c.decl.count->min; ++i) fill_create(unit);
      }));
}

// One start of a fill. A stopped container that does not start (it was
// being removed as it was listed, its command is gone) is replaced by a
// new one from the template, if there is one; the fill timer ends the
// attempt otherwise.
void Supervisor::fill_start(Unit& u, const std::string& id, bool replace) {
  ++u.ct->fill_calls;
  containers_->start(id, on_unit(u.name, [this, id, replace](Unit& unit, const std::string& error) {
    if (!error.empty()) {
      log_.emit(Msg::ContainerCallFailed, unit.name,
                {{"call", "start"}, {"container", short_id(id)}, {"error", error}});
      if (replace && unit.ct->filling && unit.ct->decl.create) fill_create(unit);
    } else {
      unit.ct->own.insert(id);
      list_members(unit);
    }
    fill_answered(unit);
  }));
}

void Supervisor::fill_create(Unit& u) {
  ++u.ct->fill_calls;
  containers_->create(*u.ct->decl.create, on_unit(u.name, [this](Unit& unit, const std::string& error,
                                                                 const std::string& id) {
    const ContainerTemplate& t = *unit.ct->decl.create;
    if (!error.empty()) {
      log_.emit(Msg::ContainerCallFailed, unit.name,
                {{"call", "create"}, {"container", "from " + t.image}, {"error", error}});
      unit.ct->topped_up = true;  // the template does not work: the budget retries, not this fill
    } else {
      unit.ct->own.insert(id);
      log_.emit(Msg::ContainerCreated, unit.name, {{"container", short_id(id)}, {"image", t.image}});
      if (unit.ct->filling) fill_start(unit, id, false);
    }
    fill_answered(unit);
  }));
}

bool Supervisor::stop_member_container(Unit& u, const std::string& id, std::string& error) {
  if (!u.ct || !u.ct->counted() || !u.ct->members.count(id)) {
    error = "'" + id.substr(0, 12) + "' is not a running container of '" + u.name + "'";
    return false;
  }
  if (!containers_ || !containers_->up()) {
    error = "no container engine answers";
    return false;
  }
  const Unit::Containing& ct = *u.ct;
  log_.emit(Msg::ContainerCountStop, u.name,
            {{"container", short_id(id)},
             {"count", ct.members.size()},
             {"max", ct.decl.count->max < 0 ? nlohmann::json(nullptr) : nlohmann::json(ct.decl.count->max)}});
  containers_->stop(id, ct.decl.stop_timeout, on_unit(u.name, [this, id](Unit& unit, const std::string& err) {
    if (!err.empty())
      log_.emit(Msg::ContainerCallFailed, unit.name,
                {{"call", "stop"}, {"container", short_id(id)}, {"error", err}});
    list_members(unit);
  }));
  return true;
}

// An operator's stop of a counted watch (halt branches here): what vigil
// started or created for the count is stopped through the engine; what
// it only found runs on, as for a set of processes.
bool Supervisor::stop_counted(Unit& u) {
  Unit::Containing& ct = *u.ct;
  loop_.cancel(ct.fill_timer);
  ct.fill_timer = 0;
  ct.filling = false;
  std::vector<std::string> ids;
  for (const auto& id : ct.own)
    if (ct.members.count(id)) ids.push_back(id);
  ct.own.clear();
  if (ids.empty() || !containers_ || !containers_->up()) return false;
  ct.stops = static_cast<int>(ids.size());
  for (const auto& id : ids) {
    log_.emit(Msg::StopRequested, u.name,
              {{"container", short_id(id)}, {"how", "engine stop (t=" + seconds_text(ct.decl.stop_timeout) + ")"}});
    containers_->stop(id, ct.decl.stop_timeout, on_unit(u.name, [this, id](Unit& unit, const std::string& err) {
      if (!err.empty())
        log_.emit(Msg::ContainerCallFailed, unit.name,
                  {{"call", "stop"}, {"container", short_id(id)}, {"error", err}});
      if (--unit.ct->stops > 0) return;
      unit.ct->stops = 0;
      list_members(unit);
      finish_stopped(unit, "the containers vigil started were stopped");
    }));
  }
  return true;
}

}  // namespace vigil

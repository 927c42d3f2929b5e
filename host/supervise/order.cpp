// Dependency order and groups: a watch with `after` starts only once the
// watches it requires are ready; a coordinated restart stops a set of
// watches dependents first and starts them again dependencies first, each
// exactly once however many of them die meanwhile.
//
// All of it is one state machine over the units that are `queued` (to be
// started in order, stopped first if they run) or `stop_queued` (to be
// stopped in order): advance() looks at them whenever something changed
// (a state, a readiness, a timer) and takes every step that is allowed.
// Which watches go down together is policy (the rules pick the set);
// keeping the order is mechanism.
#include <signal.h>

#include <algorithm>

#include "host/core/clock.hpp"
#include "host/core/strings.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {
constexpr size_t kMaxHistory = 1000;
}

void Ledger::add(std::vector<RestartRecord>& list, double mono, double uptime) {
  list.push_back({mono, uptime});
  if (list.size() > kMaxHistory) list.erase(list.begin());
}

nlohmann::json Ledger::to_json() const {
  auto records = [](const std::vector<RestartRecord>& list) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : list) a.push_back({{"at", r.mono}, {"uptime", r.uptime}});
    return a;
  };
  nlohmann::json by_step = nlohmann::json::object();
  for (const auto& [key, list] : steps) by_step[key] = records(list);
  return {{"history", records(history)}, {"steps", std::move(by_step)}};
}

bool Unit::ready() const {
  // A oneshot is what its dependents wait for once it has run to success.
  if (oneshot) return state == UnitState::Done && done_ok;
  if (kind() == Kind::Members) return !m->members.empty() && m->bounds != Bounds::Under;
  if (ct && ct->counted()) return !ct->members.empty() && ct->bounds != Bounds::Under;
  if (queued || !child || child->failure || state != UnitState::Running) return false;
  if (probing && probing->gated()) return probing->ready;
  return settle <= 0 || MonoClock::now() - child->started >= from_seconds(settle);
}

Group* Supervisor::find_group(const std::string& name) {
  auto it = groups_.find(name);
  return it == groups_.end() ? nullptr : &it->second;
}

void Supervisor::apply_groups(std::vector<GroupDecl> decls) {
  std::map<std::string, Group> next;
  for (auto& d : decls) {
    auto it = groups_.find(d.name);
    Group g;
    bool was_clustered = false;
    if (it != groups_.end()) {
      g = std::move(it->second);  // history and state survive the reload
      was_clustered = g.decl.clustered;
      groups_.erase(it);
    } else {
      g.since = wall_seconds();
    }
    g.decl = std::move(d);
    if (!g.decl.clustered)
      g.held = false;
    else if (!g.held && holds_ && holds_(g.decl.name))
      g.held = true;
    // Clustered by this reload and not held here: what of it runs (its
    // watches ran before, outside a clustered group) is stopped once the
    // units are applied, since the node that holds it may start it.
    if (g.decl.clustered && !was_clustered && !g.held) to_standby_.push_back(g.decl.name);
    next.emplace(g.decl.name, std::move(g));
  }
  for (auto& [name, g] : groups_) loop_.cancel(g.rearm_timer);
  groups_ = std::move(next);
}

void Supervisor::rebuild_dependents() {
  dependents_.clear();
  for (const auto& [name, u] : units_)
    for (const auto& a : u->after) dependents_[a].push_back(name);
}

// Whether every dependency of u is ready; the ones that are not go into
// u.waiting_for. `settle_at`: the soonest moment a dependency that only
// has to run long enough becomes ready.
bool Supervisor::deps_ready(Unit& u, std::optional<MonoTime>* settle_at) {
  u.waiting_for.clear();
  for (const auto& a : u.after) {
    Unit* d = find(a);
    if (d ? d->ready() : remote_ready(a)) continue;
    u.waiting_for.push_back(a);
    if (settle_at && d && d->child && !d->queued && d->state == UnitState::Running &&
        !(d->probing && d->probing->gated()) && d->settle > 0) {
      MonoTime at = d->child->started + from_seconds(d->settle);
      if (!*settle_at || at < **settle_at) *settle_at = at;
    }
  }
  return u.waiting_for.empty();
}

void Supervisor::set_remote_ready(const std::string& name, bool ready) {
  auto [it, added] = remote_.try_emplace(name, ready);
  if (!added && it->second == ready) return;
  it->second = ready;
  changed();
  if (ready && !ordered_.empty()) schedule_advance();
}

void Supervisor::forget_remote(const std::string& name) {
  if (remote_.erase(name)) changed();
}

bool Supervisor::remote_ready(const std::string& name) const {
  auto it = remote_.find(name);
  return it != remote_.end() && it->second;
}

void Supervisor::pull_in(Unit& u) {
  for (const auto& a : u.after) {
    Unit* d = find(a);
    if (!d || !d->held || d->paused) continue;
    log_.emit(Msg::PulledIn, d->name, {{"by", u.name}});
    start(*d, "required");
  }
}

// Whether a watch that depends on u (directly or not) still runs and is
// itself to be stopped or restarted: u must wait for it to go down.
bool Supervisor::dependents_up(const Unit& u) const {
  std::vector<const std::string*> todo{&u.name};
  std::set<std::string> seen;
  while (!todo.empty()) {
    const std::string& n = *todo.back();
    todo.pop_back();
    auto it = dependents_.find(n);
    if (it == dependents_.end()) continue;
    for (const auto& d : it->second) {
      if (!seen.insert(d).second) continue;
      auto du = units_.find(d);
      if (du == units_.end()) continue;
      const Unit& dep = *du->second;
      if ((dep.queued || dep.stop_queued) && (dep.child || dep.script_pid())) return true;
      todo.push_back(&du->first);
    }
  }
  return false;
}

void Supervisor::enqueue(Unit& u) {
  u.queued = true;
  ordered_.insert(u.name);
  if (!u.child) set_state(u, UnitState::Waiting);
  schedule_advance();
}

void Supervisor::unqueue(const std::string& name) {
  ordered_.erase(name);
  for (auto it = batches_.begin(); it != batches_.end();) {
    it->left.erase(name);
    if (it->left.empty()) {
      if (it->done) loop_.post(std::move(it->done));
      it = batches_.erase(it);
    } else {
      ++it;
    }
  }
}

void Supervisor::schedule_advance() {
  if (advance_posted_ || ordered_.empty()) return;
  advance_posted_ = true;
  loop_.post([this] { advance(); });
}

void Supervisor::advance() {
  advance_posted_ = false;
  MonoTime now = MonoClock::now();
  std::optional<MonoTime> wake;
  auto wake_at = [&](MonoTime t) {
    if (!wake || t < *wake) wake = t;
  };
  std::vector<std::string> names(ordered_.begin(), ordered_.end());
  // Bounded like any work of one loop iteration: after a slice's worth of
  // stops and starts (a spawn each) the rest is for a later slice, after
  // the loop served its fds. advance() takes whatever steps are allowed,
  // so cutting it short anywhere is safe.
  MonoTime cut = now + EventLoop::kSlice;
  auto out_of_time = [&] {
    if (MonoClock::now() < cut) return false;
    if (!advance_posted_) {
      advance_posted_ = true;
      defer([this] { advance(); });
    }
    return true;
  };
  // Down first: a watch stops once nothing that depends on it runs.
  for (const auto& name : names) {
    if (out_of_time()) return;
    Unit* u = find(name);
    if (!u) {
      unqueue(name);
      continue;
    }
    if (u->child) {
      if (!u->child->stopping && !dependents_up(*u)) halt(*u);
      continue;
    }
    if (u->stop_queued && !dependents_up(*u)) {
      u->stop_queued = false;
      unqueue(name);
      stop(*u);  // "not running" when it was not; may erase it
    }
  }
  // Then up: a watch starts once what it requires is ready.
  for (const auto& name : names) {
    if (out_of_time()) return;
    Unit* u = find(name);
    if (!u || !u->queued || u->child || u->script_pid() || u->paused) continue;
    if (now < u->not_before) {
      wake_at(u->not_before);
      continue;
    }
    if (dependents_up(*u)) continue;
    std::vector<std::string> before = u->waiting_for;
    std::optional<MonoTime> settle_at;
    if (!deps_ready(*u, &settle_at)) {
      if (settle_at) wake_at(*settle_at);
      if (u->waiting_for != before)
        log_.emit(Msg::WaitingForDeps, u->name, {{"for", join(u->waiting_for, ", ")}});
      continue;
    }
    u->queued = false;
    unqueue(name);
    start_process(*u);
  }
  if (wake && (!advance_timer_ || *wake < advance_at_)) {
    loop_.cancel(advance_timer_);
    advance_at_ = *wake;
    advance_timer_ = loop_.after(std::max(Duration::zero(), *wake - now), [this] {
      advance_timer_ = 0;
      advance();
    });
  }
}

void Supervisor::restart_set(Unit* cause, const std::vector<std::string>& names, double delay,
                             Group* group, const std::string& reason, std::function<void()> done) {
  if (cause) overrule(*cause);
  double mono = mono_seconds(MonoClock::now());
  double uptime = cause && cause->last_exit ? cause->last_exit->uptime : 0;
  if (cause) {
    ++cause->decisions;
    cause->ledger.add(cause->ledger.history, mono, uptime);
  }
  if (group) {
    group->ledger.add(group->ledger.history, mono, uptime);
    ++group->restarts;
  }
  MonoTime not_before = MonoClock::now() + from_seconds(std::max(0.0, delay));
  Batch batch;
  batch.done = std::move(done);
  std::vector<std::string> taken;
  for (const auto& name : names) {
    Unit* u = find(name);
    if (!u || u->remove_when_stopped) continue;
    // A failure does not start what an operator stopped.
    if (cause && u != cause && !u->want_running && !u->queued) continue;
    cancel_timer(*u);
    end_find(*u);
    ++u->restarts;
    u->stop_queued = false;
    u->want_running = true;
    u->not_before = std::max(u->not_before, not_before);
    taken.push_back(name);
    batch.left.insert(name);
    enqueue(*u);
  }
  log_.emit(Msg::OrderedRestart,
            group   ? group->decl.name
            : cause ? cause->name
                    : "",
            {{"members", join(taken, ", ")},
             {"delay", delay},
             {"reason", reason},
             {"cause", cause ? nlohmann::json(cause->name) : nlohmann::json(nullptr)}});
  if (batch.left.empty()) {
    if (batch.done) loop_.post(std::move(batch.done));
  } else {
    batches_.push_back(std::move(batch));
  }
}

void Supervisor::stop_ordered(const std::vector<std::string>& names, std::function<void()> done) {
  Batch batch;
  batch.done = std::move(done);
  for (const auto& name : names) {
    Unit* u = find(name);
    if (!u) continue;
    u->want_running = false;
    u->queued = false;
    u->stop_queued = true;
    cancel_timer(*u);
    end_find(*u);
    ordered_.insert(name);
    batch.left.insert(name);
  }
  if (batch.left.empty()) {
    if (batch.done) loop_.post(std::move(batch.done));
    return;
  }
  batches_.push_back(std::move(batch));
  schedule_advance();
}

void Supervisor::start_ordered(const std::vector<std::string>& names, const char* reason) {
  for (const auto& name : names)
    if (Unit* u = find(name)) start(*u, reason);
}

void Supervisor::exhaust_group(Group& g, std::optional<double> rearm_after, Unit* cause) {
  if (cause) overrule(*cause);
  if (cause) ++cause->decisions;
  loop_.cancel(g.rearm_timer);
  g.rearm_timer = 0;
  g.exhausted = true;
  g.since = wall_seconds();
  changed();
  stop_ordered(g.decl.units);
  if (!rearm_after) return;
  std::string name = g.decl.name;
  g.rearm_timer = loop_.after(from_seconds(*rearm_after), [this, name] {
    Group* grp = find_group(name);
    if (!grp || !grp->exhausted) return;
    grp->rearm_timer = 0;
    grp->exhausted = false;
    grp->since = wall_seconds();
    grp->ledger.clear();
    changed();
    log_.emit(Msg::Rearmed, name, {{"reason", "cool-down"}});
    start_ordered(grp->decl.units, "group re-armed");
  });
}

void Supervisor::after_stopped(const std::string& owner, std::function<void()> fn) {
  std::vector<std::string> names;
  if (Group* g = find_group(owner)) {
    names = g->decl.units;
  } else if (Unit* u = find(owner)) {
    // A watch that failed for good has normally ended already; only what
    // still runs is stopped (stopping an ended one would cancel its re-arm).
    if (u->child || u->script_pid() || u->stop_queued) names.push_back(owner);
  }
  // stop_ordered() joins a stop already under way (the group's give-up)
  // and calls back once every one is down.
  stop_ordered(names, std::move(fn));
}

const Group* Supervisor::clustered_group_of(const Unit& u) const {
  // Nested groups are few and shallow: walk up from the innermost.
  const std::string* name = &u.group;
  for (int depth = 0; !name->empty() && depth < 64; ++depth) {
    auto it = groups_.find(*name);
    if (it == groups_.end()) return nullptr;
    if (it->second.decl.clustered) return &it->second;
    name = &it->second.decl.parent;
  }
  return nullptr;
}

bool Supervisor::in_standby(const Unit& u) const {
  if (u.group.empty()) return false;
  const Group* g = clustered_group_of(u);
  return g && !g->held;
}

void Supervisor::hold_group(Group& g, bool held, std::function<void()> done) {
  if (!g.decl.clustered) {
    if (done) loop_.post(std::move(done));
    return;
  }
  bool was = g.held;
  g.held = held;
  if (was != held) {
    g.since = wall_seconds();
    changed();
  }
  if (held && was) {
    // Held already (an adapter made again at a reload says so again):
    // what runs runs on, a give-up stays one.
    if (done) loop_.post(std::move(done));
    return;
  }
  if (held) {
    start_group(g);  // a fresh start: a give-up before it (here or elsewhere) is history
    if (done) loop_.post(std::move(done));
    return;
  }
  stop_ordered(g.decl.units, std::move(done));
}

void Supervisor::fence_group(Group& g, double kill_after, std::function<void()> done) {
  g.held = false;
  g.since = wall_seconds();
  changed();
  for (const auto& name : g.decl.units) {
    Unit* u = find(name);
    if (!u) continue;
    u->restart_when_stopped = false;
    if (u->queued) {
      u->queued = false;
      unqueue(u->name);
    }
    if (!u->child) {
      halt(*u);  // a script, a search, a set's own members: ended as for any stop
      continue;
    }
    // No order and no stop command: every member's group at once, and
    // KILL at the bound whatever each watch's own stop timeout says.
    u->want_running = false;
    cancel_timer(*u);
    end_find(*u);
    Unit::Child& c = *u->child;
    if (!c.stopping) {
      c.stopping = true;
      signal_process(*u, SIGTERM);
      signal_process(*u, SIGCONT);
      log_.emit(Msg::StopRequested, u->name, {{"pid", c.pid}, {"how", "TERM (fence)"}});
    }
    this->kill_after(*u, kill_after);
  }
  // Joins the stops under way and calls back once every one is reaped.
  stop_ordered(g.decl.units, std::move(done));
}

void Supervisor::start_group(Group& g) {
  if (g.exhausted) {
    loop_.cancel(g.rearm_timer);
    g.rearm_timer = 0;
    g.exhausted = false;
    g.since = wall_seconds();
    g.ledger.clear();
    changed();
    log_.emit(Msg::Rearmed, g.decl.name, {{"reason", "operator start"}});
  }
  start_ordered(g.decl.units, "operator start");
}

void Supervisor::stop_group(Group& g, std::function<void()> done) {
  stop_ordered(g.decl.units, std::move(done));
}

void Supervisor::restart_group(Group& g, std::function<void()> done) {
  if (g.exhausted) start_group(g);
  for (const auto& name : g.decl.units)
    if (Unit* u = find(name)) u->ledger.history.clear();
  restart_set(nullptr, g.decl.units, 0, nullptr, "operator restart", std::move(done));
}

std::string Supervisor::group_state(const Group& g) const {
  if (g.decl.clustered && !g.held) {
    // Not this node's to run: standby once nothing of it is left here.
    bool left = false;
    for (const auto& name : g.decl.units) {
      auto it = units_.find(name);
      if (it == units_.end()) continue;
      const Unit& u = *it->second;
      left |= u.child || (u.m && !u.m->own.empty()) || u.script_pid() || u.stop_queued;
    }
    if (!left) return "standby";
  }
  if (g.exhausted) return "exhausted";
  bool all_ready = true, all_down = true, busy = false;
  for (const auto& m : g.decl.members) {
    if (auto it = groups_.find(m); it != groups_.end()) {
      std::string s = group_state(it->second);
      if (s == "restarting") busy = true;
      all_ready &= s == "ready";
      all_down &= s == "stopped";
      continue;
    }
    auto it = units_.find(m);
    if (it == units_.end()) continue;
    const Unit& u = *it->second;
    busy |= u.queued || u.stop_queued;
    bool ready = u.ready();
    all_ready &= ready;
    // Down: nothing runs and nothing is on its way (a start, a backoff,
    // a wait for dependencies). A future state counts as not down.
    bool has_process = u.child || (u.m && !u.m->members.empty()) || u.script_pid();
    all_down &= !ready && !has_process &&
                (u.state == UnitState::Stopped || u.state == UnitState::Exhausted ||
                 u.state == UnitState::Done);
  }
  return busy        ? "restarting"
         : all_ready ? "ready"
         : all_down  ? "stopped"
                     : "degraded";
}

nlohmann::json Supervisor::group_json(const Group& g) const {
  nlohmann::json members = nlohmann::json::array();
  for (const auto& m : g.decl.members) {
    if (auto it = groups_.find(m); it != groups_.end()) {
      members.push_back(group_json(it->second));
      continue;
    }
    auto it = units_.find(m);
    if (it == units_.end()) continue;
    const Unit& u = *it->second;
    members.push_back({{"watch", m},
                       {"state", u.paused ? "paused" : unit_state_name(u.state)},
                       {"ready", u.ready()},
                       {"pid", u.child ? nlohmann::json(u.child->pid) : nlohmann::json(nullptr)}});
  }
  nlohmann::json j = {{"group", g.decl.name},         {"strategy", g.decl.strategy},
                      {"where", g.decl.where},        {"state", group_state(g)},
                      {"since", rfc3339(g.since)},    {"restarts", g.restarts},
                      {"members", std::move(members)}};
  if (g.decl.clustered) {
    j["clustered"] = true;
    j["held"] = g.held;
  }
  if (!g.decl.description.empty()) j["description"] = g.decl.description;
  if (!g.overrides.empty()) j["overrides"] = g.overrides;
  return j;
}

}  // namespace vigil

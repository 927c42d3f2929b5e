#include "host/daemon/waits.hpp"

#include "host/control/protocol.hpp"
#include "host/core/clock.hpp"

namespace vigil {

namespace {

std::string unit_state(const Unit& u) {
  return u.paused ? "paused" : unit_state_name(u.state);
}

bool has_process(const Unit& u) {
  return u.child || (u.m && !u.m->members.empty()) || u.script_pid();
}

// Nothing of it runs and nothing will start it by itself.
bool down(const Unit& u) {
  std::string s = unit_state(u);
  return !has_process(u) && (s == "stopped" || s == "exhausted" || s == "done");
}

// Will not run again without an operator: given up, finished by design,
// or stopped by one.
bool ended(const Unit& u) {
  std::string s = unit_state(u);
  return s == "exhausted" || s == "done" || (s == "stopped" && !u.want_running);
}

}  // namespace

Waits::Waits(EventLoop& loop, Supervisor& supervisor) : loop_(loop), supervisor_(supervisor) {}

Waits::~Waits() {
  for (auto& w : waits_) loop_.cancel(w.timeout_timer);
  loop_.cancel(recheck_timer_);
}

bool Waits::valid_target(const std::string& until) {
  return until == "ready" || until == "running" || until == "stopped" || until == "exhausted" ||
         until == "done" || until == "standby";
}

Waits::Verdict Waits::judge(const std::string& name, const std::string& until, std::string& state,
                            std::optional<MonoTime>& recheck) const {
  auto unit_verdict = [&](const Unit& u) {
    std::string s = unit_state(u);
    if (until == "ready" || until == "running") {
      bool reached = until == "ready" ? u.ready()
                                      : s == "running" || (u.m && u.kind() == Unit::Kind::Members &&
                                                           !u.m->members.empty());
      if (reached) return Verdict::Reached;
      if (until == "ready" && s == "running" && u.child && !(u.probing && u.probing->gated()) &&
          u.settle > 0) {
        // Ready by running long enough: no event says when.
        MonoTime at = u.child->started + from_seconds(u.settle);
        if (!recheck || at < *recheck) recheck = at;
      }
      return ended(u) ? Verdict::Unreachable : Verdict::Pending;
    }
    if (until == "stopped") return down(u) ? Verdict::Reached : Verdict::Pending;
    if (until == "standby")
      return supervisor_.in_standby(u) && down(u) ? Verdict::Reached : Verdict::Pending;
    if (s == until) return Verdict::Reached;
    if (until == "done" && ended(u)) return Verdict::Unreachable;
    if (s == "done") return Verdict::Unreachable;  // exhausted: it will not run to fail again
    return Verdict::Pending;
  };

  Supervisor& sup = supervisor_;
  if (Unit* u = sup.find(name)) {
    state = unit_state(*u);
    if (state == "running" && !u->ready()) state = "running (not ready)";
    return unit_verdict(*u);
  }
  Group* g = sup.find_group(name);
  if (!g) {
    state = "";
    return Verdict::Unknown;
  }
  state = sup.group_state(*g);
  if (until == "ready") {
    if (state == "ready") return Verdict::Reached;
    // Settle times of its members.
    for (const auto& m : g->decl.units)
      if (Unit* u = sup.find(m)) unit_verdict(*u);
    return state == "exhausted" || state == "stopped" ? Verdict::Unreachable : Verdict::Pending;
  }
  if (until == "exhausted" || until == "standby")
    return state == until ? Verdict::Reached : Verdict::Pending;
  // running, stopped, done: every watch of the group.
  bool all = true, any_unreachable = false;
  for (const auto& m : g->decl.units) {
    Unit* u = sup.find(m);
    if (!u) continue;
    Verdict v = unit_verdict(*u);
    all &= v == Verdict::Reached;
    any_unreachable |= v == Verdict::Unreachable;
  }
  if (all) return Verdict::Reached;
  return any_unreachable ? Verdict::Unreachable : Verdict::Pending;
}

bool Waits::add(const std::string& name, const std::string& until, std::optional<double> timeout,
                std::weak_ptr<void> conn, ControlServer::Reply reply, std::string& error) {
  prune();
  if (waits_.size() >= kMax) {
    error = "too many waits in progress (limit " + std::to_string(kMax) + ")";
    return false;
  }
  waits_.push_back({name, until, std::move(conn), std::move(reply), 0, MonoClock::now()});
  Iter it = std::prev(waits_.end());
  std::optional<MonoTime> recheck;
  if (settle(it, recheck)) return true;
  if (timeout) {
    it->timeout_timer = loop_.after(from_seconds(*timeout), [this, it] {
      it->timeout_timer = 0;
      std::string state;
      std::optional<MonoTime> ignored;
      judge(it->name, it->until, state, ignored);
      finish(it, "timeout", state);
    });
  }
  if (recheck) poke();  // sets the recheck timer
  return true;
}

void Waits::finish(Iter it, const char* result, const std::string& state) {
  loop_.cancel(it->timeout_timer);
  nlohmann::json r = ok_reply({{"result", result},
                               {"name", it->name},
                               {"until", it->until},
                               {"state", state},
                               {"waited", to_seconds(MonoClock::now() - it->started)}});
  if (std::string(result) == "unknown") r["error"] = "no watch or group named '" + it->name + "'";
  ControlServer::Reply reply = std::move(it->reply);
  waits_.erase(it);
  if (reply) reply(r);
}

bool Waits::settle(Iter it, std::optional<MonoTime>& recheck) {
  std::string state;
  switch (judge(it->name, it->until, state, recheck)) {
    case Verdict::Reached: finish(it, "reached", state); return true;
    case Verdict::Unreachable: finish(it, "unreachable", state); return true;
    case Verdict::Unknown: finish(it, "unknown", state); return true;
    case Verdict::Pending: return false;
  }
  return false;
}

void Waits::poke() {
  if (posted_ || waits_.empty()) return;
  posted_ = true;
  loop_.post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    posted_ = false;
    judge_all();
  });
}

void Waits::prune() {
  for (auto it = waits_.begin(); it != waits_.end();) {
    if (it->conn.expired()) {
      loop_.cancel(it->timeout_timer);
      it = waits_.erase(it);
    } else {
      ++it;
    }
  }
}

void Waits::judge_all() {
  prune();
  std::optional<MonoTime> recheck;
  for (auto it = waits_.begin(); it != waits_.end();) {
    Iter next = std::next(it);
    settle(it, recheck);
    it = next;
  }
  if (recheck_timer_ && (!recheck || *recheck != recheck_at_)) {
    loop_.cancel(recheck_timer_);
    recheck_timer_ = 0;
  }
  if (recheck && !recheck_timer_ && !waits_.empty()) {
    recheck_at_ = *recheck;
    recheck_timer_ = loop_.at(*recheck, [this] {
      recheck_timer_ = 0;
      judge_all();
    });
  }
}

}  // namespace vigil

#include "host/cluster/hub.hpp"

#include <tuple>

#include "host/cluster/cluster.hpp"
#include "host/cluster/etcd_election.hpp"
#include "host/cluster/local_cluster.hpp"
#include "host/cluster/pacemaker_cluster.hpp"
#include "host/core/clock.hpp"
#include "host/core/events.hpp"
#include "host/core/strings.hpp"
#include "host/loop/event_loop.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

nlohmann::json HoldInfo::to_json() const {
  nlohmann::json failed = nlohmann::json::object();
  for (const auto& [node, at] : failed_on) failed[node] = rfc3339(at);
  return {{"role", role},
          {"holder", holder.empty() ? nlohmann::json(nullptr) : nlohmann::json(holder)},
          {"lease_left", lease_left < 0 ? nlohmann::json(nullptr) : nlohmann::json(lease_left)},
          {"failed_on", std::move(failed)}};
}

namespace {

bool same_config(const ClusterConfig& a, const ClusterConfig& b) {
  auto tie = [](const ClusterConfig& c) {
    return std::tie(c.adapter, c.node, c.endpoints, c.ttl, c.self_fence_after, c.avoid_for,
                    c.prefix, c.ca, c.cert, c.key, c.resource, c.track_file, c.failover,
                    c.failover_timeout);
  };
  return tie(a) == tie(b);
}

// Adapters that hold nothing of their own: remade at will.
bool stateless(const std::string& adapter) {
  return adapter == "command" || adapter == "keepalived";
}

}  // namespace

std::unique_ptr<ClusterAdapter> make_cluster_adapter(const ClusterConfig& config,
                                                     const ClusterEnv& env, ClusterCallbacks cb,
                                                     std::string& error) {
  if (stateless(config.adapter))
    return std::make_unique<LocalCluster>(config, env.loop, env.log, env.supervisor,
                                          std::move(cb));
  if (config.adapter == "etcd") {
    error = EtcdCluster::check(config);
    if (!error.empty()) return nullptr;
    return std::make_unique<EtcdCluster>(env.loop, config, std::move(cb), &env.log);
  }
  if (config.adapter == "pacemaker") {
    // crm_resource runs as a failover command (its own process group,
    // killed at failover_timeout); the holding is the agent's start.
    Supervisor* sup = &env.supervisor;
    auto run = [sup, config](const PacemakerCommand& c,
                             std::function<void(const std::string&)> done) {
      run_failover_command(*sup,
                           FailoverRun{c.group, true, config.node, c.reason, c.to_node, c.argv,
                                       config.failover_timeout},
                           std::move(done));
    };
    auto held = [sup](const std::string& group) {
      const Group* g = sup->find_group(group);
      return g && g->held;
    };
    return std::make_unique<PacemakerCluster>(config, std::move(run), std::move(held));
  }
  error = "the '" + config.adapter + "' adapter is not built into this vigil";
  return nullptr;
}

std::string check_cluster_config(const ClusterConfig& config) {
  if (config.adapter == "etcd") return EtcdCluster::check(config);
  return "";
}

void stop_then_hand_over(Supervisor& sup, EventLog& log, const std::string& owner,
                         const std::string& reason, const std::string& node,
                         std::function<void(std::function<void(const std::string&)>)> hand,
                         const std::string& how) {
  log.emit(Msg::FailoverRequested, owner, {{"reason", reason}, {"node", node}});
  // The hand-over starts once nothing of the owner runs here any more
  // (issue 12.10): the service must never run on two nodes at once.
  EventLog* lp = &log;
  sup.after_stopped(owner, [lp, owner, hand = std::move(hand), how] {
    hand([lp, owner, how](const std::string& err) {
      if (err.empty())
        lp->emit(Msg::FailoverDone, owner, {{"how", how}});
      else
        lp->emit(Msg::FailoverFailed, owner, {{"error", err}});
    });
  });
}

void hand_over_by_command(Supervisor& sup, EventLog& log, const FailoverRun& run) {
  Supervisor* sp = &sup;
  stop_then_hand_over(
      sup, log, run.owner, run.reason, run.node,
      [sp, run](std::function<void(const std::string&)> done) {
        run_failover_command(*sp, run, std::move(done));
      },
      "command " + join(run.argv, " ") + " exited 0");
}

ClusterHub::ClusterHub(EventLoop& loop, EventLog& log, Supervisor& sup, AdapterFactory factory)
    : loop_(loop), log_(log), sup_(sup), factory_(std::move(factory)) {}

ClusterHub::~ClusterHub() = default;

void ClusterHub::configure(const std::optional<ClusterConfig>& config) {
  if (!config) {
    // No cluster block any more: no group is clustered either (a check
    // error otherwise); the adapter leaves them all.
    if (adapter_) adapter_->set_groups({});
    return;
  }
  if (adapter_ && same_config(config_, *config)) return;
  if (adapter_ && !(stateless(config_.adapter) && stateless(config->adapter))) {
    log_.emit(Msg::ClusterKept, "", {{"adapter", config_.adapter}});
    return;
  }
  std::string error;
  auto made = factory_(*config, ClusterEnv{loop_, log_, sup_}, callbacks(), error);
  // Kept either way: the node's name and the adapter's kind are still
  // what status shows and what an operator's start and stop mean.
  config_ = *config;
  adapter_ = std::move(made);
  if (!adapter_)
    log_.emit(Msg::ClusterAdapterFailed, "", {{"adapter", config->adapter}, {"error", error}});
}

void ClusterHub::set_groups(const std::vector<std::string>& clustered) {
  if (adapter_) adapter_->set_groups(clustered);
}

ClusterCallbacks ClusterHub::callbacks() {
  ClusterCallbacks cb;
  std::weak_ptr<bool> alive = alive_;
  // Each event takes the adapter's detail (etcd: rev, from; gap) beside
  // the hub's own fields.
  auto with = [](nlohmann::json f, const nlohmann::json& detail) {
    if (detail.is_object())
      for (const auto& [k, v] : detail.items())
        if (!f.contains(k)) f[k] = v;
    return f;
  };
  cb.takeover = [this, alive, with](const std::string& group, const nlohmann::json& detail) {
    if (alive.expired()) return;
    Group* g = sup_.find_group(group);
    if (!g) return;
    log_.emit(Msg::ClusterTakeover, group, with({{"node", config_.node}}, detail));
    sup_.hold_group(*g, true);
  };
  cb.lost = [this, alive](const std::string& group, const std::string& reason) {
    if (alive.expired()) return;
    Group* g = sup_.find_group(group);
    double since = mono_seconds(MonoClock::now());
    log_.emit(Msg::ClusterLost, group, {{"node", config_.node}, {"reason", reason}});
    if (!g) {
      if (adapter_) adapter_->stopped(group);
      return;
    }
    sup_.hold_group(*g, false, [this, alive, group, since] {
      if (!alive.expired()) released(group, "stopped in order", since);
    });
  };
  cb.fence = [this, alive, with](const std::string& group, double kill_after,
                                 const std::string& reason, const nlohmann::json& detail) {
    if (alive.expired()) return;
    Group* g = sup_.find_group(group);
    double since = mono_seconds(MonoClock::now());
    log_.emit(Msg::ClusterFenced, group,
              with({{"node", config_.node}, {"reason", reason}, {"kill_after", kill_after}}, detail));
    if (!g) {
      if (adapter_) adapter_->stopped(group);
      return;
    }
    sup_.fence_group(*g, kill_after, [this, alive, group, since] {
      if (!alive.expired()) released(group, "fenced", since);
    });
  };
  cb.notify = [this, alive](const std::string& what, const std::string& group,
                            const nlohmann::json& detail) {
    if (alive.expired()) return;
    // An adapter that logs its own events (etcd) names them: rules hear
    // those (vigil.cluster.on), no second event.
    for (const auto& d : message_catalog())
      if (what == d.name) return;
    nlohmann::json f = {{"what", what}, {"node", config_.node}};
    if (detail.is_object() && !detail.empty()) f["detail"] = detail;
    log_.emit(Msg::ClusterNotice, group, std::move(f));
  };
  return cb;
}

void ClusterHub::released(const std::string& group, const char* how, double since) {
  log_.emit(Msg::ClusterReleased, group,
            {{"how", how}, {"seconds", mono_seconds(MonoClock::now()) - since}});
  if (adapter_) adapter_->stopped(group);
}

std::string ClusterHub::failover(const std::string& owner, const std::string& reason,
                                 const std::string& to_node,
                                 const std::vector<std::string>& command) {
  if (!sup_.find_group(owner) && !sup_.find(owner))
    return "no watch or group named '" + owner + "'";
  if (!command.empty()) {
    hand_over_by_command(sup_, log_,
                         FailoverRun{owner, sup_.find_group(owner) != nullptr, config_.node, reason,
                                     to_node, command, config_.failover_timeout});
    return "";
  }
  if (!adapter_) return "no cluster adapter (cluster { adapter = ... } in the rules)";
  std::weak_ptr<bool> alive = alive_;
  stop_then_hand_over(
      sup_, log_, owner, reason, config_.node,
      [this, alive, owner, reason, to_node](std::function<void(const std::string&)> done) {
        if (alive.expired() || !adapter_) return done("the cluster adapter is gone");
        adapter_->failover(owner, reason, to_node,
                           [this, alive, owner, done](const std::string& err) {
                             // Handed over (an election resigned): this node
                             // does not hold it any more, it is standby here.
                             if (err.empty() && !alive.expired() && adapter_ &&
                                 !adapter_->holds(owner))
                               if (Group* g = sup_.find_group(owner); g && g->held) {
                                 g->held = false;
                                 g->since = wall_seconds();
                                 poke();
                               }
                             done(err);
                           });
      },
      "handed over by the " + config_.adapter + " adapter");
  return "";
}

void ClusterHub::operator_start(Group& g) {
  if (!g.decl.clustered) return;
  if (adapter_) {
    HoldInfo h = adapter_->info(g.decl.name);
    if (!h.holder.empty() && h.holder != config_.node)
      log_.emit(Msg::ClusterOperatorStart, g.decl.name, {{"holder", h.holder}, {"node", config_.node}});
  } else {
    log_.emit(Msg::ClusterOperatorStart, g.decl.name, {{"holder", "no adapter"}, {"node", config_.node}});
  }
  g.held = true;  // hold_group's start: in order, the budget re-armed
}

void ClusterHub::operator_stop(Group& g) {
  // Pacemaker places the group: its agent's stop is the release.
  if (g.decl.clustered && config_.adapter == "pacemaker") g.held = false;
}

nlohmann::json ClusterHub::group_json(const std::string& group) const {
  if (!adapter_) return {{"role", "down"}, {"holder", nullptr}};
  nlohmann::json j = adapter_->info(group).to_json();
  j["adapter"] = config_.adapter;
  j["node"] = config_.node;
  return j;
}

nlohmann::json ClusterHub::cluster_json() const {
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& [name, g] : sup_.groups()) {
    if (!g.decl.clustered) continue;
    nlohmann::json j = group_json(name);
    j["group"] = name;
    j["state"] = sup_.group_state(g);
    groups.push_back(std::move(j));
  }
  return {{"adapter", config_.adapter},
          {"node", config_.node},
          {"nodes", adapter_ ? adapter_->nodes() : nlohmann::json::array()},
          {"groups", std::move(groups)}};
}

void ClusterHub::poke() {
  if (!adapter_ || poke_posted_) return;
  poke_posted_ = true;
  loop_.post([this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    poke_posted_ = false;
    if (adapter_) adapter_->groups_changed();
  });
}

}  // namespace vigil

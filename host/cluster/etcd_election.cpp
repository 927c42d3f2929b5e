#include "host/cluster/etcd_election.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "host/core/clock.hpp"

namespace vigil {

namespace {
// A campaign waits in etcd until it wins; cut and renewed this often so a
// connection that died silently is noticed (etcd withdraws a cut campaign).
constexpr double kCampaignTimeout = 30;
// A move by hand (target) is honoured for this long at least.
constexpr double kTargetForMin = 30;

std::string secs(double s) { return fmt::format("{:.3g}", s); }

EtcdClientOptions client_options(const ClusterConfig& c, const FenceBudget& b) {
  EtcdClientOptions o;
  o.endpoints = c.endpoints;
  o.tls.ca_file = c.ca;
  o.tls.cert_file = c.cert;
  o.tls.key_file = c.key;
  // One attempt of a keepalive must leave time for the next endpoint
  // before self_fence_after runs out.
  o.timeout = from_seconds(std::clamp(b.keepalive_every / 2, 0.2, 2.0));
  o.connect_timeout = from_seconds(std::clamp(b.keepalive_every / 4, 0.1, 1.0));
  return o;
}
}  // namespace

FenceBudget EtcdCluster::budget(const ClusterConfig& c) {
  FenceBudget b;
  b.ttl = c.ttl;
  b.self_fence_after = c.self_fence_after > 0 ? c.self_fence_after : c.ttl / 2;
  b.keepalive_every = c.ttl / 3;
  b.reap = 0.5;
  b.margin = std::max(0.25, c.ttl / 10);
  b.kill_after = c.ttl - b.self_fence_after - b.reap - b.margin;
  return b;
}

std::string EtcdCluster::check(const ClusterConfig& c) {
  if (c.endpoints.empty()) return "cluster: adapter 'etcd' needs endpoints = { \"http://HOST:2379\", ... }";
  for (const auto& e : c.endpoints)
    if (auto err = validate_http_url(e)) return "cluster: endpoints: " + *err;
  if (c.node.empty()) return "cluster: node is empty";
  if (c.node.find('/') != std::string::npos) return "cluster: node '" + c.node + "' may not contain '/'";
  if (c.prefix.empty()) return "cluster: prefix is empty";
  if (!(c.ttl >= 2)) return "cluster: ttl " + secs(c.ttl) + "s is below etcd's 2s: raise ttl";
  FenceBudget b = budget(c);
  if (!(b.self_fence_after > b.keepalive_every))
    return "cluster: self_fence_after " + secs(b.self_fence_after) + "s must be longer than the keepalive interval " +
           "(ttl/3 = " + secs(b.keepalive_every) + "s), or one late keepalive fences the groups";
  constexpr double kMinKillAfter = 0.25;
  if (!(b.kill_after >= kMinKillAfter))
    return "cluster: self_fence_after " + secs(b.self_fence_after) + "s + a bounded stop (kill after " +
           secs(kMinKillAfter) + "s + reap " + secs(b.reap) + "s) + margin " + secs(b.margin) +
           "s must stay below ttl " + secs(b.ttl) + "s: lower self_fence_after or raise ttl";
  if (!(c.avoid_for >= 0)) return "cluster: avoid_for must not be negative";
  return "";
}

EtcdCluster::EtcdCluster(EventLoop& loop, ClusterConfig config, ClusterCallbacks callbacks, EventLog* log)
    : EtcdCluster(loop, config, std::move(callbacks), log, http_etcd_transport(loop)) {}

EtcdCluster::EtcdCluster(EventLoop& loop, ClusterConfig config, ClusterCallbacks callbacks, EventLog* log,
                         std::unique_ptr<EtcdTransport> transport)
    : loop_(loop),
      config_(std::move(config)),
      callbacks_(std::move(callbacks)),
      log_(log),
      budget_(budget(config_)),
      client_(client_options(config_, budget_), std::move(transport)) {
  later(Duration::zero(), [this] { start_lease(); });
}

EtcdCluster::~EtcdCluster() {
  for (TimerId t : timers_) loop_.cancel(t);
}

void EtcdCluster::later(Duration d, std::function<void()> fn) {
  auto id = std::make_shared<TimerId>(0);
  *id = loop_.after(d, [this, id, fn = std::move(fn)] {
    timers_.erase(*id);
    fn();
  });
  timers_.insert(*id);
}

void EtcdCluster::cancel_timer(TimerId& t) {
  if (t) {
    loop_.cancel(t);
    timers_.erase(t);
  }
  t = 0;
}

TimerId EtcdCluster::at(MonoTime when, std::function<void()> fn) {
  auto id = std::make_shared<TimerId>(0);
  *id = loop_.at(when, [this, id, fn = std::move(fn)] {
    timers_.erase(*id);
    fn();
  });
  timers_.insert(*id);
  return *id;
}

std::string EtcdCluster::election_name(const std::string& group) const {
  return config_.prefix + "/election/" + group;
}
std::string EtcdCluster::data_key(const std::string& group, const std::string& rest) const {
  return config_.prefix + "/data/" + group + "/" + rest;
}

EtcdCluster::Group* EtcdCluster::find(const std::string& group) {
  auto it = groups_.find(group);
  return it == groups_.end() ? nullptr : &it->second;
}
const EtcdCluster::Group* EtcdCluster::find(const std::string& group) const {
  auto it = groups_.find(group);
  return it == groups_.end() ? nullptr : &it->second;
}

void EtcdCluster::event(Msg msg, const std::string& group, nlohmann::json fields) {
  if (log_) log_->emit(msg, group, std::move(fields));
}

void EtcdCluster::tell(const std::string& what, const std::string& group, const nlohmann::json& detail) {
  if (callbacks_.notify) callbacks_.notify(what, group, detail);
}

// ---- the lease -------------------------------------------------------------

void EtcdCluster::start_lease() {
  if (lease_ || lease_call_) return;
  if (paused_) {
    cancel_timer(retry_timer_);
    retry_timer_ = at(loop_.now() + from_seconds(budget_.keepalive_every), [this] {
      retry_timer_ = 0;
      start_lease();
    });
    return;
  }
  MonoTime sent = loop_.now();
  lease_call_ = client_.lease_grant(
      config_.ttl,
      [this, sent](const EtcdResult& r, int64_t id, int64_t ttl) {
        lease_call_ = 0;
        if (r.ok && id != 0 && ttl > 0) return lease_granted(id, ttl, sent);
        if (!r.ok) return lease_failed(r);
        EtcdResult bad = r;
        bad.error = r.endpoint + ": lease grant answered without an ID";
        lease_failed(bad);
      },
      from_seconds(2));
}

void EtcdCluster::lease_failed(const EtcdResult& r) {
  backoff_ = std::min(backoff_ > 0 ? backoff_ * 2 : 0.5, 10.0);
  set_reachable(false, r.error, backoff_);
  cancel_timer(retry_timer_);
  retry_timer_ = at(loop_.now() + from_seconds(backoff_), [this] {
    retry_timer_ = 0;
    start_lease();
  });
}

void EtcdCluster::lease_granted(int64_t id, int64_t ttl, MonoTime sent) {
  lease_ = id;
  granted_ttl_ = ttl;
  last_renew_sent_ = sent;
  backoff_ = 0;
  polled_ = false;
  nlohmann::json me = {{"node", config_.node}, {"since", wall_seconds()}};
  client_.put(config_.prefix + "/nodes/" + config_.node, me.dump(), lease_, [](const EtcdResult&) {});
  set_reachable(true, "", 0);
  arm_watchdog();
  cancel_timer(keepalive_timer_);
  keepalive_timer_ = at(sent + from_seconds(budget_.keepalive_every), [this] {
    keepalive_timer_ = 0;
    send_keepalive();
  });
  poll();
}

void EtcdCluster::set_reachable(bool reachable, const std::string& why, double retry) {
  if (reachable) {
    if (!reachable_) {
      event(Msg::ClusterReachable, "", {{"endpoint", client_.current_endpoint()}, {"node", config_.node},
                                        {"lease", fmt::format("{:x}", lease_)}, {"ttl", granted_ttl_}});
      tell("cluster_reachable", "", {{"endpoint", client_.current_endpoint()}});
    }
    reachable_ = true;
    unreachable_reported_ = false;
    return;
  }
  reachable_ = false;
  if (unreachable_reported_) return;
  unreachable_reported_ = true;
  event(Msg::ClusterUnreachable, "", {{"error", why}, {"retry", retry}});
  tell("cluster_unreachable", "", {{"error", why}});
}

void EtcdCluster::send_keepalive() {
  if (!lease_) return;
  if (paused_ || keepalive_call_) {
    keepalive_timer_ = at(loop_.now() + from_seconds(budget_.keepalive_every / 4), [this] {
      keepalive_timer_ = 0;
      send_keepalive();
    });
    return;
  }
  MonoTime sent = loop_.now();
  int64_t lease = lease_;
  // Short attempts: one that hangs (a stopped member) must leave time,
  // before self_fence_after runs out, for the next endpoint and a retry.
  Duration attempt = from_seconds(std::clamp((budget_.self_fence_after - budget_.keepalive_every) / 2.5, 0.1, 2.0));
  keepalive_call_ = client_.lease_keepalive(lease_, [this, sent, lease](const EtcdResult& r, int64_t ttl) {
    keepalive_call_ = 0;
    if (lease != lease_) return;
    if ((r.ok && ttl <= 0) || r.code == 5) return lease_lost("etcd says the lease is gone", false);
    recampaign_moved();
    Duration next = from_seconds(budget_.keepalive_every);
    MonoTime from = sent;
    if (r.ok) {
      last_renew_sent_ = std::max(last_renew_sent_, sent);
      granted_ttl_ = ttl;
      keepalives_++;
      arm_watchdog();
    } else {
      // Again soon (on the next endpoint: the client moved on).
      next = from_seconds(std::min(0.2, budget_.keepalive_every / 4));
      from = loop_.now();
    }
    cancel_timer(keepalive_timer_);
    keepalive_timer_ = at(from + next, [this] {
      keepalive_timer_ = 0;
      send_keepalive();
    });
  }, attempt);
}

void EtcdCluster::arm_watchdog() {
  cancel_timer(watchdog_timer_);
  watchdog_timer_ = at(last_renew_sent_ + from_seconds(budget_.self_fence_after), [this] {
    watchdog_timer_ = 0;
    double gap = to_seconds(loop_.now() - last_renew_sent_);
    lease_lost(fmt::format("no lease renewal for {:.2f}s (self_fence_after {}s)", gap,
                           secs(budget_.self_fence_after)),
               true);
  });
}

bool EtcdCluster::lease_fresh() const {
  return lease_ && !lease_abandoned_ &&
         to_seconds(loop_.now() - last_renew_sent_) < budget_.self_fence_after;
}

void EtcdCluster::lease_lost(const std::string& why, bool unrenewed) {
  if (!lease_) return;
  event(Msg::LeaseLost, "", {{"lease", fmt::format("{:x}", lease_)}, {"node", config_.node}, {"reason", why}});
  old_lease_ = lease_;
  lease_ = 0;
  lease_abandoned_ = true;
  if (keepalive_call_) client_.cancel(keepalive_call_);
  if (poll_call_) client_.cancel(poll_call_);
  keepalive_call_ = poll_call_ = 0;
  cancel_timer(keepalive_timer_);
  cancel_timer(watchdog_timer_);
  cancel_timer(poll_timer_);
  if (unrenewed) set_reachable(false, why, 0);
  for (auto& [name, g] : groups_) {
    switch (g.state) {
      case GroupState::Held:
      case GroupState::Confirming:
        lose(g, why, true);
        break;
      case GroupState::Stopping:
        if (!g.fenced) lose(g, why, true);  // bounded now
        break;
      case GroupState::Campaigning:
        client_.cancel(g.call);
        g.call = 0;
        g.state = GroupState::Idle;
        break;
      case GroupState::Idle:
        break;
    }
  }
  maybe_new_lease();
}

void EtcdCluster::maybe_new_lease() {
  if (!lease_abandoned_) return;
  for (auto& [name, g] : groups_)
    if (g.state == GroupState::Stopping) return;
  // Nothing of a fenced group is left: the old lease may go now (it
  // cannot let another node start a group that still runs here).
  // (Paused: this node's requests do not reach etcd, the lease expires.)
  if (old_lease_ && !paused_) client_.lease_revoke(old_lease_, [](const EtcdResult&) {});
  old_lease_ = 0;
  lease_abandoned_ = false;
  start_lease();
}

void EtcdCluster::pause_keepalives(bool paused) {
  paused_ = paused;
  if (!paused && !lease_ && !lease_call_ && !lease_abandoned_) start_lease();
}

// ---- the poll --------------------------------------------------------------

void EtcdCluster::poll() {
  if (!lease_ || poll_call_) return;
  MonoTime sent = loop_.now();
  poll_call_ = client_.range(config_.prefix + "/", true, [this, sent](const EtcdResult& r, const std::vector<EtcdKv>& kvs) {
    poll_call_ = 0;
    if (r.ok) polled(kvs, sent);
    cancel_timer(poll_timer_);
    if (!lease_) return;
    poll_timer_ = at(sent + from_seconds(budget_.keepalive_every), [this] {
      poll_timer_ = 0;
      poll();
    });
  });
}

void EtcdCluster::polled(const std::vector<EtcdKv>& kvs, MonoTime sent) {
  const std::string nodes = config_.prefix + "/nodes/";
  const std::string election = config_.prefix + "/election/";
  const std::string data = config_.prefix + "/data/";
  std::set<std::string> live;
  std::set<std::string> keys;
  std::map<std::string, EtcdKv> leaders;  // group -> lowest create revision
  std::map<std::string, std::map<std::string, double>> failed;
  std::map<std::string, std::pair<std::string, double>> targets;
  std::map<std::string, std::vector<EtcdKv>> mine;  // group -> our election keys
  for (const auto& kv : kvs) {
    if (kv.key.starts_with(nodes)) {
      live.insert(kv.key.substr(nodes.size()));
    } else if (kv.key.starts_with(election)) {
      keys.insert(kv.key);
      std::string rest = kv.key.substr(election.size());
      auto slash = rest.rfind('/');
      if (slash == std::string::npos) continue;
      std::string group = rest.substr(0, slash);
      if (lease_ && kv.lease == lease_) mine[group].push_back(kv);
      auto it = leaders.find(group);
      if (it == leaders.end() || kv.create_revision < it->second.create_revision) leaders[group] = kv;
    } else if (kv.key.starts_with(data)) {
      std::string rest = kv.key.substr(data.size());
      auto f = rest.find("/failed_on/");
      if (f != std::string::npos) {
        auto j = nlohmann::json::parse(kv.value, nullptr, false);
        double t = j.is_number() ? j.get<double>() : 0;
        failed[rest.substr(0, f)][rest.substr(f + 11)] = t;
      } else if (rest.ends_with("/target")) {
        auto j = nlohmann::json::parse(kv.value, nullptr, false);
        if (j.is_object())
          targets[rest.substr(0, rest.size() - 7)] = {j.value("node", ""), j.value("time", 0.0)};
      }
    }
  }
  // Our own key may be on its way (put at the grant) or gone (deleted by
  // hand): put again; we are live while our lease is.
  if (lease_ && !live.contains(config_.node) && polled_) {
    nlohmann::json me = {{"node", config_.node}, {"since", wall_seconds()}};
    client_.put(nodes + config_.node, me.dump(), lease_, [](const EtcdResult&) {});
  }
  if (lease_) live.insert(config_.node);
  live_nodes_ = live;
  polled_ = true;  // the groups below may campaign now
  all_holders_.clear();
  for (const auto& [group, kv] : leaders) all_holders_[group] = kv.value;
  const double now = wall_seconds();
  const double target_for = std::max(kTargetForMin, 5 * config_.ttl);
  for (auto& [name, g] : groups_) {
    std::string holder = leaders.contains(name) ? leaders[name].value : "";
    if (holder != g.holder) {
      event(Msg::HolderChanged, name, {{"from", g.holder.empty() ? "none" : g.holder},
                                      {"to", holder.empty() ? "none" : holder}});
      tell("holder_changed", name, {{"from", g.holder}, {"to", holder}});
      g.holder = holder;
    }
    g.failed_on = failed[name];
    auto t = targets.find(name);
    g.target = t != targets.end() && now - t->second.second < target_for ? t->second.first : "";
    switch (g.state) {
      case GroupState::Held:
        if (sent > g.held_since && !keys.contains(g.leader.key))
          lose(g, "the election key is gone (holder now: " + (holder.empty() ? "none" : holder) + ")", true);
        break;
      case GroupState::Campaigning:
        if (!g.target.empty() && g.target != config_.node) {
          client_.cancel(g.call);
          g.call = 0;
          g.state = GroupState::Idle;
          g.note = "moving to " + g.target;
        }
        break;
      case GroupState::Idle:
        // Our keys here are stale (below): resigned first, the group
        // campaigns at a later poll, so the delete cannot race a new
        // campaign's key.
        if (!mine.contains(name)) evaluate(g);
        break;
      default:
        break;
    }
  }
  resign_stale(mine);
}

// An election key of ours in a group we neither hold nor campaign for (an
// idle group, or one the rules no longer declare) was left by a resign that
// failed (a timeout under load): while our lease lives it leads, or queues,
// for nobody, and a move to another node waited for the target to expire.
void EtcdCluster::resign_stale(const std::map<std::string, std::vector<EtcdKv>>& mine) {
  for (const auto& [name, keys] : mine) {
    const Group* g = find(name);
    if (g && g->state != GroupState::Idle) continue;
    for (const auto& kv : keys)
      client_.resign({election_name(name), kv.key, kv.create_revision, kv.lease}, [](const EtcdResult&) {});
  }
}

// ---- a group ---------------------------------------------------------------

bool EtcdCluster::eligible(const Group& g, const std::string& node) const {
  auto it = g.failed_on.find(node);
  return it == g.failed_on.end() || wall_seconds() - it->second >= config_.avoid_for;
}

void EtcdCluster::evaluate(Group& g) {
  if (g.state != GroupState::Idle || !g.wanted) return;
  if (!lease_fresh() || !polled_) {
    g.note = "";
    return;
  }
  const std::string& me = config_.node;
  if (!g.target.empty() && g.target != me) {
    g.note = "moving to " + g.target;
    return;
  }
  if (g.target.empty() && !eligible(g, me)) {
    std::vector<std::string> others;
    for (const auto& n : live_nodes_)
      if (n != me && eligible(g, n)) others.push_back(n);
    if (!others.empty()) {
      if (g.note != "avoiding") {
        double ago = wall_seconds() - g.failed_on[me];
        event(Msg::GroupAvoided, g.name,
              {{"reason", fmt::format("it failed here {:.0f}s ago (avoid_for {}s); {} may run it", ago,
                                      secs(config_.avoid_for), fmt::join(others, ", "))},
               {"eligible", others}});
        tell("group_avoided", g.name, {{"eligible", others}});
      }
      g.note = "avoiding";
      g.down_reported = false;
      return;
    }
    g.note = "down";
    if (!g.down_reported) {
      std::vector<std::string> failed;
      for (const auto& [n, t] : g.failed_on)
        if (!eligible(g, n)) failed.push_back(n);
      event(Msg::NoEligibleNode, g.name,
            {{"avoid_for", config_.avoid_for}, {"failed_on", fmt::format("{}", fmt::join(failed, ", "))},
             {"live", std::vector<std::string>(live_nodes_.begin(), live_nodes_.end())}});
      tell("no_eligible_node", g.name, {{"failed_on", failed}});
      g.down_reported = true;
    }
    return;
  }
  g.note = "";
  g.down_reported = false;
  campaign(g);
}

void EtcdCluster::campaign(Group& g) {
  g.state = GroupState::Campaigning;
  int64_t lease = lease_;
  std::string name = g.name;
  g.call = client_.campaign(
      election_name(name), lease_, config_.node,
      [this, name, lease](const EtcdResult& r, const EtcdLeader& leader) {
        Group* g = find(name);
        if (!g || g->state != GroupState::Campaigning) return;
        g->call = 0;
        g->state = GroupState::Idle;
        if (!r.ok || !leader.valid()) {
          if (r.code == 5 && lease == lease_) return lease_lost("etcd says the lease is gone", false);
          later(from_seconds(r.unreachable ? 0.2 : 1.0), [this, name] {
            if (Group* g = find(name)) evaluate(*g);
          });
          return;
        }
        if (lease != lease_ || !lease_fresh()) {
          client_.resign(leader, [](const EtcdResult&) {});
          return;
        }
        g->state = GroupState::Confirming;
        g->leader = leader;
        confirm(*g);
      },
      from_seconds(kCampaignTimeout));
}

// A campaign waits on the endpoint that was current when it was sent. When
// the client has moved off it (an attempt failed there: a member that lost
// its cluster may hold a campaign open forever), the campaign is sent again
// on the endpoint that answers. Same lease, same candidate key: etcd finds
// it and keeps its place in the queue.
void EtcdCluster::recampaign_moved() {
  for (auto& [name, g] : groups_) {
    if (g.state != GroupState::Campaigning) continue;
    if (client_.endpoint_of(g.call) == client_.current_endpoint()) continue;
    client_.cancel(g.call);
    g.call = 0;
    campaign(g);
  }
}

// Won the election: a move by hand to another node makes us resign at once;
// otherwise the status key is written fenced (which also proves the key
// still leads) before the group is started.
void EtcdCluster::confirm(Group& g) {
  std::string name = g.name;
  client_.range(data_key(name, "target"), false, [this, name](const EtcdResult& r, const std::vector<EtcdKv>& kvs) {
    Group* g = find(name);
    if (!g || g->state != GroupState::Confirming) return;
    auto back_off = [this, g, name](const std::string& why) {
      client_.resign(g->leader, [](const EtcdResult&) {});
      g->leader = {};
      g->state = GroupState::Idle;
      g->note = why;
      later(from_seconds(1), [this, name] {
        if (Group* g = find(name)) evaluate(*g);
      });
    };
    if (!r.ok) return back_off("");
    std::string target;
    if (!kvs.empty()) {
      auto j = nlohmann::json::parse(kvs[0].value, nullptr, false);
      if (j.is_object() && wall_seconds() - j.value("time", 0.0) < std::max(kTargetForMin, 5 * config_.ttl))
        target = j.value("node", "");
    }
    if (!target.empty() && target != config_.node) {
      g->target = target;
      return back_off("moving to " + target);
    }
    std::vector<EtcdOp> ops = {EtcdOp::put(
        data_key(name, "status"),
        nlohmann::json({{"node", config_.node}, {"state", "active"}, {"since", wall_seconds()}}).dump())};
    if (!kvs.empty()) ops.push_back(EtcdOp::del(data_key(name, "target")));
    client_.txn_if_created(g->leader.key, g->leader.rev, ops, [this, name, back_off](const EtcdResult& r, bool ok) {
      Group* g = find(name);
      if (!g || g->state != GroupState::Confirming) return;
      if (!r.ok || !ok || !lease_fresh()) return back_off("");
      g->state = GroupState::Held;
      g->held_since = loop_.now();
      g->target.clear();
      g->note.clear();
      std::string from = g->holder;
      g->holder = config_.node;
      all_holders_[name] = config_.node;
      if (callbacks_.takeover) callbacks_.takeover(name, {{"rev", g->leader.rev}, {"from", from}});
    });
  });
}

void EtcdCluster::lose(Group& g, const std::string& reason, bool fence) {
  bool was_held = g.state == GroupState::Held || g.state == GroupState::Stopping;
  if (!was_held) {
    // Confirming: nothing was started here.
    g.state = GroupState::Idle;
    g.leader = {};
    return;
  }
  g.state = GroupState::Stopping;
  g.fenced = fence;
  if (fence) {
    double gap = to_seconds(loop_.now() - last_renew_sent_);
    if (callbacks_.fence) callbacks_.fence(g.name, budget_.kill_after, reason, {{"gap", gap}});
  } else {
    if (callbacks_.lost) callbacks_.lost(g.name, reason);
  }
}

void EtcdCluster::stopped(const std::string& group) {
  Group* g = find(group);
  if (!g || g->state != GroupState::Stopping) return;
  g->state = GroupState::Idle;
  EtcdLeader leader = g->leader;
  g->leader = {};
  // A group left in order (not fenced) hands the election on at once.
  if (!g->fenced && leader.valid() && lease_) client_.resign(leader, [](const EtcdResult&) {});
  g->fenced = false;
  if (!g->wanted) {
    groups_.erase(group);
  } else if (!lease_abandoned_) {
    evaluate(*g);
  }
  maybe_new_lease();
}

void EtcdCluster::set_groups(const std::vector<std::string>& groups) {
  std::set<std::string> want(groups.begin(), groups.end());
  for (auto it = groups_.begin(); it != groups_.end();) {
    Group& g = it->second;
    if (want.contains(it->first)) {
      g.wanted = true;
      ++it;
      continue;
    }
    g.wanted = false;
    switch (g.state) {
      case GroupState::Held:
        lose(g, "no longer clustered in the rules", false);
        ++it;
        break;
      case GroupState::Stopping:
        ++it;
        break;
      case GroupState::Confirming:
        client_.resign(g.leader, [](const EtcdResult&) {});
        it = groups_.erase(it);
        break;
      case GroupState::Campaigning:
        client_.cancel(g.call);
        it = groups_.erase(it);
        break;
      case GroupState::Idle:
        it = groups_.erase(it);
        break;
    }
  }
  for (const auto& name : want) {
    auto [it, added] = groups_.try_emplace(name);
    if (!added) continue;
    it->second.name = name;
    if (all_holders_.contains(name)) it->second.holder = all_holders_[name];
    evaluate(it->second);
  }
}

void EtcdCluster::failover(const std::string& group, const std::string& reason, const std::string& to_node,
                           std::function<void(const std::string& err)> done) {
  Group* g = find(group);
  auto fail = [this, done](std::string err) {
    later(Duration::zero(), [done, err] { done(err); });
  };
  if (!g) return fail("group '" + group + "' is not clustered");
  if (g->state != GroupState::Held)
    return fail("this node (" + config_.node + ") does not hold '" + group + "' (holder: " +
                (g->holder.empty() ? "none" : g->holder) + ")");
  if (to_node == config_.node) return fail("'" + group + "' is already held by " + to_node);
  if (!to_node.empty() && !live_nodes_.contains(to_node)) {
    std::vector<std::string> live(live_nodes_.begin(), live_nodes_.end());
    return fail(fmt::format("node '{}' is not live in etcd (live: {})", to_node, fmt::join(live, ", ")));
  }
  const double now = wall_seconds();
  std::vector<EtcdOp> ops;
  if (to_node.empty())
    ops.push_back(EtcdOp::put(data_key(group, "failed_on/" + config_.node), nlohmann::json(now).dump()));
  else
    ops.push_back(EtcdOp::put(data_key(group, "target"),
                              nlohmann::json({{"node", to_node}, {"time", now}, {"from", config_.node}}).dump()));
  ops.push_back(EtcdOp::put(
      data_key(group, "status"),
      nlohmann::json({{"node", config_.node}, {"state", "failed_over"}, {"reason", reason}, {"since", now}}).dump()));
  g->state = GroupState::Stopping;  // no second failover, no poll decisions meanwhile
  g->fenced = true;                 // nothing to resign in stopped(): resigned here
  EtcdLeader leader = g->leader;
  client_.txn_if_created(
      leader.key, leader.rev, ops,
      [this, group, reason, to_node, now, leader, done](const EtcdResult& r, bool ok) {
        Group* g = find(group);
        if (!g) return done("group '" + group + "' left the rules");
        if (!r.ok || !ok || !lease_fresh()) {
          if (r.ok && ok) {
            // Written, but the lease went meanwhile: resigning is moot.
          } else if (!r.ok) {
            event(Msg::ClusterWriteFailed, group,
                  {{"key", data_key(group, to_node.empty() ? "failed_on/" + config_.node : "target")},
                   {"error", r.error}});
          }
          if (r.ok && !ok) {
            g->state = GroupState::Idle;
            g->leader = {};
            done("'" + group + "' was no longer held here (its election key is gone)");
          } else if (lease_fresh()) {
            g->state = GroupState::Held;  // still ours: the lease holds it; the caller may try again
            g->fenced = false;
            done("etcd: " + r.error);
          } else {
            g->state = GroupState::Idle;  // the lease is given up: it expires, someone else wins
            g->leader = {};
            g->fenced = false;
            done(r.ok ? "" : "etcd: " + r.error);
          }
          maybe_new_lease();
          return;
        }
        if (to_node.empty())
          g->failed_on[config_.node] = now;
        else
          g->target = to_node;
        client_.resign(leader, [this, group, reason, to_node, done](const EtcdResult& r) {
          Group* g = find(group);
          if (g) {
            g->state = GroupState::Idle;
            g->leader = {};
            g->fenced = false;
            g->holder.clear();  // until the next poll names the new one
          }
          all_holders_.erase(group);
          event(Msg::GroupResigned, group,
                {{"reason", to_node.empty() ? reason : reason + " (to " + to_node + ")"}, {"to", to_node}});
          done(r.ok ? "" : "etcd: resign: " + r.error);
          if (g && g->wanted) evaluate(*g);
          maybe_new_lease();
        });
      });
}

void EtcdCluster::write_status(const std::string& group, const nlohmann::json& status) {
  Group* g = find(group);
  if (!g || g->state != GroupState::Held) return;
  nlohmann::json s = status;
  s["node"] = config_.node;
  s["time"] = wall_seconds();
  std::string key = data_key(group, "status");
  client_.txn_if_created(g->leader.key, g->leader.rev, {EtcdOp::put(key, s.dump())},
                         [this, group, key](const EtcdResult& r, bool ok) {
                           if (!r.ok || !ok)
                             event(Msg::ClusterWriteFailed, group,
                                   {{"key", key}, {"error", r.ok ? "not held any more (fenced write refused)" : r.error}});
                         });
}

// ---- what it looks like ----------------------------------------------------

bool EtcdCluster::holds(const std::string& group) const {
  const Group* g = find(group);
  return g && g->state == GroupState::Held;
}

HoldInfo EtcdCluster::info(const std::string& group) const {
  HoldInfo h;
  const Group* g = find(group);
  if (!g) {
    h.role = "down";
    return h;
  }
  switch (g->state) {
    case GroupState::Held:
      h.role = "active";
      break;
    case GroupState::Stopping:
      h.role = g->fenced ? "fenced" : "standby";
      break;
    default:
      h.role = !lease_ ? "down" : g->note == "avoiding" ? "avoiding" : g->note == "down" ? "down" : "standby";
      break;
  }
  h.holder = g->holder;
  if (lease_) h.lease_left = std::max(0.0, double(granted_ttl_) - to_seconds(loop_.now() - last_renew_sent_));
  h.failed_on = g->failed_on;
  return h;
}

nlohmann::json EtcdCluster::nodes() const {
  std::map<std::string, std::vector<std::string>> holds;
  for (const auto& n : live_nodes_) holds[n];
  for (const auto& [group, node] : all_holders_) holds[node].push_back(group);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [node, groups] : holds)
    out.push_back({{"node", node}, {"live", live_nodes_.contains(node)}, {"self", node == config_.node},
                   {"holds", groups}});
  return out;
}

}  // namespace vigil

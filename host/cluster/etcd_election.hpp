// EtcdCluster: the etcd adapter. Vigil decides who runs a clustered group
// by an election in etcd, no cluster manager.
//
//   PREFIX/nodes/NODE              on this node's lease: the live nodes
//   PREFIX/election/GROUP/<lease>  the candidates (etcd's election API);
//                                  the lowest create revision leads
//   PREFIX/data/GROUP/status       written fenced on the leader key's create
//                                  revision (outside the election prefix:
//                                  every key under it is a candidate)
//   PREFIX/data/GROUP/failed_on/NODE  wall time of NODE's last failover
//   PREFIX/data/GROUP/target       {"node","time"}: a move by hand to NODE
//
// One lease per node, kept alive every ttl/3, timed (CLOCK_MONOTONIC) from
// when the last successful keepalive was SENT: etcd cannot have expired the
// lease earlier than sent + ttl. When no keepalive succeeded for
// self_fence_after, every held group is fenced (callbacks.fence with
// kill_after chosen so that self_fence_after + kill_after + reap + margin <
// ttl: the group is gone here before another node can win), campaigns are
// withdrawn, and only when every fenced group is stopped a new lease is
// granted and the node campaigns again.
//
// The holder is known by polling the whole PREFIX (one range per ttl/3:
// observe does not report a resign or an expiry). Anti-ping-pong: a node
// does not campaign for a group that failed on it within avoid_for while
// another live node is eligible; when no live node is eligible the group
// stays down (no_eligible_node). A move by hand (failover to NODE) writes
// the target: every other node withdraws (or, having won meanwhile,
// resigns before starting anything); the target campaigns and clears it.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "host/cluster/adapter.hpp"
#include "host/cluster/etcd_client.hpp"
#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

// The fencing budget of a config, in seconds (what check() verifies).
struct FenceBudget {
  double ttl = 0;
  double self_fence_after = 0;  // the config's, or ttl / 2
  double keepalive_every = 0;   // ttl / 3
  double kill_after = 0;        // TERM .. KILL given to callbacks.fence
  double reap = 0;              // allowance for the KILLed to be reaped
  double margin = 0;            // left between the group gone and the lease's end
};

class EtcdCluster : public ClusterAdapter {
 public:
  // `log` may be null (unit tests): events then only go through notify.
  EtcdCluster(EventLoop& loop, ClusterConfig config, ClusterCallbacks callbacks, EventLog* log = nullptr);
  // Tests: a transport of their own (a fake etcd).
  EtcdCluster(EventLoop& loop, ClusterConfig config, ClusterCallbacks callbacks, EventLog* log,
              std::unique_ptr<EtcdTransport> transport);
  ~EtcdCluster() override;  // cancels its calls; the lease is left to expire

  // Check-time: "" or why the config cannot be run safely, in words the
  // Lua side shows after file:line, e.g. "self_fence_after 3.5s + a
  // bounded stop (kill after 0.25s + reap 0.5s) + margin 0.4s must stay
  // below ttl 4s: lower self_fence_after or raise ttl"; endpoints that do
  // not parse are named.
  static std::string check(const ClusterConfig& config);
  static FenceBudget budget(const ClusterConfig& config);

  // ClusterAdapter
  void set_groups(const std::vector<std::string>& groups) override;
  void failover(const std::string& group, const std::string& reason, const std::string& to_node,
                std::function<void(const std::string& err)> done) override;
  void stopped(const std::string& group) override;
  bool holds(const std::string& group) const override;
  HoldInfo info(const std::string& group) const override;
  nlohmann::json nodes() const override;

  // The group's status (e.g. {"state":"running"}) written to
  // PREFIX/data/GROUP/status, fenced: only while this node holds it.
  void write_status(const std::string& group, const nlohmann::json& status);

  // Tests and benches: stop sending keepalives, grants and the revoke of
  // a fenced lease (a partition seen from this node only), and resume.
  void pause_keepalives(bool paused);
  bool reachable() const { return reachable_; }
  int64_t lease_id() const { return lease_; }
  const FenceBudget& fence_budget() const { return budget_; }
  uint64_t keepalives() const { return keepalives_; }

 private:
  enum class GroupState {
    Idle,         // not campaigning (no lease yet, avoiding, another's target, down)
    Campaigning,  // a campaign call in flight
    Confirming,   // won: checking the target and writing the status (fenced)
    Held,         // takeover called
    Stopping,     // lost/fence called (or a failover resigning), waiting for stopped()
  };
  struct Group {
    std::string name;
    GroupState state = GroupState::Idle;
    bool wanted = true;   // still in the rules
    bool fenced = false;  // the current Stopping is a fence (nothing to resign after)
    EtcdLeader leader;    // while Confirming/Held/Stopping: ours
    MonoTime held_since{};
    EtcdClient::CallId call = 0;
    std::string holder;  // from the last poll
    std::map<std::string, double> failed_on;
    std::string target;  // a fresh move by hand to this node ("" none)
    std::string note;    // why Idle: avoiding | down | moving to NODE
    bool down_reported = false;
  };

  std::string election_name(const std::string& group) const;
  std::string data_key(const std::string& group, const std::string& rest) const;

  void start_lease();
  void lease_granted(int64_t id, int64_t ttl, MonoTime sent);
  void lease_failed(const EtcdResult& r);
  void send_keepalive();
  void arm_watchdog();
  // The lease cannot be counted on: fence what is held, withdraw the
  // campaigns; a new lease once every fenced group has stopped.
  void lease_lost(const std::string& why, bool unrenewed);
  void maybe_new_lease();
  void poll();
  void polled(const std::vector<EtcdKv>& kvs, MonoTime sent);
  void resign_stale(const std::map<std::string, std::vector<EtcdKv>>& mine);
  void evaluate(Group& g);
  void campaign(Group& g);
  void recampaign_moved();
  void confirm(Group& g);
  void lose(Group& g, const std::string& reason, bool fence);
  bool lease_fresh() const;
  bool eligible(const Group& g, const std::string& node) const;
  void set_reachable(bool reachable, const std::string& why, double retry);
  void event(Msg msg, const std::string& group, nlohmann::json fields);
  void tell(const std::string& what, const std::string& group, const nlohmann::json& detail);
  Group* find(const std::string& group);
  const Group* find(const std::string& group) const;
  // Timers cancelled with this object.
  void later(Duration d, std::function<void()> fn);
  TimerId at(MonoTime when, std::function<void()> fn);
  void cancel_timer(TimerId& t);

  EventLoop& loop_;
  ClusterConfig config_;
  ClusterCallbacks callbacks_;
  EventLog* log_;
  FenceBudget budget_;
  std::set<TimerId> timers_;
  std::map<std::string, Group> groups_;

  int64_t lease_ = 0;  // 0: none
  int64_t granted_ttl_ = 0;
  MonoTime last_renew_sent_{};    // when the last successful keepalive (or the grant) was sent
  bool lease_abandoned_ = false;  // fenced: waiting for stopped() before a new lease
  int64_t old_lease_ = 0;         // revoked once nothing fenced runs
  bool polled_ = false;           // the poll since the lease was granted came back
  uint64_t keepalives_ = 0;
  EtcdClient::CallId lease_call_ = 0;
  EtcdClient::CallId keepalive_call_ = 0;
  EtcdClient::CallId poll_call_ = 0;
  TimerId keepalive_timer_ = 0;
  TimerId watchdog_timer_ = 0;
  TimerId poll_timer_ = 0;
  TimerId retry_timer_ = 0;
  double backoff_ = 0;
  bool paused_ = false;
  bool reachable_ = false;
  bool unreachable_reported_ = false;
  std::set<std::string> live_nodes_;                  // PREFIX/nodes/* at the last poll
  std::map<std::string, std::string> all_holders_;    // every election under PREFIX: group -> node
  // Last: its calls' callbacks use the members above; destroyed first.
  EtcdClient client_;
};

}  // namespace vigil

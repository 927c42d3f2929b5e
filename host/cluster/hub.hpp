// ClusterHub: the daemon's side of a cluster adapter (adapter.hpp). Made at
// the first `cluster { ... }` the rules declare (a daemon without one has
// none of it), it makes the adapter the rules name, gives it the clustered
// groups at every load, and applies what the adapter says to the
// supervisor: takeover starts a group in order, lost stops it in order,
// fence stops it at once (bounded); each is an event (VGL0263-VGL0266)
// that rules hear (vigil.cluster.on). A failover stops the group
// completely here first, and only then asks the adapter to hand it over.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/cluster/adapter.hpp"
#include "host/cluster/cluster.hpp"

namespace vigil {

class EventLoop;
class EventLog;
class Supervisor;
struct Group;

struct ClusterEnv {
  EventLoop& loop;
  EventLog& log;
  Supervisor& supervisor;
};

// The adapter `config.adapter` names; null and `error` when there is none
// by that name here.
std::unique_ptr<ClusterAdapter> make_cluster_adapter(const ClusterConfig& config,
                                                     const ClusterEnv& env, ClusterCallbacks cb,
                                                     std::string& error);

// What the adapter `config.adapter` says of its settings at check time
// ("" fine; etcd: EtcdCluster::check, its fencing budget).
std::string check_cluster_config(const ClusterConfig& config);

// The stop-then-hand-over sequence of every failover: VGL0152 now; `hand`
// runs once nothing of `owner` runs here any more (Supervisor::
// after_stopped) and calls its callback with "" (VGL0153) or the error
// (VGL0154).
void stop_then_hand_over(Supervisor& sup, EventLog& log, const std::string& owner,
                         const std::string& reason, const std::string& node,
                         std::function<void(std::function<void(const std::string&)>)> hand,
                         const std::string& how);

// The same with a failover command (a ladder step's own, or the rules'
// without a cluster adapter): it runs once the owner has stopped.
void hand_over_by_command(Supervisor& sup, EventLog& log, const FailoverRun& run);

using AdapterFactory = std::function<std::unique_ptr<ClusterAdapter>(
    const ClusterConfig&, const ClusterEnv&, ClusterCallbacks, std::string& error)>;

class ClusterHub {
 public:
  // `factory`: how adapters are made (tests give a fake).
  ClusterHub(EventLoop& loop, EventLog& log, Supervisor& sup,
             AdapterFactory factory = make_cluster_adapter);
  ~ClusterHub();

  // After every load: the rules' cluster block (nullopt: none any more).
  // The adapter is made at the first; a changed block remakes the command
  // and keepalived adapters (they hold nothing), the others keep theirs
  // until vigil restarts (VGL0271): remaking an election would resign.
  void configure(const std::optional<ClusterConfig>& config);
  // The clustered groups of the rules just loaded: before the supervisor
  // applies them, so that it can ask holds() of each.
  void set_groups(const std::vector<std::string>& clustered);

  ClusterAdapter* adapter() { return adapter_.get(); }
  const ClusterAdapter* adapter() const { return adapter_.get(); }
  const ClusterConfig& config() const { return config_; }
  const std::string& node() const { return config_.node; }

  // Stops `owner` (a group or watch) completely, then hands it over: the
  // adapter's failover, or `command` when the rules give one for this
  // step. "" when it is under way, else why not (nothing happened).
  std::string failover(const std::string& owner, const std::string& reason,
                       const std::string& to_node, const std::vector<std::string>& command);
  // An operator started clustered group g here: it is held from now on
  // (the pacemaker adapter's start IS this), with a warning (VGL0269)
  // when another node holds it.
  void operator_start(Group& g);
  // An operator stopped it: a pacemaker-placed group goes standby.
  void operator_stop(Group& g);

  // Per clustered group (status): role, holder, lease_left, failed_on.
  nlohmann::json group_json(const std::string& group) const;
  // `vigil cluster`: the adapter, this node, the nodes and what each holds.
  nlohmann::json cluster_json() const;
  // A group's state may have changed: told to the adapter once per loop
  // iteration.
  void poke();

 private:
  ClusterCallbacks callbacks();
  void released(const std::string& group, const char* how, double since);

  EventLoop& loop_;
  EventLog& log_;
  Supervisor& sup_;
  AdapterFactory factory_;
  ClusterConfig config_;
  std::unique_ptr<ClusterAdapter> adapter_;
  bool poke_posted_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

// The seam between the supervisor and a cluster: who may run a clustered
// group. An adapter decides holdership (etcd: an election per group;
// pacemaker: the resource agent's start and stop; command and keepalived:
// this node always holds, the cluster software moves the service); the
// daemon applies it to the supervisor (a group runs only while held, and is
// `standby` otherwise) and tells the rules (vigil.cluster.on).
//
// Safety is the adapter's: it calls `fence` when this node must stop a
// group at once (a lease it cannot renew), and never lets the group be
// taken elsewhere before `stopped` says nothing of it is left here.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vigil {

// `cluster { ... }` as the rules declared it (checked in Lua).
struct ClusterConfig {
  std::string adapter;                 // etcd | pacemaker | command | keepalived
  std::string node;                    // this node's name (default: uname -n)
  std::vector<std::string> endpoints;  // etcd client URLs
  double ttl = 4;                      // etcd lease TTL, seconds
  double self_fence_after = 0;         // 0: ttl / 2
  double avoid_for = 1800;             // a group that failed here is not campaigned for
  std::string prefix = "vigil";        // etcd key prefix
  std::string ca, cert, key;           // TLS to etcd (optional)
  std::string resource;                // pacemaker: resource id pattern ("%g" = group)
  std::string track_file;              // keepalived: file written 0 (ok) / 1 (gave up); "%g" = group
  std::vector<std::string> failover;   // command: argv run after the group has stopped
  double failover_timeout = 60;
};

// What one clustered group looks like from this node (status, vigil cluster).
struct HoldInfo {
  std::string role;        // active | standby | fenced | avoiding | down (no cluster reachable)
  std::string holder;      // node that holds it ("" unknown or none)
  double lease_left = -1;  // seconds until this node's lease runs out (-1: n/a)
  std::map<std::string, double> failed_on;  // node -> wall time of its last failover
  nlohmann::json to_json() const;
};

// What the adapter tells the daemon. Every callback runs on the loop.
struct ClusterCallbacks {
  // This node now holds `group`: start it. `detail`: what the adapter
  // knows of it (etcd: the holder before, the election key's revision),
  // for the event the hub logs (VGL0263): adapters log no event of their
  // own for a takeover, a loss or a fence.
  std::function<void(const std::string& group, const nlohmann::json& detail)> takeover;
  // This node no longer holds it (resigned, moved by an operator, lost
  // the election): stop it in order, then call ClusterAdapter::stopped.
  std::function<void(const std::string& group, const std::string& reason)> lost;
  // Stop it NOW, bounded: TERM every member's process group, KILL after
  // `kill_after` seconds; then call ClusterAdapter::stopped. The adapter
  // guarantees self_fence_after + kill_after + reap < ttl. `detail` as
  // for takeover (etcd: the gap since the last renewal sent).
  std::function<void(const std::string& group, double kill_after, const std::string& reason,
                     const nlohmann::json& detail)>
      fence;
  // Anything worth an event the adapter does not log itself (holder
  // changed, cluster unreachable, no eligible node): for vigil.cluster.on.
  std::function<void(const std::string& what, const std::string& group, const nlohmann::json& detail)> notify;
};

class ClusterAdapter {
 public:
  virtual ~ClusterAdapter() = default;
  // The clustered groups of the rules (at load and every reload): new ones
  // are joined (campaigned for), missing ones left (resigned if held).
  virtual void set_groups(const std::vector<std::string>& groups) = 0;
  // The group's budget is exhausted and it has completely stopped here:
  // hand it over (etcd: record failed_on[node], resign; command: run the
  // command). `done(err)` when handed over ("" ok).
  virtual void failover(const std::string& group, const std::string& reason, const std::string& to_node,
                        std::function<void(const std::string& err)> done) = 0;
  // After `lost` or `fence`: nothing of the group runs here any more.
  virtual void stopped(const std::string& group) = 0;
  // An operator started a group this node does not hold (a warning is
  // logged by the caller when another node holds it).
  virtual bool holds(const std::string& group) const = 0;
  virtual HoldInfo info(const std::string& group) const = 0;
  // The nodes the adapter knows and what each holds (vigil cluster).
  virtual nlohmann::json nodes() const = 0;
  // A group's state may have changed (called at most once per loop
  // iteration, after the change): the keepalived adapter writes its
  // track file; the others need not care.
  virtual void groups_changed() {}
};

}  // namespace vigil

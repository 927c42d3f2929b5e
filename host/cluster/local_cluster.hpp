// The adapters for cluster software that decides by itself where a service
// runs (CLUSTERPRO/EXPRESSCLUSTER, Serviceguard, keepalived, anything with
// a command line): this node always holds its clustered groups, and a
// failover tells the cluster software, which moves the service.
//   command     the failover command runs once the group has stopped here
//               (VIGIL_GROUP, VIGIL_NODE, VIGIL_REASON in its environment)
//   keepalived  the group's health goes to `track_file` (0 ok, 1 gave up),
//               written atomically at every change; keepalived's
//               track_file with weight 0 turns a 1 into FAULT at once.
//               A failover command, when one is given, runs as well.
#pragma once

#include <map>
#include <set>
#include <string>

#include "host/cluster/adapter.hpp"

namespace vigil {

class EventLoop;
class EventLog;
class Supervisor;

class LocalCluster : public ClusterAdapter {
 public:
  LocalCluster(ClusterConfig config, EventLoop& loop, EventLog& log, Supervisor& sup,
               ClusterCallbacks cb);
  void set_groups(const std::vector<std::string>& groups) override;
  void failover(const std::string& group, const std::string& reason, const std::string& to_node,
                std::function<void(const std::string& err)> done) override;
  void stopped(const std::string&) override {}
  bool holds(const std::string& group) const override { return groups_.contains(group); }
  HoldInfo info(const std::string& group) const override;
  nlohmann::json nodes() const override;
  void groups_changed() override;

  // The track file of `group` ("%g" replaced), "" without one.
  std::string track_path(const std::string& group) const;

 private:
  void write_track(const std::string& path, int value, const std::string& group);

  ClusterConfig config_;
  EventLoop& loop_;
  EventLog& log_;
  Supervisor& sup_;
  ClusterCallbacks cb_;
  std::set<std::string> groups_;
  std::map<std::string, int> written_;  // track file -> the value it holds
  std::map<std::string, double> failed_at_;  // group -> wall time of its last failover here
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

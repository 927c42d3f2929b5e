// The Pacemaker adapter (`cluster { adapter = "pacemaker", resource = "%g" }`):
// Pacemaker places the group through the OCF agent ocf:vigil:group
// (cluster/ocf/group), whose start and stop are `vigil start GROUP` and
// `vigil stop GROUP`: the holding is the agent's, never this adapter's, so
// nothing is taken over at load. What Vigil tells Pacemaker, once the
// group has stopped here:
//   failover            crm_resource --fail -r RESOURCE -N NODE
//       the resource failed on this node: with migration-threshold=1 it
//       moves at once, not at the next monitor
//   failover --to NODE  crm_resource --clear -r RESOURCE (what an earlier
//       move left), then crm_resource --move -r RESOURCE -N TO --lifetime
//       PT5M: the preference expires by itself
// Never --ban: the constraint stays in the CIB past its lifetime and keeps
// the group off this node even when it is the last (docs/cluster.md).
#pragma once

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "host/cluster/adapter.hpp"

namespace vigil {

// One crm_resource run for `group`; the runner calls `done("")` when it
// exited 0, else with what went wrong. The daemon runs it as a failover
// command (never on the loop's thread blocking).
struct PacemakerCommand {
  std::string group, reason, to_node;
  std::vector<std::string> argv;
};
using PacemakerRunner =
    std::function<void(const PacemakerCommand&, std::function<void(const std::string& err)> done)>;

// Whether the daemon holds `group` now (its agent started it and has not
// stopped it): the supervisor's record, as the daemon gives it.
using PacemakerHeld = std::function<bool(const std::string& group)>;

class PacemakerCluster : public ClusterAdapter {
 public:
  PacemakerCluster(ClusterConfig config, PacemakerRunner run, PacemakerHeld held = {});

  void set_groups(const std::vector<std::string>& groups) override;
  void failover(const std::string& group, const std::string& reason, const std::string& to_node,
                std::function<void(const std::string& err)> done) override;
  void stopped(const std::string&) override {}
  // The agent's start is the holding (Pacemaker placed it here); where
  // else it runs is Pacemaker's to say (crm_mon).
  bool holds(const std::string& group) const override;
  HoldInfo info(const std::string& group) const override;
  nlohmann::json nodes() const override;

  // The resource id of `group`: `resource` with "%g" replaced ("%%" is a
  // literal %; default "%g").
  std::string resource_of(const std::string& group) const;
  std::vector<std::string> fail_argv(const std::string& group) const;
  std::vector<std::string> clear_argv(const std::string& group) const;
  std::vector<std::string> move_argv(const std::string& group, const std::string& to_node) const;

  static constexpr const char* kMoveLifetime = "PT5M";

 private:
  ClusterConfig config_;
  PacemakerRunner run_;
  PacemakerHeld held_;
  std::set<std::string> groups_;
};

}  // namespace vigil

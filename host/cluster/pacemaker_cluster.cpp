#include "host/cluster/pacemaker_cluster.hpp"

#include <memory>
#include <utility>

namespace vigil {

PacemakerCluster::PacemakerCluster(ClusterConfig config, PacemakerRunner run, PacemakerHeld held)
    : config_(std::move(config)), run_(std::move(run)), held_(std::move(held)) {}

bool PacemakerCluster::holds(const std::string& group) const {
  return groups_.contains(group) && held_ && held_(group);
}

void PacemakerCluster::set_groups(const std::vector<std::string>& groups) {
  groups_ = std::set<std::string>(groups.begin(), groups.end());
}

std::string PacemakerCluster::resource_of(const std::string& group) const {
  const std::string& pattern = config_.resource.empty() ? std::string("%g") : config_.resource;
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && (pattern[i + 1] == 'g' || pattern[i + 1] == '%')) {
      out += pattern[i + 1] == 'g' ? group : "%";
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

std::vector<std::string> PacemakerCluster::fail_argv(const std::string& group) const {
  return {"crm_resource", "--fail", "-r", resource_of(group), "-N", config_.node};
}

std::vector<std::string> PacemakerCluster::clear_argv(const std::string& group) const {
  return {"crm_resource", "--clear", "-r", resource_of(group)};
}

std::vector<std::string> PacemakerCluster::move_argv(const std::string& group,
                                                     const std::string& to_node) const {
  return {"crm_resource", "--move", "-r", resource_of(group), "-N", to_node, "--lifetime",
          kMoveLifetime};
}

void PacemakerCluster::failover(const std::string& group, const std::string& reason,
                                const std::string& to_node,
                                std::function<void(const std::string& err)> done) {
  if (to_node.empty()) {
    run_({group, reason, to_node, fail_argv(group)}, std::move(done));
    return;
  }
  // A move by hand: what an earlier move left goes first (it may pin the
  // group elsewhere); its failure (nothing to clear) does not stop the move.
  auto move = std::make_shared<PacemakerCommand>(PacemakerCommand{group, reason, to_node, move_argv(group, to_node)});
  PacemakerRunner run = run_;
  run_({group, reason, to_node, clear_argv(group)},
       [run, move, done = std::move(done)](const std::string&) mutable {
         run(*move, std::move(done));
       });
}

HoldInfo PacemakerCluster::info(const std::string& group) const {
  HoldInfo h;
  bool here = holds(group);
  h.role = here ? "active" : "standby";
  h.holder = here ? config_.node : "";  // elsewhere: crm_mon says where
  return h;
}

nlohmann::json PacemakerCluster::nodes() const {
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& g : groups_)
    if (holds(g)) groups.push_back(g);
  // This node only: the others are Pacemaker's (crm_mon).
  return nlohmann::json::array({{{"node", config_.node}, {"self", true}, {"holds", groups}}});
}

}  // namespace vigil

// Handing over to a cluster. A failover stops the group (or watch)
// completely, then the cluster adapter hands it over (host/cluster/hub.hpp);
// a reboot is guarded: off unless the daemon was started with
// --allow-reboot, and at most one per `reboot_interval`, remembered across
// the reboot in the state dir.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace vigil {

class EventLog;
class Supervisor;

struct ClusterOptions {
  bool allow_reboot = false;
  double reboot_interval = 3600;  // seconds between two reboots
  std::string state_dir;          // where the last reboot's time is kept
};

// Whether a reboot may happen now (wall seconds); when it may, the time is
// recorded first, so a node that reboots into the same failure waits out
// the interval. Returns "" or why not.
std::string claim_reboot(const ClusterOptions& o, double now);

// This node's name when the rules name none: uname -n.
std::string node_name();

// Runs a failover command for `owner` (the group or watch handed over):
// VIGIL_GROUP (empty for a watch), VIGIL_OWNER, VIGIL_NODE, VIGIL_REASON
// and, when an operator named one, VIGIL_TO_NODE in its environment.
// `done("")` when it exited 0, else with what went wrong (it could not
// start, exited non-zero, was killed at `timeout`).
struct FailoverRun {
  std::string owner;
  bool group = false;
  std::string node, reason, to_node;
  std::vector<std::string> argv;
  double timeout = 60;
};
void run_failover_command(Supervisor& sup, const FailoverRun& run,
                          std::function<void(const std::string& err)> done);

}  // namespace vigil

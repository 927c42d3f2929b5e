// Handing over to a cluster. This part: a failover runs the
// configured command (cluster adapters come later); a reboot is guarded:
// off unless the daemon was started with --allow-reboot, and at most one
// per `reboot_interval`, remembered across the reboot in the state dir.
#pragma once

#include <string>

namespace vigil {

struct ClusterOptions {
  bool allow_reboot = false;
  double reboot_interval = 3600;  // seconds between two reboots
  std::string state_dir;          // where the last reboot's time is kept
};

// Whether a reboot may happen now (wall seconds); when it may, the time is
// recorded first, so a node that reboots into the same failure waits out
// the interval. Returns "" or why not.
std::string claim_reboot(const ClusterOptions& o, double now);

}  // namespace vigil

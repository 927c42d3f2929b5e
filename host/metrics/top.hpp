// `vigil top`: the latest metrics samples over the control socket, as a
// table refreshed every second (or one frame with --once).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vigil {

struct TopOptions {
  std::string socket;
  double timeout = 10;  // seconds the daemon may stay silent (exit 4 then)
  bool once = false;
  bool json = false;     // one frame, the reply's watches as JSON
  double refresh = 1.0;  // seconds between frames
};

// Renders one frame (the "metrics" reply) as a table.
std::string render_top(const nlohmann::json& reply);
// Runs the view; the process exit code.
int run_top(const TopOptions& options);

}  // namespace vigil

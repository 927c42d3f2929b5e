#include "host/cluster/local_cluster.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "host/cluster/cluster.hpp"
#include "host/core/clock.hpp"
#include "host/core/events.hpp"
#include "host/core/fd.hpp"
#include "host/core/strings.hpp"
#include "host/loop/event_loop.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

LocalCluster::LocalCluster(ClusterConfig config, EventLoop& loop, EventLog& log, Supervisor& sup,
                           ClusterCallbacks cb)
    : config_(std::move(config)), loop_(loop), log_(log), sup_(sup), cb_(std::move(cb)) {}

void LocalCluster::set_groups(const std::vector<std::string>& groups) {
  std::set<std::string> next(groups.begin(), groups.end());
  for (const auto& g : next) {
    if (groups_.contains(g)) continue;
    // The cluster software put the service on this node (or it would not
    // run vigil's rules for it here): held from the start. Told after the
    // reload that declared it, from the loop.
    loop_.post([this, g, alive = std::weak_ptr<bool>(alive_)] {
      if (!alive.expired() && groups_.contains(g) && cb_.takeover) cb_.takeover(g, nlohmann::json::object());
    });
  }
  groups_ = std::move(next);
  groups_changed();
}

void LocalCluster::failover(const std::string& group, const std::string& reason,
                            const std::string& to_node,
                            std::function<void(const std::string& err)> done) {
  failed_at_[group] = wall_seconds();  // the failure memory status shows
  groups_changed();  // the give-up is in the track file before anything else happens
  if (config_.failover.empty()) {
    if (!track_path(group).empty()) return done("");  // keepalived moves the address itself
    return done("no failover command configured (cluster { failover = \"...\" } in the rules)");
  }
  FailoverRun run;
  run.owner = group;
  run.group = sup_.find_group(group) != nullptr;
  run.node = config_.node;
  run.reason = reason;
  run.to_node = to_node;
  run.argv = config_.failover;
  run.timeout = config_.failover_timeout;
  run_failover_command(sup_, run, std::move(done));
}

HoldInfo LocalCluster::info(const std::string& group) const {
  HoldInfo h;
  h.role = holds(group) ? "active" : "standby";
  h.holder = holds(group) ? config_.node : "";
  if (auto it = failed_at_.find(group); it != failed_at_.end()) h.failed_on[config_.node] = it->second;
  return h;
}

nlohmann::json LocalCluster::nodes() const {
  return nlohmann::json::array({{{"node", config_.node}, {"self", true}, {"holds", groups_}}});
}

std::string LocalCluster::track_path(const std::string& group) const {
  std::string p = config_.track_file;
  if (p.empty()) return p;
  for (size_t at = p.find("%g"); at != std::string::npos; at = p.find("%g", at + group.size()))
    p.replace(at, 2, group);
  return p;
}

// 1 when the group gave up here (exhausted, or handed over and standby),
// else 0. One file for all groups (no "%g"): 1 when any gave up.
void LocalCluster::groups_changed() {
  if (config_.track_file.empty()) return;
  std::map<std::string, std::pair<int, std::string>> values;
  for (const auto& name : groups_) {
    const Group* g = sup_.find_group(name);
    int v = g && (g->exhausted || sup_.group_state(*g) == "exhausted") ? 1 : 0;
    auto& slot = values[track_path(name)];
    if (v >= slot.first) slot = {v, name};
  }
  for (const auto& [path, v] : values) {
    auto it = written_.find(path);
    if (it != written_.end() && it->second == v.first) continue;
    write_track(path, v.first, v.second);
  }
}

void LocalCluster::write_track(const std::string& path, int value, const std::string& group) {
  // Written whole and renamed over: keepalived never reads half a file.
  std::string tmp = path + ".tmp";
  std::string text = std::to_string(value) + "\n";
  std::string err;
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd)
      err = "open " + tmp + ": " + errno_text(errno);
    else if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      err = "write " + tmp + ": " + errno_text(errno);
  }
  if (err.empty() && ::rename(tmp.c_str(), path.c_str()) != 0)
    err = "rename to " + path + ": " + errno_text(errno);
  if (!err.empty()) {
    written_.erase(path);  // tried again at the next change
    log_.emit(Msg::TrackFileFailed, group, {{"path", path}, {"error", err}});
    return;
  }
  written_[path] = value;
}

}  // namespace vigil

#include "host/cluster/cluster.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "host/core/fd.hpp"
#include "host/core/strings.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

std::string claim_reboot(const ClusterOptions& o, double now) {
  if (!o.allow_reboot)
    return "reboots are disabled (start vigil with --allow-reboot to enable them)";
  if (o.state_dir.empty()) return "no state directory to remember the last reboot in";
  std::string path = o.state_dir + "/last-reboot";
  {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    char buf[64] = {};
    if (fd.valid() && ::read(fd.get(), buf, sizeof buf - 1) > 0) {
      double last = std::strtod(buf, nullptr);
      if (last > 0 && now - last < o.reboot_interval)
        return "the last reboot was " + seconds_text(now - last) + " ago (at most one per " +
               seconds_text(o.reboot_interval) + ")";
    }
  }
  std::string tmp = path + ".tmp";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return "cannot record the reboot in " + path + ": " + errno_text(errno);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%.3f\n", now);
  if (::write(fd.get(), buf, n) != n || ::fsync(fd.get()) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0)
    return "cannot record the reboot in " + path + ": " + errno_text(errno);
  return {};
}

std::string node_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

void run_failover_command(Supervisor& sup, const FailoverRun& run,
                          std::function<void(const std::string& err)> done) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"VIGIL_GROUP", run.group ? run.owner : ""},
      {"VIGIL_OWNER", run.owner},
      {"VIGIL_NODE", run.node},
      {"VIGIL_REASON", run.reason}};
  if (!run.to_node.empty()) env.emplace_back("VIGIL_TO_NODE", run.to_node);
  std::string command = join(run.argv, " ");
  std::string err;
  auto pid = sup.run_command(
      run.argv, env, run.timeout,
      [done, command](const ExitStatus& st, bool timed_out) {
        if (st.known && !st.signal && st.code == 0) return done("");
        done(command + (timed_out   ? ": timed out"
                        : st.signal ? ": killed by " + signal_name(st.signal)
                                    : ": exited " + std::to_string(st.code)));
      },
      err);
  if (!pid) done(command + ": " + err);
}

}  // namespace vigil

// vigil_group_bench: a chain of N watches in one rest_for_one group. The
// head is SIGKILLed; vigil stops the N-1 dependents in reverse order and
// starts all N again, each once the one before runs. Measured: kill ->
// the tail's VGL0101 (event times, ms), against a floor that does the same
// stops and starts in a tight loop without vigil (kill + wait each, then
// vfork + exec each). Overhead per member =
// (vigil - floor) / N.
//
//   vigil_group_bench [--members N] [--rounds R] [--coalesce SECONDS]
//
// Members are /bin/sleep: ready as soon as they run (no probes, settle 0),
// so what is left is vigil's own work. Backoff is off: rounds follow each
// other quickly and would otherwise wait 1, 2, 4... s. Root not needed.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "host/control/client.hpp"
#include "host/core/clock.hpp"

namespace {

double now_wall() {
  return vigil::wall_seconds();
}
double now_mono() {
  return vigil::mono_seconds(vigil::MonoClock::now());
}

// "2026-11-23T09:15:18.149Z" -> wall seconds.
double parse_time(const std::string& s) {
  tm t{};
  strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &t);
  double frac = 0;
  if (auto dot = s.find('.'); dot != std::string::npos) frac = std::atof(s.c_str() + dot);
  return static_cast<double>(timegm(&t)) + frac;
}

std::string name(int i) {
  char b[16];
  snprintf(b, sizeof b, "m%03d", i);
  return b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// vfork + exec /bin/sleep (as vigil spawns): returns once the exec happened.
pid_t start_sleep() {
  pid_t pid = vfork();
  if (pid == 0) {
    execl("/bin/sleep", "sleep", "100000", nullptr);
    _exit(127);
  }
  return pid;
}

double floor_round(int n) {
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) pids.push_back(start_sleep());
  double t0 = now_mono();
  kill(pids[0], SIGKILL);
  waitpid(pids[0], nullptr, 0);
  for (int i = n - 1; i >= 1; --i) {
    kill(pids[i], SIGTERM);
    waitpid(pids[i], nullptr, 0);
  }
  for (int i = 0; i < n; ++i) pids[i] = start_sleep();
  double t = now_mono() - t0;
  for (pid_t p : pids) {
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int members = 50, rounds = 7;
  std::string coalesce;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--members") members = std::atoi(argv[i + 1]);
    if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    if (a == "--coalesce") coalesce = argv[i + 1];
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string dir = "/tmp/vigil-group-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(dir + "/rules");
  {
    std::ofstream r(dir + "/rules/chain.lua");
    std::string list;
    for (int i = 1; i <= members; ++i) {
      r << "watch \"" << name(i) << "\" { start = { \"/bin/sleep\", \"100000\" }, log = false }\n";
      list += "\"" + name(i) + "\", ";
    }
    r << "group \"chain\" { strategy = \"rest_for_one\", restart = { limit = 1000, within = "
         "\"1h\", "
         "backoff = \"0s..0s\" }, "
      << (coalesce.empty() ? "" : "coalesce = " + coalesce + ", ") << list << "}\n";
  }
  std::string sock = dir + "/vigil.sock";
  pid_t daemon = fork();
  if (daemon == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(VIGIL_BINARY, "vigil", "run", "--rules", (dir + "/rules").c_str(), "--state-dir",
          (dir + "/state").c_str(), "--socket", sock.c_str(), "--quiet", nullptr);
    _exit(127);
  }
  std::string err;
  auto status = [&] { return vigil::control_request(sock, {{"cmd", "status"}}, err); };
  auto pid_of = [&](const nlohmann::json& st, const std::string& n) -> pid_t {
    for (const auto& w : st["watches"])
      if (w["name"] == n && w["pid"].is_number() && w["state"] == "running")
        return w["pid"].get<pid_t>();
    return 0;
  };
  auto wait_all = [&](double deadline) {
    while (now_mono() < deadline) {
      auto st = status();
      if (st) {
        bool all = true;
        for (int i = 1; i <= members && all; ++i) all = pid_of(*st, name(i)) != 0;
        if (all) return *st;
      }
      usleep(20000);
    }
    return nlohmann::json();
  };
  auto st = wait_all(now_mono() + 60);
  if (st.is_null()) {
    fprintf(stderr, "vigil did not start the chain\n");
    kill(daemon, SIGKILL);
    return 1;
  }
  std::vector<double> times;
  for (int round = 0; round < rounds; ++round) {
    auto evs = vigil::control_request(sock, {{"cmd", "events"}, {"n", 1}}, err);
    uint64_t seq = (*evs)["events"].back()["seq"].get<uint64_t>();
    pid_t head = pid_of(st, name(1));
    double t0 = now_wall();
    kill(head, SIGKILL);
    double tail = 0;
    double deadline = now_mono() + 60;
    while (tail == 0 && now_mono() < deadline) {
      usleep(5000);
      auto r = vigil::control_request(sock, {{"cmd", "events"}, {"n", 4 * members + 50}}, err);
      if (!r) continue;
      for (const auto& e : (*r)["events"])
        if (e["seq"].get<uint64_t>() > seq && e["id"] == "VGL0101" && e["watch"] == name(members))
          tail = parse_time(e["time"].get<std::string>());
    }
    if (tail == 0) {
      fprintf(stderr, "round %d: the chain did not come back\n", round);
      break;
    }
    times.push_back(tail - t0);
    if (getenv("VERBOSE")) fprintf(stderr, "round %d: %.1f ms\n", round, (tail - t0) * 1e3);
    st = wait_all(now_mono() + 60);
  }
  kill(daemon, SIGTERM);
  waitpid(daemon, nullptr, 0);
  std::filesystem::remove_all(dir);

  std::vector<double> floors;
  for (int round = 0; round < rounds; ++round) floors.push_back(floor_round(members));
  double v = median(times), f = median(floors);
  printf("members %d, rounds %zu, coalesce %s\n", members, times.size(),
         coalesce.empty() ? "default (50ms)" : coalesce.c_str());
  printf("vigil: kill head -> tail started: median %.1f ms (min %.1f, max %.1f)\n", v * 1e3,
         *std::min_element(times.begin(), times.end()) * 1e3,
         *std::max_element(times.begin(), times.end()) * 1e3);
  printf("floor: same stops and starts without vigil: median %.1f ms\n", f * 1e3);
  printf("vigil overhead per member: %.2f ms\n", (v - f) / members * 1e3);
  return 0;
}

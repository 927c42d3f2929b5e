#include "tests/e2e/netns_cluster.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace vigil::test {

namespace {

constexpr const char* kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool on_path(const std::string& exe) {
  return run_command({"/bin/sh", "-c", "command -v " + exe + " >/dev/null"}).code == 0;
}

}  // namespace

std::string base64(const std::string& s) {
  std::string out;
  unsigned val = 0;
  int bits = -6;
  for (unsigned char c : s) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out.push_back(kB64[(val >> bits) & 0x3F]);
      bits -= 6;
    }
  }
  if (bits > -6) out.push_back(kB64[((val << 8) >> (bits + 8)) & 0x3F]);
  while (out.size() % 4) out.push_back('=');
  return out;
}

std::string unbase64(const std::string& s) {
  std::string out;
  unsigned val = 0;
  int bits = -8;
  for (char c : s) {
    const char* p = strchr(kB64, c);
    if (c == '=' || c == '\0' || !p) break;
    val = (val << 6) + static_cast<unsigned>(p - kB64);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::string EtcdNetns::missing() {
  if (geteuid() != 0) return "needs root (network namespaces)";
  for (const char* exe : {"ip", "etcd", "curl"})
    if (!on_path(exe)) return std::string("needs ") + exe + " (etcd-server, iproute2, curl)";
  return "";
}

bool EtcdNetns::sh(const std::string& cmd) {
  auto r = run_command({"/bin/sh", "-c", cmd});
  if (r.code == 0) return true;
  error_ = cmd + ": exit " + std::to_string(r.code) + ": " + r.err;
  return false;
}

EtcdNetns::EtcdNetns() {
  prefix_ = "vc" + std::to_string(getpid());
  char tmpl[] = "/tmp/vigil-etcd-XXXXXX";
  dir_ = mkdtemp(tmpl);
  if (std::string m = missing(); !m.empty()) {
    error_ = m;
    return;
  }
  // RECIPES-HA §1, as written there.
  const std::string sw = prefix_ + "sw";
  std::string cmd = "ip netns add " + sw + " && ip -n " + sw + " link add br0 type bridge && ip -n " +
                    sw + " link set br0 up";
  for (int i = 1; i <= kMembers; ++i) {
    std::string ns = netns(i), h = ns + "h", s = ns + "s";
    cmd += " && ip netns add " + ns + " && ip link add " + h + " type veth peer name " + s +
           " && ip link set " + h + " netns " + ns + " && ip link set " + s + " netns " + sw +
           " && ip -n " + sw + " link set " + s + " master br0 && ip -n " + sw + " link set " + s +
           " up && ip -n " + ns + " addr add " + addr(i) + "/24 dev " + h + " && ip -n " + ns +
           " link set " + h + " up && ip -n " + ns + " link set lo up";
  }
  if (!sh(cmd)) return;
  for (int i = 1; i <= kMembers; ++i) start(i);
  for (int i = 1; i <= kMembers; ++i)
    if (pids_[i - 1] <= 0) {
      error_ = "cannot start etcd member " + std::to_string(i);
      return;
    }
  if (!wait_writable(1)) {
    error_ = "the etcd cluster took no write within 30 s; m1.log: " + read_file(dir_ + "/m1.log");
    return;
  }
  ok_ = true;
}

void EtcdNetns::start(int i) {
  std::string ic;
  for (int m = 1; m <= kMembers; ++m)
    ic += (m > 1 ? "," : "") + std::string("m") + std::to_string(m) + "=http://" + addr(m) + ":2380";
  std::string me = "http://" + addr(i);
  std::vector<std::string> argv = in_node(i);
  for (const std::string& a : std::vector<std::string>{
           "etcd", "--name", "m" + std::to_string(i), "--data-dir", dir_ + "/m" + std::to_string(i),
        "--listen-client-urls", "http://127.0.0.1:2379," + me + ":2379", "--advertise-client-urls",
        me + ":2379", "--listen-peer-urls", me + ":2380", "--initial-advertise-peer-urls",
        me + ":2380", "--initial-cluster", ic, "--initial-cluster-token", prefix_,
        "--initial-cluster-state", "new", "--heartbeat-interval=100", "--election-timeout=1000",
           // A member back from a partition would otherwise force an
           // election (3.4 has pre-vote off): the others' keepalives stall
           // ~1.5 s and a healthy holder fences itself.
           "--pre-vote=true",
        "--log-level=warn"})
    argv.push_back(a);
  std::string log = dir_ + "/m" + std::to_string(i) + ".log";
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    int nul = open("/dev/null", O_RDONLY);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    close_range(3, ~0U, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());  // ip netns exec execs etcd: this pid is etcd's
    _exit(127);
  }
  pids_[i - 1] = pid;
}

EtcdNetns::~EtcdNetns() {
  for (pid_t& p : pids_)
    if (p > 0) {
      kill(p, SIGKILL);
      waitpid(p, nullptr, 0);
      p = -1;
    }
  // Whatever a test left in its namespaces (a daemon, its children): by
  // pid, namespace by namespace, then the namespaces (the veths go too).
  std::vector<std::string> all = {prefix_ + "sw"};
  for (int i = 1; i <= kMembers; ++i) all.push_back(netns(i));
  for (const auto& ns : all) {
    for (int round = 0; round < 3; ++round) {
      auto r = run_command({"ip", "netns", "pids", ns});
      std::istringstream in(r.out);
      std::vector<pid_t> killed;
      for (long pid; in >> pid;)
        if (kill(static_cast<pid_t>(pid), SIGKILL) == 0) killed.push_back(static_cast<pid_t>(pid));
      if (killed.empty()) break;
      wait_for([&] {
        for (pid_t p : killed) waitpid(p, nullptr, WNOHANG);  // ours (or orphans, reparented to us)
        return run_command({"ip", "netns", "pids", ns}).out.empty();
      }, std::chrono::seconds(3));
    }
    run_command({"ip", "netns", "del", ns});
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string EtcdNetns::member_log(int i) const {
  std::string log = read_file(dir_ + "/m" + std::to_string(i) + ".log");
  return "m" + std::to_string(i) + ".log: ..." + log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
}

bool EtcdNetns::partition(int i) {
  return sh("ip -n " + netns(i) + " link set " + netns(i) + "h down");
}

bool EtcdNetns::heal(int i) {
  return sh("ip -n " + netns(i) + " link set " + netns(i) + "h up");
}

bool EtcdNetns::kill_member(int i) {
  pid_t& p = pids_[i - 1];
  if (p <= 0) return false;
  kill(p, SIGKILL);
  bool reaped = waitpid(p, nullptr, 0) == p;
  p = -1;
  return reaped;
}

bool EtcdNetns::start_member(int i) {
  if (pids_[i - 1] > 0) return false;
  start(i);
  return pids_[i - 1] > 0;
}

nlohmann::json EtcdNetns::gateway(int i, const std::string& path, const nlohmann::json& body,
                                  double timeout_s) const {
  std::vector<std::string> argv = in_node(i);
  char t[32];
  snprintf(t, sizeof t, "%g", timeout_s);
  for (const std::string& a : std::vector<std::string>{"curl", "-s", "--max-time", t, "-X", "POST",
                                                      "-d", body.dump(),
                                                      "http://127.0.0.1:2379" + path})
    argv.push_back(a);
  auto r = run_command(argv);
  if (r.code != 0) return nullptr;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

bool EtcdNetns::put(int i, const std::string& key, const std::string& value) const {
  auto r = gateway(i, "/v3/kv/put", {{"key", base64(key)}, {"value", base64(value)}}, 1);
  // A put's answer is its header (the new revision); an error has "error".
  return r.is_object() && r.contains("header") && !r.contains("error");
}

std::string EtcdNetns::get(int i, const std::string& key) const {
  auto r = gateway(i, "/v3/kv/range", {{"key", base64(key)}}, 1);
  if (!r.is_object() || !r.contains("kvs") || r["kvs"].empty()) return "";
  return unbase64(r["kvs"][0].value("value", ""));
}

bool EtcdNetns::wait_writable(int i, std::chrono::milliseconds timeout) const {
  return wait_for([&] { return put(i, "fixture/writable", "1"); }, timeout);
}

std::string EtcdNetns::cluster_block(const std::string& node, const std::string& ttl,
                                     const std::string& extra) {
  return "cluster { adapter = \"etcd\", endpoints = { \"http://127.0.0.1:2379\" }, node = \"" +
         node + "\", ttl = \"" + ttl + "\"" + (extra.empty() ? "" : ", " + extra) + " }\n";
}

std::string EtcdNetns::holder(const std::string& group, int via) const {
  auto r = gateway(via, "/v3/election/leader", {{"name", base64("vigil/election/" + group)}}, 1);
  if (!r.is_object() || !r.contains("kv")) return "";
  return unbase64(r["kv"].value("value", ""));
}

bool EtcdNetns::node_live(const std::string& node, int via) const {
  auto r = gateway(via, "/v3/kv/range", {{"key", base64("vigil/nodes/" + node)}}, 1);
  return r.is_object() && r.contains("kvs") && !r["kvs"].empty();
}

std::vector<std::string> EtcdNetns::candidates(const std::string& group, int via) const {
  std::string prefix = "vigil/election/" + group + "/";
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);
  auto r = gateway(via, "/v3/kv/range",
                   {{"key", base64(prefix)}, {"range_end", base64(end)}, {"sort_target", "CREATE"}}, 1);
  std::vector<std::string> out;
  if (r.is_object() && r.contains("kvs"))
    for (const auto& kv : r["kvs"]) out.push_back(unbase64(kv.value("value", "")));
  return out;
}

const std::vector<std::string> kOrdersMembers = {"db", "app"};

namespace {
std::string tier(const std::string& name, int port, int needs) {
  static const std::string kTier = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/tier.py";
  return "watch \"" + name + "\" { start = { \"python3\", \"" + kTier + "\", \"" +
         std::to_string(port) + "\"" + (needs ? ", \"" + std::to_string(needs) + "\"" : "") +
         " }, stop = { timeout = \"2s\" }, probes = { tcp { port = " + std::to_string(port) +
         ", every = \"100ms\", readiness = true } } }\n";
}
}  // namespace

std::string orders_rules(const std::string& node, const std::string& ttl,
                         const std::string& cluster_extra, const std::string& group_extra) {
  return EtcdNetns::cluster_block(node, ttl, cluster_extra) + tier("db", 7101, 0) +
         tier("app", 7102, 7101) + "group \"orders\" { clustered = true, on_exhausted = \"failover\", " +
         (group_extra.empty() ? "restart = { limit = 2, within = \"1m\" }" : group_extra) +
         ", \"db\", \"app\" }\n";
}

VigilNode::VigilNode(const EtcdNetns& c, int index, const std::string& rules)
    : name("node" + std::to_string(index)) {
  d.set_prefix(c.in_node(index));
  d.write_rule("orders.lua", rules);
}

std::vector<nlohmann::json> VigilNode::events() const { return read_events(d.state_dir()); }

std::vector<nlohmann::json> VigilNode::find(const std::string& id, const std::string& watch,
                                            size_t from) const {
  std::vector<nlohmann::json> out;
  auto all = events();
  for (size_t i = from; i < all.size(); ++i)
    if (all[i]["id"] == id && (watch.empty() || all[i]["watch"] == watch)) out.push_back(all[i]);
  return out;
}

bool VigilNode::wait(const std::string& id, const std::string& watch, size_t at_least,
                     std::chrono::milliseconds timeout, size_t from) const {
  return wait_for([&] { return find(id, watch, from).size() >= at_least; }, timeout);
}

bool VigilNode::ready() const {
  for (const auto& m : kOrdersMembers) {
    auto w = d.watch(m);
    if (!w.is_object() || !w.value("ready", false)) return false;
  }
  return true;
}

bool VigilNode::none_running() const {
  for (const auto& m : kOrdersMembers)
    if (d.watch_pid(m) != 0) return false;
  return true;
}

std::vector<RunInterval> VigilNode::runs() const {
  return run_intervals(events(), kOrdersMembers, name);
}

double now_wall() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double last_end(const std::vector<RunInterval>& runs) {
  double t = 0;
  for (const auto& r : runs) t = std::max(t, r.to);
  return t;
}

double first_start_after(const std::vector<RunInterval>& runs, double after) {
  double t = std::numeric_limits<double>::infinity();
  for (const auto& r : runs)
    if (r.from > after) t = std::min(t, r.from);
  return t;
}

std::vector<nlohmann::json> read_events(const std::string& state_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(state_dir + "/events.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

double event_time(const nlohmann::json& event) {
  // "2026-12-07T07:33:55.123Z"
  std::string t = event.value("time", "");
  struct tm tm{};
  const char* rest = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  double frac = 0;
  if (*rest == '.') frac = strtod(rest, nullptr);
  return static_cast<double>(timegm(&tm)) + frac;
}

std::vector<RunInterval> run_intervals(const std::vector<nlohmann::json>& events,
                                       const std::vector<std::string>& watches,
                                       const std::string& node) {
  std::vector<RunInterval> out;
  auto member = [&](const nlohmann::json& e) {
    if (!e["watch"].is_string()) return false;
    for (const auto& w : watches)
      if (e["watch"] == w) return true;
    return false;
  };
  auto pid_of = [](const nlohmann::json& e) -> long {
    const auto& f = e["fields"];
    return f.is_object() && f.contains("pid") && f["pid"].is_number() ? f["pid"].get<long>() : 0;
  };
  const double open = std::numeric_limits<double>::infinity();
  for (const auto& e : events) {
    if (!member(e)) continue;
    std::string id = e.value("id", ""), w = e["watch"];
    double t = event_time(e);
    if (id == "VGL0101" || id == "VGL0121") {  // started, adopted
      out.push_back({node, w, pid_of(e), t, open});
    } else if (id == "VGL0102") {  // exited: that pid
      for (auto& r : out)
        if (r.watch == w && r.pid == pid_of(e) && r.to == open) r.to = t;
    } else if (id == "VGL0109") {  // stopped: nothing of the watch runs
      for (auto& r : out)
        if (r.watch == w && r.to == open) r.to = t;
    }
  }
  return out;
}

std::string overlaps(const std::vector<RunInterval>& a, const std::vector<RunInterval>& b) {
  std::ostringstream out;
  out.precision(15);
  for (const auto& x : a)
    for (const auto& y : b)
      if (x.node != y.node && x.from < y.to && y.from < x.to)
        out << x.node << ":" << x.watch << "[" << x.pid << "] " << x.from << ".." << x.to << " and "
            << y.node << ":" << y.watch << "[" << y.pid << "] " << y.from << ".." << y.to << "\n";
  return out.str();
}

}  // namespace vigil::test

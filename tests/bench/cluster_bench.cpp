// vigil_cluster_bench: the etcd adapter against a real etcd (one member on
// loopback, started here), two nodes (EtcdCluster "a" and "b") in this
// process on one loop, the daemon's part simulated (a group "runs" from
// takeover until its stop is done, 50 ms after lost/fence).
//
//   1. failover() on the holder -> takeover on the other node, at ttl 4 s
//      and 10 s, N times back and forth; overlap (both "running") counted.
//   2. a partition (the holder's keepalives, grants and revoke stop) ->
//      its fence, and -> the other's takeover (the old lease expiring).
//   3. steady state: 50 groups held by a, b standing by for all 50:
//      CPU of this process and of etcd, requests and bytes per second.
//
// Not a test, not registered with ctest. See README.md here.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "host/cluster/etcd_election.hpp"
#include "tests/unit/etcd_fixture.hpp"

using namespace vigil;
using namespace std::chrono_literals;
using testing_etcd::run_until;

namespace {

double now_s() { return to_seconds(MonoClock::now().time_since_epoch()); }

double cpu_self() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

double cpu_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), {});
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> field; i++) {
    if (i == 14) ut = std::stod(field);
    if (i == 15) st = std::stod(field);
  }
  return (ut + st) / sysconf(_SC_CLK_TCK);
}

struct Counts {
  uint64_t requests = 0;
  uint64_t bytes = 0;  // request bodies + response bodies (HTTP headers not counted)
};

class CountingTransport : public EtcdTransport {
 public:
  CountingTransport(EventLoop& loop, Counts* counts) : inner_(http_etcd_transport(loop)), counts_(counts) {}
  uint64_t post(HttpClientRequest request, std::function<void(const HttpResponse&)> done) override {
    counts_->requests++;
    counts_->bytes += request.body.size();
    return inner_->post(std::move(request), [this, done = std::move(done)](const HttpResponse& r) {
      counts_->bytes += r.body.size();
      done(r);
    });
  }
  void cancel(uint64_t id) override { inner_->cancel(id); }

 private:
  std::unique_ptr<EtcdTransport> inner_;
  Counts* counts_;
};

struct Stats {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  std::string str() const {
    if (v.empty()) return "n=0";
    auto s = v;
    std::sort(s.begin(), s.end());
    auto q = [&](double p) { return s[std::min(s.size() - 1, size_t(p * (s.size() - 1) + 0.5))]; };
    char buf[160];
    std::snprintf(buf, sizeof buf, "n=%zu min %.3f median %.3f p90 %.3f max %.3f s", s.size(), s.front(), q(0.5),
                  q(0.9), s.back());
    return buf;
  }
};

struct Bench {
  EventLoop loop;
  // --log: the adapter's events on stderr.
  std::unique_ptr<EventLog> log;
  std::unique_ptr<testing_etcd::EtcdMember> etcd;
  std::map<std::string, std::unique_ptr<EtcdCluster>> nodes;
  std::map<std::string, Counts> counts;
  std::map<std::string, std::map<std::string, bool>> running;  // node -> group -> running
  std::map<std::string, double> last_takeover, last_fence, last_stopped;
  int overlaps = 0;
  double stop_delay = 0.05;

  EtcdCluster& make(const std::string& name, const ClusterConfig& base) {
    ClusterConfig c = base;
    c.node = name;
    ClusterCallbacks cb;
    cb.takeover = [this, name](const std::string& g, const nlohmann::json&) {
      for (auto& [n, groups] : running)
        if (n != name && groups[g]) overlaps++;
      running[name][g] = true;
      last_takeover[name] = now_s();
    };
    auto stop = [this, name](const std::string& g) {
      loop.after(from_seconds(stop_delay), [this, name, g] {
        running[name][g] = false;
        last_stopped[name] = now_s();
        nodes.at(name)->stopped(g);
      });
    };
    cb.lost = [stop](const std::string& g, const std::string&) { stop(g); };
    cb.fence = [this, stop, name](const std::string& g, double, const std::string&, const nlohmann::json&) {
      last_fence[name] = now_s();
      stop(g);
    };
    auto n = std::make_unique<EtcdCluster>(loop, c, std::move(cb), log.get(),
                                           std::make_unique<CountingTransport>(loop, &counts[name]));
    auto& ref = *n;
    nodes[name] = std::move(n);
    return ref;
  }
  void drop() {
    nodes.clear();
    running.clear();
    // Let the cancelled connections close.
    auto t0 = MonoClock::now();
    run_until(loop, [&] { return MonoClock::now() - t0 > 200ms; }, 1s);
  }
  void idle(double s) {
    auto t0 = MonoClock::now();
    run_until(loop, [&] { return MonoClock::now() - t0 > from_seconds(s); }, from_seconds(s + 1));
  }
};

// Nodes a and b on their own prefix, a holding "g", b standing by;
// avoid_for 0 so that the group can go back and forth.
bool pair(Bench& b, double ttl, const std::string& prefix) {
  ClusterConfig c;
  c.adapter = "etcd";
  c.endpoints = {b.etcd->url()};
  c.ttl = ttl;
  c.avoid_for = 0;
  c.prefix = prefix + std::to_string(int(ttl));
  auto& A = b.make("a", c);
  A.set_groups({"g"});
  if (!run_until(b.loop, [&] { return A.holds("g"); }, 20s)) return false;
  auto& B = b.make("b", c);
  B.set_groups({"g"});
  return run_until(b.loop, [&] { return B.info("g").holder == "a"; }, 20s);
}

bool failovers(Bench& b, double ttl, int n) {
  if (!pair(b, ttl, "bench-f")) return false;
  b.idle(0.5);
  Stats st;
  b.overlaps = 0;
  std::string holder = "a", other = "b";
  for (int i = 0; i < n; i++) {
    EtcdCluster& H = *b.nodes[holder];
    EtcdCluster& O = *b.nodes[other];
    b.running[holder]["g"] = false;  // the group stopped completely here
    double t0 = now_s();
    std::string err = "pending";
    H.failover("g", "bench", "", [&](const std::string& e) { err = e; });
    if (!run_until(b.loop, [&] { return O.holds("g"); }, 30s)) {
      std::fprintf(stderr, "failover %d: %s never took over (%s)\n", i, other.c_str(), err.c_str());
      return false;
    }
    st.add(b.last_takeover[other] - t0);
    // The old holder campaigns again (avoid_for 0) before the next round.
    run_until(b.loop, [&] { return H.info("g").holder == other; }, 10s);
    b.idle(0.3);
    std::swap(holder, other);
  }
  std::printf("failover -> takeover, ttl %gs: %s; overlaps %d\n", ttl, st.str().c_str(), b.overlaps);
  b.drop();
  return true;
}

bool partitions(Bench& b, double ttl, int n) {
  if (!pair(b, ttl, "bench-p")) return false;
  Stats fence, takeover, gap;
  b.overlaps = 0;
  std::string holder = "a", other = "b";
  for (int i = 0; i < n; i++) {
    EtcdCluster& H = *b.nodes[holder];
    EtcdCluster& O = *b.nodes[other];
    b.idle(0.5);
    double t0 = now_s();
    b.last_fence[holder] = 0;
    H.pause_keepalives(true);
    if (!run_until(b.loop, [&] { return O.holds("g"); }, from_seconds(3 * ttl + 10))) return false;
    fence.add(b.last_fence[holder] - t0);
    takeover.add(b.last_takeover[other] - t0);
    gap.add(b.last_takeover[other] - b.last_stopped[holder]);
    H.pause_keepalives(false);
    run_until(b.loop, [&] { return H.lease_id() != 0 && H.info("g").holder == other; }, 30s);
    std::swap(holder, other);
  }
  const FenceBudget fb = b.nodes["a"]->fence_budget();
  std::printf("partition, ttl %gs (self_fence_after %gs, kill_after %.2fs, stop %.2fs): -> fence %s\n", ttl,
              fb.self_fence_after, fb.kill_after, b.stop_delay, fence.str().c_str());
  std::printf("  -> takeover elsewhere %s\n  group stopped -> takeover elsewhere (margin) %s; overlaps %d\n",
              takeover.str().c_str(), gap.str().c_str(), b.overlaps);
  b.drop();
  return true;
}

bool steady(Bench& b, int groups, double seconds) {
  ClusterConfig c;
  c.adapter = "etcd";
  c.endpoints = {b.etcd->url()};
  c.ttl = 4;
  c.prefix = "bench-s";
  std::vector<std::string> names;
  for (int i = 0; i < groups; i++) names.push_back("g" + std::to_string(i));
  auto& A = b.make("a", c);
  A.set_groups(names);
  auto all_held = [&] {
    for (const auto& g : names)
      if (!A.holds(g)) return false;
    return true;
  };
  if (!run_until(b.loop, all_held, 60s)) return false;
  auto& B = b.make("b", c);
  B.set_groups(names);
  if (!run_until(b.loop, [&] { return B.info(names.back()).holder == "a"; }, 20s)) return false;
  b.idle(1);
  Counts a0 = b.counts["a"], b0 = b.counts["b"];
  double cpu0 = cpu_self(), e0 = cpu_of(b.etcd->pid()), t0 = now_s();
  uint64_t k0 = A.keepalives();
  b.idle(seconds);
  double dt = now_s() - t0;
  double cpu = cpu_self() - cpu0, ecpu = cpu_of(b.etcd->pid()) - e0;
  Counts a1 = b.counts["a"], b1 = b.counts["b"];
  std::printf("steady state, %d groups held by a, b standing by, ttl 4s, %.1fs:\n", groups, dt);
  std::printf("  both nodes (this process): CPU %.2f%% of one core; etcd: %.2f%%\n", 100 * cpu / dt, 100 * ecpu / dt);
  std::printf("  a (holder): %.2f requests/s, %.0f bytes/s (bodies); keepalives %.2f/s\n",
              (a1.requests - a0.requests) / dt, (a1.bytes - a0.bytes) / dt, (A.keepalives() - k0) / dt);
  std::printf("  b (standby, %d campaigns open): %.2f requests/s, %.0f bytes/s\n", groups,
              (b1.requests - b0.requests) / dt, (b1.bytes - b0.bytes) / dt);
  b.drop();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 20, partitions_n = 5, groups = 50;
  double seconds = 20;
  bool log = false;
  std::vector<double> ttls = {4, 10};
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--failovers") n = std::stoi(next());
    else if (a == "--partitions") partitions_n = std::stoi(next());
    else if (a == "--groups") groups = std::stoi(next());
    else if (a == "--idle-seconds") seconds = std::stod(next());
    else if (a == "--ttl") ttls = {std::stod(next())};
    else if (a == "--log") log = true;
    else {
      std::fprintf(stderr,
                   "usage: vigil_cluster_bench [--failovers N] [--partitions N] [--groups N] [--idle-seconds S] "
                   "[--ttl S] [--log]\n");
      return 2;
    }
  }
  if (!testing_etcd::etcd_installed()) {
    std::fprintf(stderr, "etcd is not installed (apt-get install etcd-server)\n");
    return 1;
  }
  Bench b;
  if (log) {
    LogOptions lo;
    lo.min_severity = Severity::Debug;
    b.log = std::make_unique<EventLog>(lo);
  }
  b.etcd = std::make_unique<testing_etcd::EtcdMember>();
  {
    EtcdClientOptions o;
    o.endpoints = {b.etcd->url()};
    EtcdClient probe(o, http_etcd_transport(b.loop));
    bool ready = false;
    auto end = MonoClock::now() + 30s;
    while (!ready && MonoClock::now() < end) {
      bool answered = false;
      probe.put("bench/ready", "1", 0, [&](const EtcdResult& r) { answered = true, ready = r.ok; });
      run_until(b.loop, [&] { return answered; }, 5s);
      if (!ready) b.idle(0.1);
    }
    if (!ready) {
      std::fprintf(stderr, "etcd did not start (log in %s)\n", b.etcd->dir().c_str());
      return 1;
    }
  }
  std::printf("etcd 3.4 single member on loopback (heartbeat 50 ms, election 300 ms)\n");
  for (double ttl : ttls)
    if (n > 0 && !failovers(b, ttl, n)) return 1;
  for (double ttl : ttls)
    if (partitions_n > 0 && !partitions(b, ttl, partitions_n)) return 1;
  if (groups > 0 && seconds > 0 && !steady(b, groups, seconds)) return 1;
  return 0;
}

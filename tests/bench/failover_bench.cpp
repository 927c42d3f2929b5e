// vigil_failover_bench: the etcd adapter end to end (issue 16,
// "Performance"). A real 3-member etcd cluster in 3 network namespaces, a
// real Vigil daemon in two of them, the group "orders" (db, app: real
// processes with TCP readiness) clustered between them. Measures, per TTL:
//   - failover: from "the group gave up on A" (VGL0150 in A's log) to "the
//     group is ready on B" (the later of db's and app's VGL0144 in B's
//     log), over --failovers hand-overs back and forth (restart limit 0:
//     every kill gives up at once; avoid_for 1 s, waited out between
//     hand-overs so the group may go back);
//   - partition: from the holder's link going down to its self-fence
//     (VGL0265), to its last member stopped, and to the other node's win
//     and start, over --partitions rounds;
//   - overlap: the time both nodes ran a member of the group at once,
//     summed over all of it, from both event logs (must be 0).
// Root only (network namespaces); not registered with ctest. See README.md.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/netns_cluster.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

struct Stats {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  std::string text() const {
    if (v.empty()) return "n=0";
    auto s = v;
    std::sort(s.begin(), s.end());
    double sum = 0;
    for (double x : s) sum += x;
    auto q = [&](double p) { return s[std::min(s.size() - 1, static_cast<size_t>(p * (s.size() - 1) + 0.5))]; };
    char buf[160];
    snprintf(buf, sizeof buf, "n=%zu min %.3f median %.3f p90 %.3f max %.3f mean %.3f s", s.size(),
             s.front(), q(0.5), q(0.9), s.back(), sum / static_cast<double>(s.size()));
    return buf;
  }
};

// Seconds both nodes ran a member at once (intervals still open end now).
double overlap_seconds(const std::vector<RunInterval>& a, const std::vector<RunInterval>& b) {
  double now = now_wall(), total = 0;
  for (const auto& x : a)
    for (const auto& y : b) {
      double lo = std::max(x.from, y.from), hi = std::min(std::min(x.to, now), std::min(y.to, now));
      if (hi > lo) total += hi - lo;
    }
  return total;
}

// When the group was ready on n after line `from`: the later of its
// members' first VGL0144; 0 when not yet.
double ready_at(const VigilNode& n, size_t from) {
  double t = 0;
  for (const auto& m : kOrdersMembers) {
    auto r = n.find("VGL0144", m, from);
    if (r.empty()) return 0;
    t = std::max(t, event_time(r.front()));
  }
  return t;
}

int fail(const std::string& why, const VigilNode* a = nullptr, const VigilNode* b = nullptr) {
  fprintf(stderr, "vigil_failover_bench: %s\n", why.c_str());
  if (a) fprintf(stderr, "%s\n", a->log().c_str());
  if (b) fprintf(stderr, "%s\n", b->log().c_str());
  return 1;
}

int run(int ttl, int failovers, int partitions) {
  EtcdNetns c;
  if (!c.ok()) return fail(c.error());
  std::string t = std::to_string(ttl) + "s";
  std::string cl = "avoid_for = \"1s\"", gr = "restart = { limit = 0, within = \"1m\" }";
  VigilNode n1(c, 1, orders_rules("node1", t, cl, gr)), n2(c, 2, orders_rules("node2", t, cl, gr));
  VigilNode* nodes[2] = {&n1, &n2};
  if (!n1.d.start()) return fail("node1 did not start", &n1);
  if (!n1.wait("VGL0263", "orders") || !wait_for([&] { return n1.ready(); }, 30s))
    return fail("node1 did not take the group", &n1);
  if (!n2.d.start()) return fail("node2 did not start", &n2);
  if (!wait_for([&] { return c.node_live("node2"); }, 30s)) return fail("node2 not in etcd", &n2);

  printf("ttl %d s\n", ttl);
  Stats handover, stopped_after, won_after;
  int at = 0;  // index of the holder
  double last_gave_up = 0;
  for (int i = 0; i < failovers; ++i) {
    VigilNode& a = *nodes[at];
    VigilNode& b = *nodes[1 - at];
    // The node the group goes back to must be out of avoid_for (1 s) and
    // campaigning again (it looks at its next poll, every ttl/3): the
    // figure is the hand-over itself, not that wait.
    double wait_until = last_gave_up + 1.2;
    if (now_wall() < wait_until)
      std::this_thread::sleep_for(std::chrono::duration<double>(wait_until - now_wall()));
    if (!wait_for([&] {
          auto cs = c.candidates("orders");
          return std::find(cs.begin(), cs.end(), b.name) != cs.end();
        }, 30s))
      return fail(b.name + " does not campaign again", &a, &b);
    size_t ma = a.mark(), mb = b.mark();
    pid_t db = a.d.watch_pid("db");
    if (db <= 0 || kill(db, SIGKILL) != 0) return fail(a.name + " runs no db", &a);
    if (!a.wait("VGL0150", "orders", 1, 30s, ma)) return fail(a.name + " did not give up", &a);
    if (!wait_for([&] { return ready_at(b, mb) > 0; }, 60s))
      return fail(b.name + " did not become ready", &a, &b);
    double gave_up = event_time(a.find("VGL0150", "orders", ma).front());
    double ready = ready_at(b, mb);
    auto won = b.find("VGL0263", "orders", mb);
    double stopped = last_end(run_intervals(a.events(), kOrdersMembers, a.name));
    handover.add(ready - gave_up);
    stopped_after.add(stopped - gave_up);
    if (!won.empty()) won_after.add(event_time(won.front()) - gave_up);
    printf("  failover %2d %s -> %s: stopped +%.3f, won +%.3f, ready +%.3f s\n", i + 1,
           a.name.c_str(), b.name.c_str(), stopped - gave_up,
           won.empty() ? -1.0 : event_time(won.front()) - gave_up, ready - gave_up);
    last_gave_up = gave_up;
    at = 1 - at;
  }

  Stats fence, stop, win, start, fence_gap;
  for (int i = 0; i < partitions; ++i) {
    VigilNode& a = *nodes[at];
    VigilNode& b = *nodes[1 - at];
    int ia = at + 1;
    size_t ma = a.mark(), mb = b.mark();
    double cut = now_wall();
    if (!c.partition(ia)) return fail(c.error());
    bool ok = a.wait("VGL0265", "orders", 1, 30s, ma) && wait_for([&] { return ready_at(b, mb) > 0; }, 60s) &&
              wait_for([&] { return a.none_running(); }, 30s);
    if (!ok) {
      c.heal(ia);
      return fail("partition " + std::to_string(i + 1) + ": no fence or no takeover", &a, &b);
    }
    double fenced = event_time(a.find("VGL0265", "orders", ma).front());
    double stopped = last_end(run_intervals(a.events(), kOrdersMembers, a.name));
    auto won = b.find("VGL0263", "orders", mb);
    double won_t = won.empty() ? 0 : event_time(won.front());
    double started = first_start_after(run_intervals(b.events(), kOrdersMembers, b.name), cut);
    fence_gap.add(a.find("VGL0265", "orders", ma).front()["fields"].value("gap", -1.0));
    fence.add(fenced - cut);
    stop.add(stopped - cut);
    if (won_t) win.add(won_t - cut);
    start.add(started - cut);
    printf("  partition %d of %s: fenced +%.3f, stopped +%.3f, %s won +%.3f, started +%.3f s\n",
           i + 1, a.name.c_str(), fenced - cut, stopped - cut, b.name.c_str(), won_t ? won_t - cut : -1.0,
           started - cut);
    size_t mh = a.mark();
    if (!c.heal(ia)) return fail(c.error());
    if (!a.wait("VGL0251", "", 1, 60s, mh) || !wait_for([&] { return c.node_live(a.name); }, 60s))
      return fail(a.name + " did not rejoin after the heal", &a);
    at = 1 - at;
  }

  auto r1 = n1.runs(), r2 = n2.runs();
  double overlap = overlap_seconds(r1, r2);
  std::string pairs = overlaps(r1, r2);
  printf("ttl %d s: failover gave-up -> ready on the other node: %s\n", ttl, handover.text().c_str());
  printf("ttl %d s: failover gave-up -> last member stopped on A: %s\n", ttl, stopped_after.text().c_str());
  printf("ttl %d s: failover gave-up -> B won the election: %s\n", ttl, won_after.text().c_str());
  printf("ttl %d s: partition -> self-fence: %s\n", ttl, fence.text().c_str());
  printf("ttl %d s: self-fence after the last renewal sent (VGL0265 gap): %s\n", ttl,
         fence_gap.text().c_str());
  printf("ttl %d s: partition -> fenced group stopped: %s\n", ttl, stop.text().c_str());
  printf("ttl %d s: partition -> other node won: %s\n", ttl, win.text().c_str());
  printf("ttl %d s: partition -> other node started: %s\n", ttl, start.text().c_str());
  printf("ttl %d s: overlap over %d failovers and %d partitions: %.6f s%s\n", ttl, failovers,
         partitions, overlap, pairs.empty() ? "" : (" OVERLAP:\n" + pairs).c_str());
  fflush(stdout);
  return overlap > 0 ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> ttls = {4, 10};
  int failovers = 20, partitions = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--ttl") {
      ttls.clear();
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        ttls.push_back(atoi(v.substr(p, q - p).c_str()));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else if (a == "--failovers") {
      failovers = atoi(next().c_str());
    } else if (a == "--partitions") {
      partitions = atoi(next().c_str());
    } else {
      fprintf(stderr, "usage: vigil_failover_bench [--ttl 4,10] [--failovers 20] [--partitions 5]\n");
      return 64;
    }
  }
  if (std::string m = EtcdNetns::missing(); !m.empty()) return fail(m);
  int rc = 0;
  for (int ttl : ttls) rc = std::max(rc, run(ttl, failovers, partitions));
  return rc;
}

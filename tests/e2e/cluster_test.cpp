// End-to-end: clustered groups over a real 3-member etcd cluster, one
// member per network namespace (tests/e2e/netns_cluster.hpp), with a
// Vigil daemon inside two of the nodes. Who ran the group when is read
// back from both daemons' event logs (wall time, one clock: one machine).
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/netns_cluster.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

#define SKIP_WITHOUT_NETNS_ETCD()                          \
  do {                                                     \
    if (std::string m = EtcdNetns::missing(); !m.empty()) \
      GTEST_SKIP() << m;                                   \
  } while (0)

nlohmann::json ev(const std::string& id, const std::string& watch, double t, long pid = 0) {
  char buf[64];
  time_t s = static_cast<time_t>(t);
  struct tm tm{};
  gmtime_r(&s, &tm);
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(std::lround((t - s) * 1000)));
  nlohmann::json e = {{"id", id}, {"watch", watch}, {"time", buf}, {"fields", nlohmann::json::object()}};
  if (pid) e["fields"]["pid"] = pid;
  return e;
}

}  // namespace

// The interval reading the scenarios rely on: started/exited per pid,
// stopped closes the watch, open at the end of the log; an overlap across
// nodes is found, a hand-over with a gap is not.
TEST(ClusterFixture, RunIntervalsAndOverlaps) {
  EXPECT_NEAR(event_time(ev("VGL0101", "db", 1796188766.25)), 1796188766.25, 1e-6);
  std::vector<nlohmann::json> a = {ev("VGL0101", "db", 100, 11), ev("VGL0101", "app", 100.5, 12),
                                   ev("VGL0102", "db", 101, 11), ev("VGL0101", "db", 101.2, 13),
                                   ev("VGL0109", "db", 105), ev("VGL0109", "app", 105.1),
                                   ev("VGL0101", "other", 99, 99)};
  auto ra = run_intervals(a, {"db", "app"}, "n1");
  ASSERT_EQ(ra.size(), 3u);
  EXPECT_EQ(ra[0].to, 101);
  EXPECT_EQ(ra[2].from, 101.2);
  EXPECT_EQ(ra[2].to, 105);
  EXPECT_NEAR(ra[1].to, 105.1, 1e-6);
  std::vector<nlohmann::json> b = {ev("VGL0101", "db", 105.3, 21), ev("VGL0101", "app", 105.4, 22)};
  auto rb = run_intervals(b, {"db", "app"}, "n2");
  ASSERT_EQ(rb.size(), 2u);
  EXPECT_TRUE(std::isinf(rb[0].to));
  EXPECT_EQ(overlaps(ra, rb), "");
  b.insert(b.begin(), ev("VGL0101", "app", 104.0, 20));
  EXPECT_NE(overlaps(ra, run_intervals(b, {"db", "app"}, "n2")), "");
  EXPECT_EQ(unbase64(base64("vigil/orders")), "vigil/orders");
  EXPECT_EQ(base64("ab"), "YWI=");
}

// The fixture's cluster is real: a put through the gateway from each
// node's namespace is read from another; a partitioned node can reach
// nobody and its member takes no write while the other two do; healed, it
// catches up. A killed member leaves a quorum and comes back.
TEST(ClusterFixture, EtcdInThreeNamespaces) {
  SKIP_WITHOUT_NETNS_ETCD();
  EtcdNetns c;
  ASSERT_TRUE(c.ok()) << c.error();
  for (int i = 1; i <= 3; ++i) {
    std::string key = "fx/from" + std::to_string(i);
    ASSERT_TRUE(c.wait_writable(i)) << i;
    ASSERT_TRUE(c.put(i, key, "n" + std::to_string(i))) << i;
    int other = i % 3 + 1;
    EXPECT_TRUE(wait_for([&] { return c.get(other, key) == "n" + std::to_string(i); }, 10s))
        << "node " << other << " does not read " << key;
  }

  ASSERT_TRUE(c.partition(1));
  // Node 1 reaches no other node, and its member cannot commit alone.
  auto probe = c.in_node(1);
  probe.insert(probe.end(), {"curl", "-s", "--max-time", "1", "http://" + EtcdNetns::addr(2) + ":2379/health"});
  EXPECT_NE(run_command(probe).code, 0) << "node 1 still reaches node 2";
  EXPECT_FALSE(c.put(1, "fx/cut", "from1"));
  EXPECT_TRUE(wait_for([&] { return c.put(2, "fx/cut", "from2"); }, 15s)) << "2 and 3 lost quorum";
  EXPECT_EQ(c.get(3, "fx/cut"), "from2");

  ASSERT_TRUE(c.heal(1));
  EXPECT_TRUE(wait_for([&] { return c.get(1, "fx/cut") == "from2"; }, 20s)) << "node 1 did not catch up";
  EXPECT_TRUE(c.wait_writable(1));

  pid_t old = c.member_pid(3);
  ASSERT_TRUE(c.kill_member(3));
  EXPECT_FALSE(process_alive(old));
  EXPECT_TRUE(wait_for([&] { return c.put(1, "fx/two", "left"); }, 15s)) << "no quorum with 2 of 3";
  ASSERT_TRUE(c.start_member(3));
  EXPECT_TRUE(wait_for([&] { return c.get(3, "fx/two") == "left"; }, 20s)) << "member 3 did not rejoin";
}

// A Vigil daemon runs inside a node's namespace: its watch reaches etcd at
// that namespace's 127.0.0.1:2379 (the host's has none) and the test reads
// the key from another node; its event log has the start with a wall time
// of now; a partition cuts the daemon off with its node.
TEST(ClusterFixture, VigilInsideANode) {
  SKIP_WITHOUT_NETNS_ETCD();
  EtcdNetns c;
  ASSERT_TRUE(c.ok()) << c.error();
  Daemon d;
  d.set_prefix(c.in_node(2));
  std::string put = "curl -s --max-time 2 -X POST -d '{\\\"key\\\":\\\"" + base64("fx/vigil") +
                    "\\\",\\\"value\\\":\\\"" + base64("inside2") +
                    "\\\"}' http://127.0.0.1:2379/v3/kv/put; exec sleep 600";
  d.write_rule("r.lua", "watch \"putter\" { start = { \"/bin/sh\", \"-c\", \"" + put + "\" } }\n");
  double before = static_cast<double>(time(nullptr)) - 1;
  ASSERT_TRUE(d.start()) << d.output();
  EXPECT_TRUE(wait_for([&] { return c.get(1, "fx/vigil") == "inside2"; }, 15s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0101", "putter"));
  auto evs = read_events(d.state_dir());
  auto runs = run_intervals(evs, {"putter"}, "node2");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_GE(runs[0].from, before);
  EXPECT_LE(runs[0].from, static_cast<double>(time(nullptr)) + 1);
  EXPECT_TRUE(std::isinf(runs[0].to));
  EXPECT_EQ(runs[0].pid, d.watch_pid("putter"));
  // The daemon's network is its node's.
  auto r = run_command({"readlink", "/proc/" + std::to_string(d.pid()) + "/ns/net"});
  auto mine = run_command({"readlink", "/proc/self/ns/net"});
  EXPECT_NE(r.out, mine.out);
  ASSERT_EQ(d.stop(), 0) << d.output();
  runs = run_intervals(read_events(d.state_dir()), {"putter"}, "node2");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_FALSE(std::isinf(runs[0].to));
}

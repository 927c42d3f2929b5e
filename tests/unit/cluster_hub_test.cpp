// The supervisor's side of a cluster: a fake adapter drives a ClusterHub
// over a real supervisor and real processes. A clustered group is standby
// until held, starts in order on takeover, stops in order when lost, is
// stopped at once and within its bound when fenced, and a failover asks
// the adapter only once nothing of the group runs any more.
#include "host/cluster/hub.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>

#include <fstream>
#include <functional>

#include "host/core/clock.hpp"
#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/supervise/supervisor.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

struct RestartPolicy : Policy {
  Supervisor* sup = nullptr;
  void on_exit(Unit& u, const ExitInfo&) override { sup->restart_later(u, 0.05); }
  void on_count(Unit&, const nlohmann::json&) override {}
  void on_state(Unit&, const nlohmann::json&) override {}
  void on_hung(Unit&, const nlohmann::json&) override {}
  void run_probe(Unit&, size_t, uint64_t) override {}
};

// Records what the hub asks; the test plays the cluster through `cb`.
struct FakeAdapter : ClusterAdapter {
  ClusterCallbacks cb;
  std::vector<std::string> groups, stopped_calls, failovers;
  std::function<void(const std::string&)> on_failover;  // sees the supervisor at that moment
  std::string holder;
  void set_groups(const std::vector<std::string>& g) override { groups = g; }
  void failover(const std::string& group, const std::string& reason, const std::string& to,
                std::function<void(const std::string&)> done) override {
    failovers.push_back(group + " " + reason + (to.empty() ? "" : " -> " + to));
    if (on_failover) on_failover(group);
    done("");
  }
  void stopped(const std::string& group) override { stopped_calls.push_back(group); }
  bool holds(const std::string&) const override { return false; }
  HoldInfo info(const std::string&) const override {
    HoldInfo h;
    h.role = "standby";
    h.holder = holder;
    return h;
  }
  nlohmann::json nodes() const override { return nlohmann::json::array(); }
};

LogOptions quiet() {
  LogOptions o;
  o.console = false;
  return o;
}

struct ClusterHubTest : ::testing::Test {
  EventLoop loop;
  EventLog log{quiet()};
  Supervisor sup{loop, log, ""};
  RestartPolicy policy;
  FakeAdapter* fake = nullptr;
  ClusterHub hub{loop, log, sup,
                 [this](const ClusterConfig&, const ClusterEnv&, ClusterCallbacks cb,
                        std::string&) -> std::unique_ptr<ClusterAdapter> {
                   auto a = std::make_unique<FakeAdapter>();
                   a->cb = std::move(cb);
                   fake = a.get();
                   return a;
                 }};

  void SetUp() override {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    policy.sup = &sup;
    sup.set_policy(&policy);
  }
  void TearDown() override {
    bool done = false;
    sup.stop_all([&] { done = true; });
    run_until([&] { return done; });
  }
  Declaration decl(const std::string& name, std::vector<std::string> argv,
                   std::vector<std::string> after = {}) {
    Declaration d;
    d.name = name;
    d.spec.argv = std::move(argv);
    d.spec.capture_output = false;
    d.spec.stop_timeout = 10;  // a fence must not wait for this
    d.after = std::move(after);
    d.group = "orders";
    EXPECT_FALSE(validate_spec(d.spec));
    return d;
  }
  // db, then app (after db); app ignores TERM when `deaf`.
  void load(bool deaf = false) {
    ClusterConfig c;
    c.adapter = "fake";
    c.node = "nodea";
    hub.configure(c);
    GroupDecl g;
    g.name = "orders";
    g.members = g.units = {"db", "app"};
    g.clustered = true;
    std::vector<std::string> app = {"sleep", "100000"};
    if (deaf) app = {"/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"};
    hub.set_groups({"orders"});
    sup.apply({decl("db", {"sleep", "100000"}), decl("app", app, {"db"})}, {g});
  }
  Group& group() { return *sup.find_group("orders"); }
  bool running(const std::string& name) {
    Unit* u = sup.find(name);
    return u && u->child && u->state == UnitState::Running;
  }
  bool nothing_runs() { return !sup.find("db")->child && !sup.find("app")->child; }
  bool run_until(const std::function<bool()>& cond, Duration limit = 10s) {
    auto deadline = MonoClock::now() + limit;
    while (!cond() && MonoClock::now() < deadline) loop.run_once(50ms);
    return cond();
  }
  int count(Msg m) {
    int n = 0;
    for (const auto& e : log.recent(10000)) n += e["id"] == message_def(m).id;
    return n;
  }
  void take_over() {
    fake->cb.takeover("orders", nlohmann::json::object());
    ASSERT_TRUE(run_until([&] { return running("db") && running("app"); }));
  }
};

}  // namespace

TEST_F(ClusterHubTest, AClusteredGroupIsStandbyUntilHeldThenStartsInOrder) {
  load();
  ASSERT_NE(fake, nullptr);
  EXPECT_EQ(fake->groups, std::vector<std::string>{"orders"});
  for (int i = 0; i < 5; ++i) loop.run_once(20ms);
  EXPECT_TRUE(nothing_runs());
  EXPECT_EQ(sup.group_state(group()), "standby");
  EXPECT_TRUE(sup.in_standby(*sup.find("app")));
  // A member's own start does nothing while the group is not held here.
  sup.start(*sup.find("db"));
  for (int i = 0; i < 5; ++i) loop.run_once(20ms);
  EXPECT_FALSE(sup.find("db")->child);

  take_over();
  EXPECT_EQ(count(Msg::ClusterTakeover), 1);
  EXPECT_TRUE(group().held);
  EXPECT_NE(sup.group_state(group()), "standby");
  // The order held: app started once db ran.
  EXPECT_LE(sup.find("db")->child->started, sup.find("app")->child->started);
}

TEST_F(ClusterHubTest, LostStopsInOrderAndSaysStoppedOnlyWhenNothingIsLeft) {
  load();
  take_over();
  fake->cb.lost("orders", "resigned");
  EXPECT_TRUE(fake->stopped_calls.empty()) << "not before the stop";
  ASSERT_TRUE(run_until([&] { return !fake->stopped_calls.empty(); }));
  EXPECT_TRUE(nothing_runs());
  EXPECT_EQ(sup.group_state(group()), "standby");
  EXPECT_EQ(count(Msg::ClusterLost), 1);
  EXPECT_EQ(count(Msg::ClusterReleased), 1);
  // Not restarted by the rules either: a death now is no reason to start.
  for (int i = 0; i < 10; ++i) loop.run_once(20ms);
  EXPECT_TRUE(nothing_runs());
}

TEST_F(ClusterHubTest, FenceKillsEveryMemberAtOnceWithinTheBound) {
  load(/*deaf=*/true);
  take_over();
  // Once app's shell ignores TERM (its trap is set: SigIgn has bit 15).
  auto ignores_term = [&] {
    std::ifstream st("/proc/" + std::to_string(sup.find("app")->child->pid) + "/status");
    std::string line;
    while (std::getline(st, line))
      if (line.rfind("SigIgn:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 14) & 1;
    return 0ull;
  };
  ASSERT_TRUE(run_until([&] { return ignores_term() != 0; }));
  auto t0 = MonoClock::now();
  fake->cb.fence("orders", 0.3, "lease not renewed for 2s", {{"gap", 2.1}});
  ASSERT_TRUE(run_until([&] { return !fake->stopped_calls.empty(); }, 5s));
  double took = to_seconds(MonoClock::now() - t0);
  EXPECT_TRUE(nothing_runs());
  // app ignores TERM: KILL at 0.3 s, not at its 10 s stop timeout.
  EXPECT_GE(took, 0.25) << [&] {
    std::string out;
    for (const auto& e : log.recent(100)) out += e.dump() + "\n";
    return out;
  }();
  EXPECT_LT(took, 2.0) << "bounded by kill_after and the reaping";
  EXPECT_EQ(count(Msg::ClusterFenced), 1);
  for (const auto& e : log.recent(10000))
    if (e["id"] == message_def(Msg::ClusterFenced).id) {
      EXPECT_EQ(e["fields"].value("gap", 0.0), 2.1) << "the adapter's detail is in the hub's event";
      EXPECT_EQ(e["fields"].value("kill_after", 0.0), 0.3);
    }
  EXPECT_EQ(sup.group_state(group()), "standby");
  EXPECT_FALSE(group().held);
}

TEST_F(ClusterHubTest, FailoverAsksTheAdapterOnlyOnceTheGroupHasStopped) {
  load();
  take_over();
  bool stopped_when_asked = false;
  fake->on_failover = [&](const std::string&) { stopped_when_asked = nothing_runs(); };
  EXPECT_EQ(hub.failover("orders", "budget exhausted", "nodeb", {}), "");
  EXPECT_TRUE(fake->failovers.empty()) << "not before the stop";
  ASSERT_TRUE(run_until([&] { return !fake->failovers.empty(); }));
  EXPECT_TRUE(stopped_when_asked);
  EXPECT_EQ(fake->failovers, std::vector<std::string>{"orders budget exhausted -> nodeb"});
  EXPECT_EQ(count(Msg::FailoverRequested), 1);
  ASSERT_TRUE(run_until([&] { return count(Msg::FailoverDone) == 1; }));
  EXPECT_NE(hub.failover("nosuch", "x", "", {}), "");
}

TEST_F(ClusterHubTest, AnOperatorStartWarnsWhenAnotherNodeHoldsTheGroup) {
  load();
  fake->holder = "nodeb";
  hub.operator_start(group());
  sup.start_group(group());
  ASSERT_TRUE(run_until([&] { return running("db") && running("app"); }));
  EXPECT_EQ(count(Msg::ClusterOperatorStart), 1);
}

TEST_F(ClusterHubTest, AReloadThatClustersARunningGroupStopsItUntilHeld) {
  // orders runs, not clustered.
  GroupDecl g;
  g.name = "orders";
  g.members = g.units = {"db", "app"};
  sup.apply({decl("db", {"sleep", "100000"}), decl("app", {"sleep", "100000"}, {"db"})}, {g});
  ASSERT_TRUE(run_until([&] { return running("db") && running("app"); }));
  // The reload clusters it; the adapter does not hold it here.
  ClusterConfig c;
  c.adapter = "fake";
  c.node = "nodea";
  hub.configure(c);
  hub.set_groups({"orders"});
  g.clustered = true;
  sup.apply({decl("db", {"sleep", "100000"}), decl("app", {"sleep", "100000"}, {"db"})}, {g});
  ASSERT_TRUE(run_until([&] { return nothing_runs(); }));
  EXPECT_EQ(sup.group_state(group()), "standby");
  EXPECT_EQ(count(Msg::GroupStandby), 1);
  // Held now: it starts again.
  take_over();
  // The same rules again change nothing.
  sup.apply({decl("db", {"sleep", "100000"}), decl("app", {"sleep", "100000"}, {"db"})}, {g});
  for (int i = 0; i < 5; ++i) loop.run_once(20ms);
  EXPECT_TRUE(running("db") && running("app"));
  EXPECT_EQ(count(Msg::GroupStandby), 1);
}

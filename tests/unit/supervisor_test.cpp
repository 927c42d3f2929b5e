// The supervisor's mechanism with a scripted policy, on the real loop and
// real processes.
#include "host/supervise/supervisor.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>

#include <functional>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

struct ScriptedPolicy : Policy {
  std::function<void(Unit&, const ExitInfo&)> fn;
  int calls = 0;
  void on_exit(Unit& u, const ExitInfo& e) override {
    ++calls;
    if (fn) fn(u, e);
  }
  std::vector<nlohmann::json> counts, states;
  std::function<void(Unit&, const nlohmann::json&)> count_fn;
  void on_count(Unit& u, const nlohmann::json& ev) override {
    counts.push_back(ev);
    if (count_fn) count_fn(u, ev);
  }
  void on_state(Unit&, const nlohmann::json& ev) override { states.push_back(ev); }
  std::vector<nlohmann::json> hung;
  std::function<void(Unit&, size_t, uint64_t)> probe_fn;
  void on_hung(Unit&, const nlohmann::json& ev) override { hung.push_back(ev); }
  void run_probe(Unit& u, size_t i, uint64_t token) override {
    if (probe_fn) probe_fn(u, i, token);
  }
};

LogOptions quiet() {
  LogOptions o;
  o.console = false;
  return o;
}

struct SupervisorTest : ::testing::Test {
  EventLoop loop;
  EventLog log{quiet()};
  Supervisor sup{loop, log, ""};
  ScriptedPolicy policy;

  void SetUp() override {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sup.set_policy(&policy);
  }
  void TearDown() override {
    bool done = false;
    sup.stop_all([&] { done = true; });
    run_until([&] { return done; });
  }
  Declaration decl(const std::string& name, std::vector<std::string> argv) {
    Declaration d;
    d.name = name;
    d.spec.argv = std::move(argv);
    d.spec.capture_output = false;
    EXPECT_FALSE(validate_spec(d.spec));
    return d;
  }
  bool run_until(const std::function<bool()>& cond, Duration limit = 5s) {
    auto deadline = MonoClock::now() + limit;
    while (!cond() && MonoClock::now() < deadline) loop.run_once(50ms);
    return cond();
  }
  int count(Msg m) {
    int n = 0;
    for (const auto& e : log.recent(10000)) n += e["id"] == message_def(m).id;
    return n;
  }
};

}  // namespace

TEST_F(SupervisorTest, PolicyDecisionRestartsAfterDelay) {
  policy.fn = [&](Unit& u, const ExitInfo& e) {
    EXPECT_EQ(e.status.signal, SIGKILL);
    sup.restart_later(u, 0.05);
  };
  sup.apply({decl("s", {"sleep", "1000"})});
  Unit* u = sup.find("s");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  pid_t first = u->child->pid;
  kill(first, SIGKILL);
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Backoff; }));
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  EXPECT_NE(u->child->pid, first);
  EXPECT_EQ(u->restarts, 1u);
  ASSERT_EQ(u->ledger.history.size(), 1u);
  EXPECT_EQ(policy.calls, 1);
}

TEST_F(SupervisorTest, NoDecisionFallsBackToDelayedRestart) {
  policy.fn = nullptr;  // a broken rule: answers nothing
  sup.apply({decl("s", {"sleep", "1000"})});
  Unit* u = sup.find("s");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  kill(u->child->pid, SIGKILL);
  ASSERT_TRUE(run_until([&] { return count(Msg::PolicyFallback) == 1; }));
  EXPECT_EQ(u->state, UnitState::Backoff);
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }, 3s));
}

TEST_F(SupervisorTest, ExhaustStopsAndRearmTimerRestarts) {
  policy.fn = [&](Unit& u, const ExitInfo&) { sup.exhaust(u, 0.1); };
  sup.apply({decl("c", {"/bin/sh", "-c", "exit 4"})});
  Unit* u = sup.find("c");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Exhausted; }));
  EXPECT_EQ(u->last_exit->status.code, 4);
  EXPECT_FALSE(u->child);
  ASSERT_TRUE(run_until([&] { return count(Msg::Rearmed) >= 1; }));
}

TEST_F(SupervisorTest, ExecFailureIsReportedWithStage) {
  std::optional<ExitInfo> seen;
  policy.fn = [&](Unit& u, const ExitInfo& e) {
    seen = e;
    sup.exhaust(u, std::nullopt);
  };
  Declaration d = decl("x", {"sleep", "1"});
  d.spec.path = "/nonexistent/program";  // vanished after validation
  sup.apply({d});
  ASSERT_TRUE(run_until([&] { return seen.has_value(); }));
  EXPECT_NE(seen->error.find("exec"), std::string::npos) << seen->error;
  EXPECT_EQ(count(Msg::SpawnFailed), 1);
  EXPECT_EQ(count(Msg::ProcessStarted), 0);
}

TEST_F(SupervisorTest, ApplyKeepsUnchangedAndRestartsChanged) {
  policy.fn = [&](Unit& u, const ExitInfo&) { sup.restart_later(u, 0); };
  sup.apply({decl("a", {"sleep", "1000"}), decl("b", {"sleep", "1000"})});
  Unit* a = sup.find("a");
  Unit* b = sup.find("b");
  ASSERT_TRUE(
      run_until([&] { return a->state == UnitState::Running && b->state == UnitState::Running; }));
  pid_t pa = a->child->pid, pb = b->child->pid;
  sup.apply({decl("a", {"sleep", "1000"}), decl("b", {"sleep", "2000"})});
  ASSERT_TRUE(
      run_until([&] { return b->child && b->child->pid != pb && b->state == UnitState::Running; }));
  EXPECT_EQ(a->child->pid, pa);
  EXPECT_EQ(policy.calls, 0);  // a spec change is not a failure
  sup.apply({decl("a", {"sleep", "1000"})});
  ASSERT_TRUE(run_until([&] { return sup.find("b") == nullptr; }));
}

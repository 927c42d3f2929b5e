// End-to-end: the rules' standing order (issue 13, the restart path).
// After each start the rules say whether the next exit is surely answered
// by a restart at once; if so the replacement starts the moment the
// process ends, and the exit is written up and put to the rules after.
// What the log says must not change: the exit, the decision, the start,
// in that order; a quick death after a quick one still backs off; an
// answer that contradicts the order undoes the replacement (VGL0177).
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// The ids of the events of `watch`, oldest first, from the daemon's log.
std::vector<std::string> ids_of(const Daemon& d, const std::string& watch) {
  std::vector<std::string> out;
  for (const auto& e : d.events())
    if (e.is_object() && e.contains("watch") && e["watch"] == watch && e.contains("id") &&
        e["id"].is_string())
      out.push_back(e["id"].get<std::string>());
  return out;
}

bool restarted(const Daemon& d, const std::string& name, pid_t old) {
  pid_t p = d.watch_pid(name);
  return p > 0 && p != old && d.watch_state(name) == "running";
}

}  // namespace

TEST(StandingOrder, ARestartAtOnceIsWrittenUpInOrderAndAQuickDeathStillBacksOff) {
  Daemon d;
  d.write_rule("a.lua",
               "watch \"s\" { start = { \"/bin/sleep\", \"100021\" },"
               " restart = { limit = 5, within = \"1h\", backoff = \"2s..5s\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "running"; })) << d.output();
  pid_t first = d.watch_pid("s");
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return restarted(d, "s", first); }, 5s)) << d.output();
  pid_t second = d.watch_pid("s");
  ASSERT_TRUE(d.wait_event("VGL0101", "s", 2)) << d.output();
  // Exit, decision, start: the order of what happened, not of the work.
  std::vector<std::string> ids = ids_of(d, "s");
  auto at = [&](const std::string& id, int nth) {
    int seen = 0;
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] == id && ++seen == nth) return static_cast<int>(i);
    return -1;
  };
  ASSERT_GE(at("VGL0102", 1), 0) << d.output();
  EXPECT_LT(at("VGL0102", 1), at("VGL0104", 1)) << d.output();
  EXPECT_LT(at("VGL0104", 1), at("VGL0101", 2)) << d.output();
  EXPECT_EQ(d.last_event("VGL0101", "s")["fields"]["pid"], second);
  EXPECT_EQ(d.last_event("VGL0102", "s")["fields"]["pid"], first);
  auto w = d.watch("s");
  EXPECT_EQ(w["restarts"], 1) << w.dump();
  EXPECT_EQ(d.count_events("VGL0177"), 0);
  // That run was quick (under the 5 s reset): the next quick death backs
  // off instead of being restarted at once.
  ASSERT_EQ(kill(second, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_state("s") == "backoff"; }, 5s)) << d.output();
  EXPECT_EQ(d.watch_pid("s"), 0);
  ASSERT_TRUE(wait_for([&] { return restarted(d, "s", second); }, 10s)) << d.output();
  EXPECT_EQ(d.watch("s")["restarts"], 2);
}

// Thirty processes killed together: each is back once, written up once.
TEST(StandingOrder, ThirtyKilledTogetherAreEachRestartedOnce) {
  Daemon d;
  std::string rules;
  for (int i = 0; i < 30; ++i)
    rules += "watch \"m" + std::to_string(i) + "\" { start = { \"/bin/sleep\", \"1000" +
             std::to_string(30 + i) + "\" } }\n";
  d.write_rule("a.lua", rules);
  ASSERT_TRUE(d.start()) << d.output();
  std::vector<pid_t> pids;
  ASSERT_TRUE(wait_for([&] {
    pids.clear();
    for (int i = 0; i < 30; ++i) {
      pid_t p = d.watch_pid("m" + std::to_string(i));
      if (p <= 0) return false;
      pids.push_back(p);
    }
    return true;
  })) << d.output();
  for (pid_t p : pids) kill(p, SIGKILL);
  for (int i = 0; i < 30; ++i) {
    std::string name = "m" + std::to_string(i);
    ASSERT_TRUE(wait_for([&] { return restarted(d, name, pids[static_cast<size_t>(i)]); }, 10s))
        << name << "\n"
        << d.output();
    ASSERT_TRUE(d.wait_event("VGL0104", name)) << name;
  }
  for (int i = 0; i < 30; ++i) {
    std::string name = "m" + std::to_string(i);
    EXPECT_EQ(d.count_events("VGL0101", name), 2) << name;
    EXPECT_EQ(d.count_events("VGL0102", name), 1) << name;
    EXPECT_EQ(d.watch(name)["restarts"], 1) << name;
  }
  EXPECT_EQ(d.count_events("VGL0177"), 0);
}

// A standing order the rules' answer contradicts (here a rule file that
// makes the order always yes, against a budget of one restart): the
// replacement is killed, the answer (give up) carried out.
TEST(StandingOrder, AnAnswerAgainstTheOrderUndoesTheReplacement) {
  Daemon d;
  d.write_rule("a.lua",
               "require(\"vigil.watch\").armable = function() return true end\n"
               "watch \"o\" { start = { \"/bin/sleep\", \"100061\" },"
               " restart = { limit = 1, within = \"1h\", reset = \"1s\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("o") == "running"; })) << d.output();
  pid_t first = d.watch_pid("o");
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return restarted(d, "o", first); }, 5s)) << d.output();
  pid_t second = d.watch_pid("o");
  ASSERT_EQ(kill(second, SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0177", "o")) << d.output();
  auto e = d.last_event("VGL0177", "o");
  EXPECT_EQ(e["fields"]["was"], second);
  pid_t third = e["fields"]["pid"].get<pid_t>();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("o") == "exhausted"; })) << d.output();
  EXPECT_EQ(d.watch_pid("o"), 0);
  EXPECT_TRUE(wait_for([&] { return !process_alive(third); })) << third;
  EXPECT_EQ(d.count_events("VGL0105", "o"), 1);
}

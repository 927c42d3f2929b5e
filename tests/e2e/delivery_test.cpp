// End-to-end: when rule handlers run. Events reach vigil.on handlers after
// the host callback that produced them has returned (and after the
// policy's decision), never inside it.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {
// The fields of the newest rule message (VGL0900) whose message is
// `text`, or null.
nlohmann::json rule_message(const Daemon& d, const std::string& text) {
  nlohmann::json found;
  for (const auto& ev : d.events())
    if (ev.value("id", "") == "VGL0900" && ev.value("message", "") == text) found = ev["fields"];
  return found;
}
}  // namespace

TEST(Delivery, ExitHandlerSeesTheDecidedUnit) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "w" { start = { "sleep", "1000" }, restart = { delay = "30s" } }
vigil.on("exit", function(ev)
  local i = vigil.exec.info(ev.watch)
  vigil.log.info("seen", { watch = ev.watch, seen_state = i.state,
                           seen_pid = i.pid or "none", seen_restarts = i.restarts })
end)
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("w") == "running"; }));
  ASSERT_EQ(kill(d.watch_pid("w"), SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return !rule_message(d, "seen").is_null(); })) << d.output();
  auto seen = rule_message(d, "seen");
  // The policy has decided (a restart in 30 s) before the handler runs.
  EXPECT_EQ(seen["seen_state"], "backoff") << seen.dump();
  EXPECT_EQ(seen["seen_pid"], "none") << seen.dump();
  EXPECT_EQ(seen["seen_restarts"], 1) << seen.dump();
}

// A handler that makes its own decision about the dying watch competes
// with the policy's: the later one stands, and nothing the policy did not
// decide is started (here: nothing after the budget is exhausted).
TEST(Delivery, CompetingDecisionInAHandlerStartsNothingExtra) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "c" {
  start = { "/bin/sh", "-c", "sleep 0.2; exit 1" },
  restart = { limit = 2, within = "10m", delay = "600ms", backoff = "600ms..600ms" },
}
local once = false
vigil.on("exit", function(ev)
  if ev.watch == "c" and not once then
    once = true
    vigil.exec.restart_later("c", 0)
  end
end)
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "c", 1, 10s)) << d.output();
  // The budget is used up: no start may follow (a superseded decision's
  // timer would start it 600 ms after the first exit).
  int starts = d.count_events("VGL0101", "c");
  EXPECT_FALSE(wait_for([&] { return d.count_events("VGL0101", "c") > starts; }, 1500ms));
  EXPECT_EQ(d.count_events("VGL0101", "c"), 2) << d.events().dump(1);
  EXPECT_EQ(d.watch_state("c"), "exhausted");
}

// A start is reported once the process runs: the handler sees it.
TEST(Delivery, StartHandlerSeesTheStartedUnit) {
  Daemon d;
  d.write_rule("a.lua", R"(
watch "s" { start = { "sleep", "1000" } }
vigil.on("start", function(ev)
  local i = vigil.exec.info(ev.watch)
  vigil.log.info("started", { watch = ev.watch, seen_state = i.state, seen_pid = i.pid or "none",
                              ready = i.ready })
end)
)");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return !rule_message(d, "started").is_null(); })) << d.output();
  auto seen = rule_message(d, "started");
  EXPECT_EQ(seen["seen_state"], "running") << seen.dump();
  EXPECT_EQ(seen["seen_pid"], d.watch_pid("s")) << seen.dump();
}

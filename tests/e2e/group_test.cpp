// End-to-end: groups of real processes that depend on each other. Each
// tier (tests/e2e/tools/tier.py) refuses to start unless the tier before
// it listens, and listens itself once up; readiness is a TCP probe on its
// port. The order of stops and starts is read back from the event log.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const std::string kTier = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/tier.py";

struct Chain {
  int db = free_port(), app = free_port(), web = free_port();

  static std::string tier(const std::string& name, int port, int needs, const std::string& extra) {
    std::string start = "{ \"python3\", \"" + kTier + "\", \"" + std::to_string(port) + "\"" +
                        (needs ? ", \"" + std::to_string(needs) + "\"" : std::string()) + " }";
    return "watch \"" + name + "\" { start = " + start +
           ", stop = { timeout = \"5s\" }, probes = { tcp { port = " + std::to_string(port) +
           ", every = \"100ms\", readiness = true } }" + extra + " }\n";
  }
  // The three watches and a group around them.
  std::string rules(const std::string& group_keys, const std::string& extra = "") const {
    return tier("db", db, 0, "") + tier("app", app, db, "") + tier("web", web, app, "") +
           "group \"orders\" { " + group_keys + " \"db\", \"app\", \"web\" }\n" + extra;
  }
};

// The events after `seq` with one of `ids`, as "ID watch", oldest first.
std::vector<std::string> sequence(const Daemon& d, uint64_t after,
                                  const std::vector<std::string>& ids) {
  std::vector<std::string> out;
  for (const auto& e : d.events(1000)) {
    if (e["seq"].get<uint64_t>() <= after) continue;
    for (const auto& id : ids)
      if (e["id"] == id) out.push_back(id + " " + e["watch"].get<std::string>());
  }
  return out;
}

uint64_t last_seq(const Daemon& d) {
  auto evs = d.events(1);
  return evs.empty() ? 0 : evs.back()["seq"].get<uint64_t>();
}

bool all_ready(const Daemon& d, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    auto w = d.watch(n);
    if (!w.is_object() || !w.value("ready", false)) return false;
  }
  return true;
}

const std::vector<std::string> kAll = {"db", "app", "web"};

}  // namespace

TEST(Group, StartsInDependencyOrderEachWaitingForTheOneBefore) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"rest_for_one\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  // tier.py exits 3 when started before its dependency listens: one start
  // each, in order, and no exits at all.
  EXPECT_EQ(sequence(d, 0, {"VGL0101"}),
            (std::vector<std::string>{"VGL0101 db", "VGL0101 app", "VGL0101 web"}));
  EXPECT_EQ(d.count_events("VGL0102"), 0) << d.output();
  EXPECT_GE(d.count_events("VGL0148", "web"), 1);
}

TEST(Group, RestForOneKillOfTheHeadRestartsTheChainInOrderOnce) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"rest_for_one\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  uint64_t seq = last_seq(d);
  pid_t db = d.watch_pid("db");
  ASSERT_EQ(kill(db, SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] { return sequence(d, seq, {"VGL0101"}).size() >= 3 && all_ready(d, kAll); }, 30s))
      << d.output();
  // Dependents stopped first (web, then app), then started again after
  // the one they need, each exactly once.
  EXPECT_EQ(sequence(d, seq, {"VGL0108", "VGL0101"}),
            (std::vector<std::string>{"VGL0108 web", "VGL0108 app", "VGL0101 db", "VGL0101 app",
                                      "VGL0101 web"}))
      << d.output();
  EXPECT_EQ(sequence(d, seq, {"VGL0149"}), std::vector<std::string>{"VGL0149 orders"});
  EXPECT_EQ(d.watch("app")["restarts"], 1);
  EXPECT_EQ(d.watch("web")["restarts"], 1);
}

TEST(Group, OneForOneRestartsOnlyTheMemberThatDied) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"one_for_one\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  pid_t db = d.watch_pid("db"), app = d.watch_pid("app"), web = d.watch_pid("web");
  uint64_t seq = last_seq(d);
  ASSERT_EQ(kill(app, SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] { return d.watch_pid("app") != app && d.watch_pid("app") && all_ready(d, kAll); }, 30s))
      << d.output();
  EXPECT_EQ(d.watch_pid("db"), db);
  EXPECT_EQ(d.watch_pid("web"), web);
  EXPECT_EQ(sequence(d, seq, {"VGL0101", "VGL0108"}), std::vector<std::string>{"VGL0101 app"});
}

TEST(Group, OneForAllRestartsEveryMemberInOrder) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"one_for_all\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  pid_t db = d.watch_pid("db");
  uint64_t seq = last_seq(d);
  ASSERT_EQ(kill(d.watch_pid("web"), SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] { return sequence(d, seq, {"VGL0101"}).size() >= 3 && all_ready(d, kAll); }, 30s))
      << d.output();
  EXPECT_NE(d.watch_pid("db"), db);
  EXPECT_EQ(sequence(d, seq, {"VGL0108", "VGL0101"}),
            (std::vector<std::string>{"VGL0108 app", "VGL0108 db", "VGL0101 db", "VGL0101 app",
                                      "VGL0101 web"}))
      << d.output();
}

TEST(Group, TwoMembersDyingTogetherGiveOneCoordinatedRestart) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"rest_for_one\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  uint64_t seq = last_seq(d);
  pid_t db = d.watch_pid("db"), web = d.watch_pid("web");
  // The head first: whenever the second death is seen, it joins the
  // restart the first one started (the other order relies on the group's
  // `coalesce` window; see docs/rules.md).
  ASSERT_EQ(kill(db, SIGKILL), 0);
  // rest_for_one may already have stopped web (and vigil reaped it).
  ASSERT_TRUE(kill(web, SIGKILL) == 0 || errno == ESRCH) << strerror(errno);
  ASSERT_TRUE(wait_for(
      [&] { return sequence(d, seq, {"VGL0101"}).size() >= 3 && all_ready(d, kAll); }, 30s))
      << d.output();
  // Give a second, uncoordinated restart the time to show up: it would
  // start a watch twice.
  EXPECT_FALSE(wait_for([&] { return sequence(d, seq, {"VGL0101"}).size() > 3; }, 2s));
  EXPECT_EQ(sequence(d, seq, {"VGL0101"}),
            (std::vector<std::string>{"VGL0101 db", "VGL0101 app", "VGL0101 web"}))
      << d.output();
}

TEST(Group, ExhaustedBudgetStopsTheGroupAndFailsOverOnce) {
  Daemon d;
  Chain c;
  std::string marker = d.dir() + "/failover";
  d.write_rule("a.lua",
               c.rules("strategy = \"rest_for_one\", restart = { limit = 1, within = "
                       "\"10m\" }, on_exhausted = \"failover\",",
                       "cluster { failover = \"echo \\\"$VIGIL_OWNER: $VIGIL_REASON\\\" >> " +
                           marker + "\" }\n"));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  ASSERT_EQ(kill(d.watch_pid("db"), SIGKILL), 0);  // restart 1 of 1
  ASSERT_TRUE(wait_for([&] { return d.count_events("VGL0149") == 1 && all_ready(d, kAll); }, 30s))
      << d.output();
  ASSERT_EQ(kill(d.watch_pid("app"), SIGKILL), 0);  // over budget: give up
  ASSERT_TRUE(d.wait_event("VGL0153", "orders", 1, 15s)) << d.output();
  EXPECT_EQ(d.count_events("VGL0150", "orders"), 1);
  EXPECT_EQ(d.count_events("VGL0152", "orders"), 1);
  std::string text = read_file(marker);
  EXPECT_EQ(text, "orders: restart budget exhausted: app killed by KILL\n");
  // Every member is down and stays down.
  ASSERT_TRUE(wait_for([&] {
    for (const auto& n : kAll)
      if (d.watch_pid(n) != 0) return false;
    return true;
  }));
  auto explain = d.cli({"explain", "orders"});
  EXPECT_NE(explain.out.find("give up"), std::string::npos) << explain.out;
  EXPECT_NE(explain.out.find("a.lua:4"), std::string::npos) << explain.out;
  // An operator start re-arms it and starts the chain in order.
  uint64_t seq = last_seq(d);
  ASSERT_EQ(d.cli({"start", "orders"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  EXPECT_EQ(sequence(d, seq, {"VGL0101"}),
            (std::vector<std::string>{"VGL0101 db", "VGL0101 app", "VGL0101 web"}));
}

TEST(Group, StopAndRestartOfAGroupFollowTheOrder) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules(""));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  uint64_t seq = last_seq(d);
  auto r = d.cli({"stop", "orders"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(sequence(d, seq, {"VGL0109"}),
            (std::vector<std::string>{"VGL0109 web", "VGL0109 app", "VGL0109 db"}));
  seq = last_seq(d);
  r = d.cli({"restart", "orders"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  EXPECT_EQ(sequence(d, seq, {"VGL0101"}),
            (std::vector<std::string>{"VGL0101 db", "VGL0101 app", "VGL0101 web"}));
  auto status = d.cli({"status"});
  EXPECT_NE(status.out.find("orders ready (one_for_one"), std::string::npos) << status.out;
}

TEST(Group, RequiresRestartsTheWatchesThatNeedIt) {
  Daemon d;
  Chain c;
  // No group: web requires app, app requires db (a graph, by requires).
  d.write_rule("a.lua", Chain::tier("db", c.db, 0, "") +
                            Chain::tier("app", c.app, c.db, ", requires = \"db\"") +
                            Chain::tier("web", c.web, c.app, ", requires = { \"app\" }"));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  uint64_t seq = last_seq(d);
  ASSERT_EQ(kill(d.watch_pid("app"), SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] { return sequence(d, seq, {"VGL0101"}).size() >= 2 && all_ready(d, kAll); }, 30s))
      << d.output();
  EXPECT_EQ(sequence(d, seq, {"VGL0108", "VGL0101"}),
            (std::vector<std::string>{"VGL0108 web", "VGL0101 app", "VGL0101 web"}));
}

TEST(Group, ReloadAddingAMemberLeavesTheOthersRunning) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"rest_for_one\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  pid_t db = d.watch_pid("db"), app = d.watch_pid("app"), web = d.watch_pid("web");
  int cache = free_port();
  d.write_rule("a.lua", Chain::tier("db", c.db, 0, "") + Chain::tier("app", c.app, c.db, "") +
                            Chain::tier("web", c.web, c.app, "") +
                            Chain::tier("cache", cache, c.web, "") +
                            "group \"orders\" { strategy = \"rest_for_one\", \"db\", \"app\", "
                            "\"web\", \"cache\" }\n");
  auto r = d.cli({"reload"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(wait_for([&] { return all_ready(d, {"cache"}); }, 30s)) << d.output();
  EXPECT_EQ(d.watch_pid("db"), db);
  EXPECT_EQ(d.watch_pid("app"), app);
  EXPECT_EQ(d.watch_pid("web"), web);
  EXPECT_EQ(d.watch("cache")["group"], "orders");
}

TEST(Group, CyclesAndUnknownMembersAreLoadErrors) {
  Daemon d;
  std::string dir = d.dir();
  write_file(dir + "/cycle.lua",
             "watch \"a\" { start = \"sleep 100\", requires = \"b\" }\n"
             "watch \"b\" { start = \"sleep 100\" }\n"
             "group \"g\" { \"a\", \"b\" }\n");
  auto r = run_command({VIGIL_BINARY, "check", dir + "/cycle.lua"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("cycle.lua:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dependency cycle"), std::string::npos) << r.err;
  write_file(dir + "/unknown.lua",
             "watch \"db\" { start = \"sleep 100\" }\n"
             "group \"g\" { \"db\", \"dbb\" }\n");
  r = run_command({VIGIL_BINARY, "check", dir + "/unknown.lua"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("unknown.lua:2: group 'g': no watch or group named 'dbb' (did you mean "
                       "'db'?)"),
            std::string::npos)
      << r.err;
  write_file(dir + "/nested.lua",
             "watch \"a\" { start = \"sleep 100\" }\n"
             "group \"g1\" { \"a\", \"g2\" }\n"
             "group \"g2\" { \"g1\" }\n");
  r = run_command({VIGIL_BINARY, "check", dir + "/nested.lua"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("groups contain each other"), std::string::npos) << r.err;
}

TEST(Group, RebootIsRefusedUnlessAllowedAndThenRateLimited) {
  Daemon d;
  std::string marker = d.dir() + "/rebooted";
  d.write_rule("a.lua",
               "cluster { reboot = \"echo reboot >> " + marker +
                   "\" }\n"
                   "watch \"w\" { start = \"exit 1\", escalate = { { \"restart\", limit = 0 }, "
                   "\"reboot\" }, rearm = \"1s\" }\n");
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(d.wait_event("VGL0156", "w", 1, 15s)) << d.output();
  EXPECT_NE(d.last_event("VGL0156", "w")["message"].get<std::string>().find("--allow-reboot"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(marker));
  d.stop();

  Daemon allowed;
  allowed.write_rule("a.lua",
                     "cluster { reboot = \"echo reboot >> " + marker +
                         "\" }\n"
                         "watch \"w\" { start = \"exit 1\", escalate = { { \"restart\", limit = 0 "
                         "}, \"reboot\" }, rearm = \"1s\" }\n");
  ASSERT_TRUE(allowed.start({"--allow-reboot"}));
  ASSERT_TRUE(allowed.wait_event("VGL0155", "w", 1, 15s)) << allowed.output();
  ASSERT_TRUE(wait_for([&] { return read_file(marker) == "reboot\n"; }));
  // Re-armed after 1 s, it fails again: the second reboot is refused.
  ASSERT_TRUE(allowed.wait_event("VGL0156", "w", 1, 15s)) << allowed.output();
  EXPECT_NE(allowed.last_event("VGL0156", "w")["message"].get<std::string>().find("ago"),
            std::string::npos);
  EXPECT_EQ(read_file(marker), "reboot\n");
}

TEST(Group, MembersDyingOneAfterTheOtherInsideTheCoalesceWindowJoinOneRestart) {
  Daemon d;
  Chain c;
  // The tail first, then the head: the tail's own restart waits out the
  // window, the head's death joins it.
  d.write_rule("a.lua", c.rules("strategy = \"rest_for_one\", coalesce = \"1s\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  uint64_t seq = last_seq(d);
  pid_t db = d.watch_pid("db"), web = d.watch_pid("web");
  ASSERT_EQ(kill(web, SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0149", "orders", 1));
  ASSERT_EQ(kill(db, SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] { return sequence(d, seq, {"VGL0101"}).size() >= 3 && all_ready(d, kAll); }, 30s))
      << d.output();
  EXPECT_FALSE(wait_for([&] { return sequence(d, seq, {"VGL0101"}).size() > 3; }, 2s));
  EXPECT_EQ(sequence(d, seq, {"VGL0101"}),
            (std::vector<std::string>{"VGL0101 db", "VGL0101 app", "VGL0101 web"}))
      << d.output();
}

TEST(Group, EscalationLadderRestartsThenRestartsTheGroupThenFailsOver) {
  Daemon d;
  Chain c;
  std::string marker = d.dir() + "/steps";
  d.write_rule("a.lua",
               c.rules("strategy = \"rest_for_one\", restart = { limit = 1, within = \"10m\", "
                       "backoff = \"0s..0s\" }, coalesce = \"10ms\", escalate = { \"restart\", { "
                       "\"restart_group\", limit = 1, within = \"1h\" }, { command = \"echo "
                       "$VIGIL_GROUP $VIGIL_WATCH >> " +
                           marker + "\" }, \"failover\" },",
                       "cluster { failover = \"echo failover >> " + marker + "\" }\n"));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  auto members = [&](int n) {
    std::vector<std::string> out;
    for (const auto& e : d.events(1000))
      if (e["id"] == "VGL0149") out.push_back(e["fields"]["members"].get<std::string>());
    return out.size() >= static_cast<size_t>(n) ? out : std::vector<std::string>{};
  };
  // Step 1: the strategy's restart (app and what follows it).
  ASSERT_EQ(kill(d.watch_pid("app"), SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return !members(1).empty() && all_ready(d, kAll); }, 30s));
  EXPECT_EQ(members(1), std::vector<std::string>{"app, web"});
  // Step 1's budget is used: step 2 restarts the whole group.
  ASSERT_EQ(kill(d.watch_pid("app"), SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return !members(2).empty() && all_ready(d, kAll); }, 30s))
      << d.output();
  EXPECT_EQ(members(2), (std::vector<std::string>{"app, web", "db, app, web"}));
  EXPECT_GE(d.count_events("VGL0151", "orders"), 1);
  // Both used: the command runs, then failover ends the ladder.
  ASSERT_EQ(kill(d.watch_pid("app"), SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0153", "orders", 1, 15s)) << d.output();
  // A command step does not hold up the walk: the command and the failover
  // run side by side, so their lines may land in either order.
  ASSERT_TRUE(wait_for([&] {
    std::string m = read_file(marker);
    return m == "orders app\nfailover\n" || m == "failover\norders app\n";
  })) << read_file(marker);
  EXPECT_EQ(d.count_events("VGL0150", "orders"), 1);
  auto explain = d.cli({"explain", "orders"});
  EXPECT_NE(explain.out.find("step 4 (failover) ends the ladder"), std::string::npos)
      << explain.out;
}

TEST(Group, FailoverStartsOnlyOnceEveryMemberIsDown) {
  Daemon d;
  std::string dir = d.dir(), marker = dir + "/steps";
  // One member takes a second to stop, one ignores TERM until its stop
  // timeout's KILL; the failover command says whether either still runs.
  std::string slow = "watch \"slow\" { start = { \"/bin/sh\", \"-c\", \"echo $$ > " + dir +
                     "/slow.pid; trap 'sleep 1; echo slow-stopped >> " + marker +
                     "; exit 0' TERM; while :; do sleep 0.1; done\" }, stop = { timeout = "
                     "\"10s\" } }\n";
  std::string deaf = "watch \"deaf\" { start = { \"/bin/sh\", \"-c\", \"echo $$ > " + dir +
                     "/deaf.pid; trap '' TERM; while :; do sleep 0.1; done\" }, stop = { "
                     "timeout = \"1s\" } }\n";
  std::string front = "watch \"front\" { start = { \"sleep\", \"100000\" } }\n";
  std::string check = "for f in " + dir + "/*.pid; do kill -0 $(cat $f) 2>/dev/null && echo " +
                      "alive $f >> " + marker + "; done; echo failover >> " + marker;
  d.write_rule("a.lua", slow + deaf + front +
                            "group \"svc\" { restart = { limit = 0 }, \"slow\", \"deaf\", "
                            "\"front\", on_exhausted = \"failover\" }\n"
                            "cluster { failover = \"" +
                            check + "\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_pid("slow") && d.watch_pid("deaf") && d.watch_pid("front") &&
           std::filesystem::exists(dir + "/slow.pid") && std::filesystem::exists(dir + "/deaf.pid");
  })) << d.output();
  ASSERT_EQ(kill(d.watch_pid("front"), SIGKILL), 0);  // no budget: the group gives up
  ASSERT_TRUE(d.wait_event("VGL0153", "svc", 1, 30s)) << d.output();
  EXPECT_EQ(read_file(marker), "slow-stopped\nfailover\n") << d.output();
  EXPECT_EQ(d.count_events("VGL0152", "svc"), 1);
}

TEST(Group, ANestedGroupThatGivesUpIsAFailureForTheOuterGroup) {
  Daemon d;
  Chain c;
  std::string inner = d.dir() + "/inner", outer = d.dir() + "/outer";
  d.write_rule("a.lua", Chain::tier("db", c.db, 0, "") + Chain::tier("app", c.app, c.db, "") +
                            Chain::tier("web", c.web, c.app, "") +
                            "group \"back\" { restart = { limit = 0 }, \"db\", \"app\", "
                            "on_exhausted = { \"/bin/sh\", \"-c\", \"echo x >> " +
                            inner +
                            "\" } }\n"
                            "group \"orders\" { strategy = \"rest_for_one\", \"back\", \"web\", "
                            "on_exhausted = { \"/bin/sh\", \"-c\", \"echo x >> " +
                            outer + "\" } }\n");
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  uint64_t seq = last_seq(d);
  ASSERT_EQ(kill(d.watch_pid("app"), SIGKILL), 0);
  // "back" has no budget: it gives up, and "orders" restarts it and web.
  ASSERT_TRUE(wait_for(
      [&] { return sequence(d, seq, {"VGL0101"}).size() >= 3 && all_ready(d, kAll); }, 30s))
      << d.output();
  EXPECT_EQ(
      sequence(d, seq, {"VGL0149", "VGL0101"}),
      (std::vector<std::string>{"VGL0149 orders", "VGL0101 db", "VGL0101 app", "VGL0101 web"}));
  EXPECT_GE(d.count_events("VGL0151", "back"), 1);
  EXPECT_EQ(d.count_events("VGL0150"), 0);
  EXPECT_FALSE(std::filesystem::exists(inner));
  EXPECT_FALSE(std::filesystem::exists(outer));
  auto status = d.cli({"status"});
  EXPECT_NE(status.out.find("orders ready"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("  back ready"), std::string::npos) << status.out;
}

TEST(Group, ExplainAWatchNamesTheBudgetAndTheRule) {
  Daemon d;
  d.write_rule("a.lua",
               "watch \"w\" {\n  start = { \"/bin/sleep\", \"1000\" },\n"
               "  restart = { limit = 4, within = \"1m\" },\n}\n");
  ASSERT_TRUE(d.start());
  auto before = d.cli({"explain", "w"});
  EXPECT_NE(before.out.find("no decision yet"), std::string::npos) << before.out;
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") != 0; }));
  ASSERT_EQ(kill(d.watch_pid("w"), SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0104", "w"));
  auto r = d.cli({"explain", "w"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("because:  w killed by KILL"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("budget:   1 of 4 used within 1m, 3 left"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rule:     "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a.lua:1"), std::string::npos) << r.out;
  EXPECT_NE(d.cli({"explain", "nope"}).code, 0);
}

TEST(Group, AnOperatorStopTakesAWatchOutOfAnOrderedRestart) {
  Daemon d;
  Chain c;
  d.write_rule("a.lua", c.rules("strategy = \"rest_for_one\", coalesce = \"2s\","));
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return all_ready(d, kAll); }, 30s)) << d.output();
  ASSERT_EQ(kill(d.watch_pid("db"), SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0149", "orders"));
  // web is queued to start again after the window; stopped now, it stays so.
  ASSERT_EQ(d.cli({"stop", "web"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return all_ready(d, {"db", "app"}); }, 30s)) << d.output();
  EXPECT_FALSE(wait_for([&] { return d.watch_pid("web") != 0; }, 2s));
  EXPECT_EQ(d.watch_state("web"), "stopped");
  // Nor does a later failure of what it depends on start it.
  pid_t app = d.watch_pid("app");
  ASSERT_EQ(kill(d.watch_pid("db"), SIGKILL), 0);
  ASSERT_TRUE(wait_for(
      [&] { return d.watch_pid("app") != app && all_ready(d, {"db", "app"}); }, 30s))
      << d.output();
  EXPECT_FALSE(wait_for([&] { return d.watch_pid("web") != 0; }, 2s));
  EXPECT_EQ(d.watch_state("web"), "stopped");
}

// End-to-end: the OCF resource agent ocf:vigil:group (cluster/ocf/group)
// run as Pacemaker runs it (OCF_RESKEY_* in its environment, the action
// as its argument) against a real daemon and a group of real processes;
// no cluster needed. tests/e2e/pacemaker_test.cpp runs it inside a real
// two-node Pacemaker cluster.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const std::string kAgent = std::string(VIGIL_SOURCE_DIR) + "/cluster/ocf/group";

// OCF exit codes.
constexpr int kOcfSuccess = 0, kOcfErrGeneric = 1, kOcfErrInstalled = 5, kOcfErrConfigured = 6,
              kOcfNotRunning = 7;

// A group "shop" of two watches the agent starts (autostart = false):
// `api` ignores TERM (only KILL ends it) when `stubborn`.
std::string shop_rules(bool stubborn, const std::string& stop_timeout) {
  std::string ignore = stubborn ? "trap '' TERM; " : "";
  return "watch \"db\" { start = { \"/bin/sh\", \"-c\", \"exec sleep 100341\" }, autostart = false, settle = \"0s\" }\n"
         "watch \"api\" { start = { \"/bin/sh\", \"-c\", \"" + ignore + "exec sleep 1002\" }, autostart = false, settle = \"0s\", stop = { timeout = \"" + stop_timeout +
         "\" } }\n"
         "group \"shop\" { strategy = \"one_for_all\", restart = { limit = 1, within = \"1m\" }, "
         "\"db\", \"api\" }\n";
}

struct Agent {
  explicit Agent(const Daemon& daemon) : d(daemon) {}
  const Daemon& d;
  std::string vigil = VIGIL_BINARY;
  std::string rules;
  int timeout_ms = 20000;

  CommandResult run(const std::string& action, int interval_ms = 0) const {
    return run_command({"env", "OCF_ROOT=/usr/lib/ocf", "OCF_RESOURCE_INSTANCE=shop",
                        "OCF_RESKEY_group=shop", "OCF_RESKEY_socket=" + d.socket(),
                        "OCF_RESKEY_vigil=" + vigil,
                        "OCF_RESKEY_rules=" + (rules.empty() ? d.rules_dir() : rules),
                        "OCF_RESKEY_CRM_meta_timeout=" + std::to_string(timeout_ms),
                        "OCF_RESKEY_CRM_meta_interval=" + std::to_string(interval_ms), kAgent,
                        action});
  }
};

std::string state(const Daemon& d) {
  auto r = d.cli({"status", "shop", "--state"});
  std::string s = r.out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// The daemon on shop_rules and the group started through the agent; the
// members' pids.
struct Started {
  pid_t api = 0, db = 0;
};
Started start_shop(Daemon& d, const Agent& a, bool stubborn, const std::string& stop_timeout) {
  d.write_rule("shop.lua", shop_rules(stubborn, stop_timeout));
  EXPECT_TRUE(d.start()) << d.output();
  auto st = a.run("start");
  EXPECT_EQ(st.code, kOcfSuccess) << st.err << d.output();
  Started s{d.watch_pid("api"), d.watch_pid("db")};
  EXPECT_GT(s.api, 0);
  return s;
}

// The agent's stop, timed; nothing of the group may be left when it returns.
double stop_leaves_nothing(const Daemon& d, const Agent& a, const Started& s, CommandResult& out) {
  auto t0 = std::chrono::steady_clock::now();
  out = a.run("stop");
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(out.code, kOcfSuccess) << out.err;
  EXPECT_FALSE(process_alive(s.api));
  EXPECT_FALSE(process_alive(s.db));
  EXPECT_EQ(state(d), "stopped");
  return took;
}

}  // namespace

TEST(OcfAgent, MetaDataConformsToTheOcfDtd) {
  Daemon d;
  Agent a{d};
  auto md = a.run("meta-data");
  ASSERT_EQ(md.code, kOcfSuccess) << md.err;
  EXPECT_NE(md.out.find("<resource-agent name=\"group\""), std::string::npos) << md.out;
  for (const char* p : {"group", "socket", "vigil", "rules", "wait"})
    EXPECT_NE(md.out.find(std::string("<parameter name=\"") + p + "\""), std::string::npos) << p;
  const std::string dtd_dir = "/usr/share/resource-agents";
  if (!std::filesystem::exists(dtd_dir + "/ra-api-1.dtd") || access("/usr/bin/xmllint", X_OK) != 0)
    GTEST_SKIP() << "no xmllint or ra-api-1.dtd (packages libxml2-utils, resource-agents): the DTD "
                    "check did not run";
  write_file(d.dir() + "/md.xml", md.out);
  auto lint = run_command({"sh", "-c", "cd " + dtd_dir + " && xmllint --noout --valid - < " + d.dir() + "/md.xml"});
  EXPECT_EQ(lint.code, 0) << lint.err;
}

TEST(OcfAgent, MonitorMapsTheGroupStateToOcfCodes) {
  Daemon d;
  d.write_rule("shop.lua", shop_rules(false, "5s"));
  Agent a{d};
  // No daemon: not running (the probe's answer on a node without vigil).
  EXPECT_EQ(a.run("monitor").code, kOcfNotRunning);
  ASSERT_TRUE(d.start());
  // Loaded, not started (autostart = false): not running.
  EXPECT_EQ(state(d), "stopped");
  EXPECT_EQ(a.run("monitor").code, kOcfNotRunning);
  auto st = a.run("start");
  ASSERT_EQ(st.code, kOcfSuccess) << st.err << d.output();
  EXPECT_EQ(state(d), "ready");
  EXPECT_EQ(a.run("monitor", 10000).code, kOcfSuccess);
  // A start of a started resource succeeds and changes nothing.
  pid_t db = d.watch_pid("db");
  EXPECT_EQ(a.run("start").code, kOcfSuccess);
  EXPECT_EQ(d.watch_pid("db"), db);

  // One kill: Vigil restarts the group here; the monitor says running
  // whatever it catches (restarting, degraded, ready).
  ASSERT_EQ(kill(d.watch_pid("api"), SIGKILL), 0);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.run("monitor", 10000).code, kOcfSuccess) << state(d);
  ASSERT_TRUE(wait_for([&] { return state(d) == "ready" && d.watch_pid("db") != db; }, 20s))
      << state(d);
  // The second within the budget's window: Vigil gives up, Pacemaker moves.
  ASSERT_EQ(kill(d.watch_pid("api"), SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return state(d) == "exhausted"; }, 20s)) << state(d);
  EXPECT_EQ(a.run("monitor", 10000).code, kOcfErrGeneric);
  // Pacemaker stops it here; a later probe finds it not running.
  auto sp = a.run("stop");
  EXPECT_EQ(sp.code, kOcfSuccess) << sp.err;
  EXPECT_EQ(a.run("monitor", 0).code, kOcfNotRunning);
  // A start re-arms it.
  st = a.run("start");
  EXPECT_EQ(st.code, kOcfSuccess) << st.err;
  EXPECT_EQ(a.run("monitor", 10000).code, kOcfSuccess);

  // A group the daemon does not know: not installed here (hard).
  auto unknown = run_command({"env", "OCF_RESKEY_group=nosuch", "OCF_RESKEY_socket=" + d.socket(),
                              "OCF_RESKEY_vigil=" + a.vigil, kAgent, "monitor"});
  EXPECT_EQ(unknown.code, kOcfErrInstalled) << unknown.err;
  EXPECT_NE(unknown.err.find("no group 'nosuch'"), std::string::npos) << unknown.err;

  // The daemon gone: not running.
  EXPECT_EQ(a.run("stop").code, kOcfSuccess);
  d.stop();
  EXPECT_EQ(a.run("monitor", 10000).code, kOcfNotRunning);
}

// A member that ignores TERM: the daemon's stop escalates to KILL after
// its stop.timeout; the agent returns only once nothing is left.
TEST(OcfAgent, StopReturnsOnlyWhenNothingOfTheGroupIsLeft) {
  Daemon d;
  Agent a{d};
  Started s = start_shop(d, a, true, "2s");
  CommandResult sp;
  double took = stop_leaves_nothing(d, a, s, sp);
  EXPECT_GE(took, 1.5) << "TERM was ignored: the stop had to wait for the KILL";
  EXPECT_EQ(a.run("monitor").code, kOcfNotRunning);
  // Stopping a stopped resource succeeds.
  EXPECT_EQ(a.run("stop").code, kOcfSuccess);
}

// The daemon's own escalation takes longer than the stop operation may:
// the agent KILLs the members itself within the operation's timeout.
TEST(OcfAgent, StopKillsWhatOutlivesHalfTheOperationTimeout) {
  Daemon d;
  Agent a{d};
  a.timeout_ms = 8000;  // 6 s of work: 3 for the ordered stop, then KILL
  Started s = start_shop(d, a, true, "10m");
  CommandResult sp;
  double took = stop_leaves_nothing(d, a, s, sp);
  EXPECT_NE(sp.err.find("KILL"), std::string::npos) << sp.err;
  EXPECT_LT(took, 8.0) << "within the operation's timeout";
}

// No daemon answers at stop. One that quit removed its socket and stopped
// the group: done. One that died left its socket and maybe the group's
// processes: the agent waits for its successor (which re-adopts them) and
// stops through it, or fails, never claiming what it cannot see.
TEST(OcfAgent, StopWithoutADaemonSucceedsOnlyWhenNothingCanBeLeft) {
  Daemon d;
  Agent a{d};
  Started s = start_shop(d, a, false, "5s");
  pid_t api = s.api, db = s.db;
  d.kill9();
  EXPECT_EQ(a.run("monitor", 10000).code, kOcfNotRunning);
  a.timeout_ms = 4000;  // 2 s of work: 1 s waiting for a daemon
  auto sp = a.run("stop");
  EXPECT_EQ(sp.code, kOcfErrGeneric);
  EXPECT_NE(sp.err.find("cannot tell that nothing of the group is left"), std::string::npos) << sp.err;
  EXPECT_TRUE(process_alive(api));
  // The successor comes while the stop waits.
  a.timeout_ms = 30000;
  CommandResult late;
  std::thread stop([&] { late = a.run("stop"); });
  ASSERT_TRUE(d.start());
  stop.join();
  EXPECT_EQ(late.code, kOcfSuccess) << late.err << d.output();
  EXPECT_FALSE(process_alive(api));
  EXPECT_FALSE(process_alive(db));
  EXPECT_EQ(state(d), "stopped");
  // A daemon that quit: no socket, nothing of the group runs.
  ASSERT_EQ(a.run("start").code, kOcfSuccess);
  api = d.watch_pid("api");
  d.stop();
  EXPECT_FALSE(process_alive(api));
  sp = a.run("stop");
  EXPECT_EQ(sp.code, kOcfSuccess) << sp.err;
}

// A daemon that hangs (stopped by SIGSTOP): every action still ends within
// its operation's timeout; the monitor says not running, the stop cannot
// say nothing is left.
TEST(OcfAgent, ASilentDaemonDoesNotHoldAnActionPastItsTimeout) {
  Daemon d;
  Agent a{d};
  Started s = start_shop(d, a, false, "5s");
  ASSERT_EQ(kill(d.pid(), SIGSTOP), 0);
  a.timeout_ms = 5000;
  for (const char* action : {"monitor", "stop"}) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = a.run(action);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.code, std::string(action) == "monitor" ? kOcfNotRunning : kOcfErrGeneric)
        << action << ": " << r.err;
    EXPECT_LT(took, 5.0) << action;
  }
  EXPECT_TRUE(process_alive(s.api));
  ASSERT_EQ(kill(d.pid(), SIGCONT), 0);
  EXPECT_EQ(a.run("monitor", 10000).code, kOcfSuccess);
}

TEST(OcfAgent, ValidateAllChecksTheRulesAndTheBinary) {
  Daemon d;
  d.write_rule("shop.lua", shop_rules(false, "5s"));
  Agent a{d};
  auto ok = a.run("validate-all");
  EXPECT_EQ(ok.code, kOcfSuccess) << ok.err;
  // A broken rule file: OCF_ERR_CONFIGURED, with vigil check's error.
  std::string broken = d.dir() + "/broken.lua";
  write_file(broken, "group \"shop\" { strategy = \"sideways\", \"db\" }\n");
  Agent bad{d};
  bad.rules = broken;
  auto r = bad.run("validate-all");
  EXPECT_EQ(r.code, kOcfErrConfigured) << r.err;
  EXPECT_NE(r.err.find("broken.lua"), std::string::npos) << r.err;
  // No vigil: not installed.
  Agent none{d};
  none.vigil = d.dir() + "/no-such-vigil";
  EXPECT_EQ(none.run("validate-all").code, kOcfErrInstalled);
  EXPECT_EQ(none.run("start").code, kOcfErrInstalled);
  EXPECT_EQ(none.run("monitor").code, kOcfNotRunning);
  // The running daemon's rules lack the group.
  ASSERT_TRUE(d.start());
  auto other = run_command({"env", "OCF_RESKEY_group=nosuch", "OCF_RESKEY_socket=" + d.socket(),
                            "OCF_RESKEY_vigil=" + a.vigil, "OCF_RESKEY_rules=" + d.rules_dir(),
                            kAgent, "validate-all"});
  EXPECT_EQ(other.code, kOcfErrConfigured) << other.err;
  EXPECT_EQ(a.run("promote").code, 3);  // OCF_ERR_UNIMPLEMENTED
}

// Pacemaker's own conformance checker, resource-agents' ocf-tester.
TEST(OcfAgent, PassesOcfTester) {
  if (access("/usr/sbin/ocf-tester", X_OK) != 0)
    GTEST_SKIP() << "no ocf-tester (package resource-agents)";
  Daemon d;
  d.write_rule("shop.lua", shop_rules(false, "5s"));
  ASSERT_TRUE(d.start());
  // A copy nobody can read (ocf-tester runs meta-data as nobody when root).
  std::string agent = d.dir() + "/group";
  std::filesystem::copy_file(kAgent, agent);
  std::filesystem::permissions(agent, std::filesystem::perms(0755));
  auto r = run_command({"ocf-tester", "-n", "shop", "-o", "group=shop", "-o",
                        "socket=" + d.socket(), "-o", "vigil=" + std::string(VIGIL_BINARY), "-o",
                        "rules=" + d.rules_dir(), agent});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("passed all tests"), std::string::npos) << r.out << r.err;
  EXPECT_EQ(state(d), "stopped");
}

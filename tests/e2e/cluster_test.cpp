// End-to-end: clustered groups with the adapters for cluster software that
// decides by itself (command, keepalived), on the real daemon and real
// processes. A fake cluster command records each call with its
// environment and whether anything of the group still ran then.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// Two members; "slow" takes a second to stop after TERM and says so.
std::string members(const std::string& dir, const std::string& marker) {
  return "watch \"slow\" { start = { \"/bin/sh\", \"-c\", \"echo $$ > " + dir +
         "/slow.pid; trap 'sleep 1; echo slow-stopped >> " + marker +
         "; exit 0' TERM; while :; do sleep 0.1; done\" }, stop = { timeout = \"10s\" } }\n"
         "watch \"front\" { start = { \"sleep\", \"100000\" } }\n";
}

// The fake cluster command: one line per call, with the environment, and
// "alive" if a member still ran when it was called.
std::string fake_cluster(const std::string& dir, const std::string& marker) {
  return "kill -0 $(cat " + dir + "/slow.pid) 2>/dev/null && echo alive >> " + marker +
         "; echo \\\"call group=$VIGIL_GROUP node=$VIGIL_NODE owner=$VIGIL_OWNER to=$VIGIL_TO_NODE "
         "reason=$VIGIL_REASON\\\" >> " +
         marker;
}

std::string group_state(const Daemon& d, const std::string& name) {
  auto r = d.cli({"status", name, "--json"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (!j.is_array() || j.empty()) return "";
  return j[0].value("state", "");
}

}  // namespace

TEST(Cluster, CommandAdapterFailsOverOnceAfterTheStopWithTheDocumentedEnvironment) {
  Daemon d;
  std::string dir = d.dir(), marker = dir + "/calls";
  d.write_rule("a.lua", members(dir, marker) +
                            "cluster { adapter = \"command\", node = \"nodea\", failover = \"" +
                            fake_cluster(dir, marker) +
                            "\" }\n"
                            "group \"orders\" { restart = { limit = 0 }, \"slow\", \"front\", "
                            "clustered = true, on_exhausted = \"failover\" }\n"
                            "vigil.cluster.on(\"takeover\", function(ev) vigil.log.notice("
                            "\"took over \" .. ev.group .. \" held by \" .. "
                            "tostring(vigil.cluster.holder(ev.group)), { watch = ev.group }) end)\n");
  ASSERT_TRUE(d.start()) << d.output();
  // The command adapter: this node holds the group from the start; the
  // rules hear it (vigil.cluster.on) and see the holder.
  ASSERT_TRUE(d.wait_event("VGL0263", "orders", 1, 15s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0900", "orders", 1, 15s)) << d.output();
  EXPECT_EQ(d.last_event("VGL0900", "orders")["fields"]["message"], "took over orders held by nodea");
  ASSERT_TRUE(wait_for([&] {
    return d.watch_pid("slow") && d.watch_pid("front") && std::filesystem::exists(dir + "/slow.pid");
  }, 15s)) << d.output();
  EXPECT_NE(d.cli({"status", "orders"}).out.find("active, held by nodea"), std::string::npos)
      << d.cli({"status", "orders"}).out;

  ASSERT_EQ(kill(d.watch_pid("front"), SIGKILL), 0);  // no budget: the group gives up
  ASSERT_TRUE(d.wait_event("VGL0153", "orders", 1, 30s)) << d.output();
  // Once, after the stop finished (slow said it stopped before the call,
  // and nothing of it was alive then), with the documented environment.
  EXPECT_EQ(read_file(marker),
            "slow-stopped\ncall group=orders node=nodea owner=orders to= reason=restart budget "
            "exhausted: front killed by KILL\n")
      << d.output();
  EXPECT_EQ(d.count_events("VGL0152", "orders"), 1);
  EXPECT_EQ(d.count_events("VGL0153", "orders"), 1);
  EXPECT_EQ(group_state(d, "orders"), "exhausted");
  EXPECT_NE(d.cli({"status", "orders"}).out.find("failed on: nodea at "), std::string::npos)
      << d.cli({"status", "orders"}).out;

  // By hand: `vigil failover GROUP --to NODE` runs it once more, with the node.
  auto r = d.cli({"failover", "orders", "--to", "nodeb"});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  ASSERT_TRUE(d.wait_event("VGL0153", "orders", 2, 30s)) << d.output();
  EXPECT_NE(read_file(marker).find("call group=orders node=nodea owner=orders to=nodeb reason=operator "
                                   "failover to nodeb\n"),
            std::string::npos)
      << read_file(marker);
  EXPECT_EQ(d.count_events("VGL0152", "orders"), 2);

  // vigil cluster: the adapter, this node and what it holds.
  auto c = d.cli({"cluster"});
  EXPECT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("adapter command, this node nodea"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("orders"), std::string::npos) << c.out;
}

TEST(Cluster, TheOldFailoverBlockIsTheCommandAdapterForAGroupThatIsNotClustered) {
  Daemon d;
  std::string dir = d.dir(), marker = dir + "/calls";
  d.write_rule("a.lua", members(dir, marker) + "cluster { failover = \"" + fake_cluster(dir, marker) +
                            "\" }\n"
                            "group \"svc\" { restart = { limit = 0 }, \"slow\", \"front\", "
                            "on_exhausted = \"failover\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_pid("slow") && d.watch_pid("front") && std::filesystem::exists(dir + "/slow.pid");
  }, 15s)) << d.output();
  ASSERT_EQ(kill(d.watch_pid("front"), SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0153", "svc", 1, 30s)) << d.output();
  std::string calls = read_file(marker);
  EXPECT_EQ(calls.rfind("slow-stopped\ncall group=svc ", 0), 0u) << calls;
  EXPECT_EQ(d.count_events("VGL0263"), 0) << "an unclustered group is not held or taken over";
}

TEST(Cluster, KeepalivedTrackFileFollowsTheGroup) {
  Daemon d;
  std::string dir = d.dir();
  std::string track = dir + "/web.track";
  d.write_rule("a.lua",
               "watch \"web\" { start = { \"sleep\", \"100000\" } }\n"
               "cluster { adapter = \"keepalived\", node = \"nodea\", track_file = \"" +
                   dir +
                   "/%g.track\" }\n"
                   "group \"site\" { restart = { limit = 1, within = \"10m\" }, \"web\", "
                   "clustered = true, on_exhausted = \"failover\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  std::string path = dir + "/site.track";
  ASSERT_TRUE(wait_for([&] { return read_file(path) == "0\n" && d.watch_pid("web"); }, 15s))
      << read_file(path) << d.output();
  pid_t first = d.watch_pid("web");
  ASSERT_EQ(kill(first, SIGKILL), 0);  // one restart left: still ok
  ASSERT_TRUE(wait_for([&] {
    pid_t now = d.watch_pid("web");
    return now && now != first && d.watch_state("web") == "running";
  }, 15s)) << d.output();
  EXPECT_EQ(read_file(path), "0\n");
  ASSERT_EQ(kill(d.watch_pid("web"), SIGKILL), 0);  // the budget is used up: gave up
  ASSERT_TRUE(wait_for([&] { return read_file(path) == "1\n"; }, 15s)) << read_file(path) << d.output();
  EXPECT_TRUE(d.wait_event("VGL0153", "site", 1, 15s)) << d.output();
  // An operator brings it back: healthy again.
  auto r = d.cli({"start", "site"});
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(wait_for([&] { return read_file(path) == "0\n"; }, 15s)) << read_file(path);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp")) << "written whole, then renamed";
}

TEST(Cluster, CheckErrorsNameTheLine) {
  auto r = check_rule("cluster { adapter = \"etcdd\", endpoints = { \"http://127.0.0.1:2379\" } }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:1: cluster: unknown adapter 'etcdd' (did you mean 'etcd'?)"),
            std::string::npos)
      << r.err;

  r = check_rule("cluster { adapter = \"etcd\", endpoints = { \"10.0.0.1:2379\" } }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:1: cluster.endpoints[1]: '10.0.0.1:2379' is not an etcd client URL"),
            std::string::npos)
      << r.err;
  r = check_rule("cluster { adapter = \"etcd\", endpoints = { \"http://10.0.0.1:99999\" } }\n");
  EXPECT_NE(r.err.find("port 99999 is out of range"), std::string::npos) << r.err;

  r = check_rule("watch \"a\" { start = { \"sleep\", \"1000\" } }\n"
                 "group \"g\" { \"a\", clustered = true }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:2: group 'g': clustered = true needs a cluster { adapter = ... } block"),
            std::string::npos)
      << r.err;

  r = check_rule("cluster { adapter = \"etcd\", endpoints = { \"http://127.0.0.1:2379\" } }\n"
                 "watch \"a\" { start = { \"sleep\", \"1000\" } }\n"
                 "group \"g\" { \"a\", on_exhausted = \"failover\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:3: group 'g': 'failover' hands a group over through the etcd "
                       "adapter: only a clustered group can be"),
            std::string::npos)
      << r.err;

  r = check_rule("cluster { adapter = \"etcd\", endpoints = { \"http://127.0.0.1:2379\" }, ttl = "
                 "\"4s\", self_fence_after = \"3.5s\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:1: cluster: self_fence_after 3.5s + a bounded stop"),
            std::string::npos)
      << r.err;

  r = check_rule("cluster { adapter = \"command\", track_file = \"/run/x\" }\n");
  EXPECT_NE(r.err.find("'track_file' is for the keepalived adapter"), std::string::npos) << r.err;

  // And a sound one passes.
  r = check_rule("cluster { adapter = \"etcd\", endpoints = { \"http://10.1.0.1:2379\", "
                 "\"https://[fd00::1]:2379\" }, node = \"nodea\", ttl = \"4s\" }\n"
                 "watch \"a\" { start = { \"sleep\", \"1000\" } }\n"
                 "group \"g\" { \"a\", clustered = true, on_exhausted = \"failover\" }\n");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Cluster, ARestartedVigilKeepsAGroupItHoldsRunning) {
  // The command adapter holds its groups from the load on: what the
  // previous vigil left running is re-adopted, not stopped and restarted.
  Daemon d;
  d.write_rule("a.lua",
               "watch \"db\" { start = { \"sleep\", \"100331\" } }\n"
               "cluster { adapter = \"command\", node = \"nodea\", failover = \"true\" }\n"
               "group \"orders\" { \"db\", clustered = true }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("db") > 0; }, 15s)) << d.output();
  pid_t db = d.watch_pid("db");
  ASSERT_EQ(d.cli({"quit", "--keep"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return !d.running(); })) << d.output();
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("db") == db; }, 15s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0263", "orders", 1, 15s)) << d.output();
  EXPECT_TRUE(process_alive(db));
  EXPECT_EQ(d.watch_pid("db"), db) << "taken over as it ran";
  EXPECT_EQ(count_processes("sleep 100331"), 1);
}

// An adapter that does not say this node holds the group at load:
// standby until an operator starts it (the pacemaker adapter: its
// agent's start is the holding).
TEST(Cluster, StandbyUntilAnOperatorStartsItAndLeftoversOfAGroupNotHeldAreStopped) {
  Daemon d;
  std::string dir = d.dir();
  d.write_rule("a.lua",
               "watch \"db\" { start = { \"sleep\", \"100322\" } }\n"
               "watch \"app\" { start = { \"sleep\", \"100323\" } }\n"
               "cluster { adapter = \"pacemaker\", node = \"nodea\" }\n"
               "group \"orders\" { \"db\", \"app\", clustered = true }\n"
               "vigil.cluster.on(\"takeover\", function(ev) vigil.log.notice(\"took \" .. ev.group) end)\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return group_state(d, "orders") == "standby"; }, 15s))
      << d.cli({"status", "orders"}).out << d.output();
  EXPECT_EQ(d.watch_pid("db"), 0);
  EXPECT_EQ(count_processes("sleep 10032"), 0) << "nothing of a standby group runs";
  EXPECT_EQ(d.cli({"status", "orders", "--check"}).code, 3);
  EXPECT_EQ(d.cli({"wait", "orders", "--until", "standby", "--timeout", "10"}).code, 0);
  auto shown = d.cli({"status"});
  EXPECT_NE(shown.out.find("orders standby"), std::string::npos) << shown.out;
  // A member alone is refused: the group starts as a whole.
  auto r = d.cli({"start", "db"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("belongs to clustered group 'orders', which this node does not hold"),
            std::string::npos)
      << r.err;
  // The operator's start of the group (the Pacemaker agent's start).
  r = d.cli({"start", "orders"});
  EXPECT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("db") && d.watch_pid("app"); }, 15s)) << d.output();
  pid_t db = d.watch_pid("db"), app = d.watch_pid("app");
  // vigil restarts and keeps the processes, but nothing says this node
  // holds the group any more: they are leftovers, stopped.
  ASSERT_EQ(d.cli({"quit", "--keep"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return !d.running(); })) << d.output();
  ASSERT_TRUE(process_alive(db) && process_alive(app));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return !process_alive(db) && !process_alive(app); }, 15s))
      << d.output();
  ASSERT_TRUE(wait_for([&] { return group_state(d, "orders") == "standby"; }, 15s)) << d.output();
  EXPECT_EQ(count_processes("sleep 10032"), 0);
  // The operator's stop of a pacemaker-placed group is its release.
  ASSERT_EQ(d.cli({"start", "orders"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("db") > 0; }, 15s)) << d.output();
  ASSERT_EQ(d.cli({"stop", "orders"}).code, 0);
  EXPECT_TRUE(wait_for([&] { return group_state(d, "orders") == "standby"; }, 15s)) << d.output();
}

// Real keepalived on two nodes (network namespaces joined by a veth pair,
// ../shared/RECIPES-HA.md §3): node A's instance tracks the file vigil
// writes for its clustered group, with weight 0. When the group gives up
// the file says 1, A goes to FAULT and the address moves to B.
TEST(Cluster, KeepalivedMovesTheAddressWhenTheGroupGivesUp) {
  if (geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
  if (run_command({"sh", "-c", "command -v keepalived"}).code != 0)
    GTEST_SKIP() << "keepalived is not installed (package keepalived)";
  NetPair pair;
  if (!pair.ok()) GTEST_SKIP() << "network namespaces: " << pair.error();
  Daemon d;
  std::string dir = d.dir();
  const std::string vip = "10.200.0.100";
  auto conf = [&](const std::string& node, const std::string& dev, int priority,
                  const std::string& track) {
    std::string path = dir + "/" + node + ".conf";
    write_file(path, "global_defs { router_id node" + node +
                         "\n  enable_script_security\n  script_user root }\n"
                         "track_file vigil_" + node + " { file " + track +
                         "\n  weight 0\n  init_file 0 overwrite }\n"
                         "vrrp_instance VI_vigil { state BACKUP\n  interface " + dev +
                         "\n  virtual_router_id 51\n  priority " + std::to_string(priority) +
                         "\n  advert_int 1\n  virtual_ipaddress { " + vip +
                         "/24 }\n  track_file { vigil_" + node + " } }\n");
    return path;
  };
  std::string track_a = dir + "/site.track";  // vigil's, for node A
  std::string track_b = dir + "/b.track";
  write_file(track_b, "0\n");
  d.write_rule("a.lua",
               "watch \"web\" { start = { \"sleep\", \"100031\" } }\n"
               "cluster { adapter = \"keepalived\", node = \"nodea\", track_file = \"" +
                   dir + "/%g.track\" }\n"
                   "group \"site\" { restart = { limit = 0 }, \"web\", clustered = true, "
                   "on_exhausted = \"failover\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return read_file(track_a) == "0\n" && d.watch_pid("web"); }, 15s))
      << d.output();

  // keepalived in the foreground (-n), each with its own pid files; our
  // children, ended by pid (TERM: it stops its own children) below.
  struct Keepalived {
    pid_t pid = -1;
    ~Keepalived() {
      if (pid > 0) {
        kill(pid, SIGTERM);
        if (!reap(pid, std::chrono::seconds(10))) {
          kill(pid, SIGKILL);
          reap(pid);
        }
      }
    }
  } ka, kb;
  auto start = [&](const std::vector<std::string>& in, const std::string& node,
                   const std::string& path) {
    std::vector<std::string> argv = in;
    for (const std::string& a :
         {std::string("keepalived"), std::string("-n"), std::string("-l"), std::string("-D"),
          std::string("-f"), path, std::string("-p"), dir + "/" + node + ".pid", std::string("-r"),
          dir + "/" + node + ".vrrp.pid", std::string("-c"), dir + "/" + node + ".chk.pid"})
      argv.push_back(a);
    return spawn_external(argv);
  };
  ka.pid = start(pair.in_a(), "A", conf("A", pair.dev_a(), 150, track_a));
  kb.pid = start(pair.in_b(), "B", conf("B", pair.dev_b(), 100, track_b));
  auto has_vip = [&](const std::vector<std::string>& in, const std::string& dev) {
    std::vector<std::string> argv = in;
    for (const char* a : {"ip", "-o", "addr", "show", "dev"}) argv.push_back(a);
    argv.push_back(dev);
    return run_command(argv).out.find(vip + "/") != std::string::npos;
  };
  ASSERT_TRUE(wait_for([&] { return has_vip(pair.in_a(), pair.dev_a()); }, 30s))
      << "node A never became MASTER";
  EXPECT_FALSE(has_vip(pair.in_b(), pair.dev_b()));

  auto gave_up = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(d.watch_pid("web"), SIGKILL), 0);  // no budget: the group gives up
  ASSERT_TRUE(wait_for([&] { return read_file(track_a) == "1\n"; }, 15s)) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return has_vip(pair.in_b(), pair.dev_b()) && !has_vip(pair.in_a(), pair.dev_a());
  }, 20s)) << "the address did not move to B";
  double moved = std::chrono::duration<double>(std::chrono::steady_clock::now() - gave_up).count();
  std::printf("keepalived: group gave up on A -> address on B in %.2f s\n", moved);
  EXPECT_TRUE(d.wait_event("VGL0153", "site", 1, 15s)) << d.output();
}

TEST(Cluster, AReloadThatChangesTheCommandAdapterLeavesItsGroupRunning) {
  // The command adapter is made again with the new settings; it holds the
  // group as before, and what runs runs on (no stop, no second start).
  Daemon d;
  auto rules = [](const std::string& cmd) {
    return "watch \"db\" { start = { \"sleep\", \"100041\" } }\n"
           "cluster { adapter = \"command\", node = \"nodea\", failover = \"" + cmd + "\" }\n"
           "group \"orders\" { \"db\", clustered = true }\n";
  };
  d.write_rule("a.lua", rules("true"));
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("db") > 0; }, 15s)) << d.output();
  pid_t db = d.watch_pid("db");
  d.write_rule("a.lua", rules("echo moved"));
  ASSERT_EQ(d.cli({"reload"}).code, 0) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0263", "orders", 2, 15s)) << d.output();
  EXPECT_EQ(d.watch_pid("db"), db);
  EXPECT_EQ(d.count_events("VGL0101", "db"), 1) << d.output();
  EXPECT_EQ(d.count_events("VGL0109", "db"), 0) << d.output();
}

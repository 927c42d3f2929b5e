// The Pacemaker adapter's mechanism: which crm_resource commands a
// failover runs, in which order, and what it reports. The commands run
// against a real cluster in tests/e2e/pacemaker_test.cpp.
#include "host/cluster/pacemaker_cluster.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace vigil;

namespace {

struct Recorder {
  std::vector<PacemakerCommand> runs;
  std::vector<std::string> fail_with;  // the result of each run, in order ("" ok)

  PacemakerRunner runner() {
    return [this](const PacemakerCommand& c, std::function<void(const std::string&)> done) {
      runs.push_back(c);
      std::string err = runs.size() <= fail_with.size() ? fail_with[runs.size() - 1] : "";
      done(err);
    };
  }
};

ClusterConfig config(const std::string& resource = "") {
  ClusterConfig c;
  c.adapter = "pacemaker";
  c.node = "nodea";
  c.resource = resource;
  return c;
}

std::string joined(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

}  // namespace

TEST(PacemakerCluster, TheResourceComesFromThePattern) {
  Recorder r;
  EXPECT_EQ(PacemakerCluster(config(), r.runner()).resource_of("orders"), "orders");
  EXPECT_EQ(PacemakerCluster(config("%g"), r.runner()).resource_of("orders"), "orders");
  EXPECT_EQ(PacemakerCluster(config("vigil-%g"), r.runner()).resource_of("orders"), "vigil-orders");
  EXPECT_EQ(PacemakerCluster(config("shop"), r.runner()).resource_of("orders"), "shop");
  EXPECT_EQ(PacemakerCluster(config("%g-100%%"), r.runner()).resource_of("a%b"), "a%b-100%");
  EXPECT_EQ(PacemakerCluster(config("50%"), r.runner()).resource_of("g"), "50%");
}

TEST(PacemakerCluster, AFailoverMarksTheResourceFailedOnThisNodeOnce) {
  Recorder r;
  PacemakerCluster pc(config("vigil-%g"), r.runner());
  pc.set_groups({"orders"});
  std::vector<std::string> results;
  pc.failover("orders", "restart budget exhausted", "", [&](const std::string& e) { results.push_back(e); });
  ASSERT_EQ(r.runs.size(), 1u);
  EXPECT_EQ(joined(r.runs[0].argv), "crm_resource --fail -r vigil-orders -N nodea");
  EXPECT_EQ(r.runs[0].group, "orders");
  EXPECT_EQ(r.runs[0].reason, "restart budget exhausted");
  EXPECT_EQ(results, std::vector<std::string>{""});
  // Its failure is the failover's.
  r.fail_with = {"", "crm_resource exited 1"};
  pc.failover("orders", "again", "", [&](const std::string& e) { results.push_back(e); });
  EXPECT_EQ(results.back(), "crm_resource exited 1");
}

TEST(PacemakerCluster, AMoveByHandClearsWhatAnEarlierMoveLeftThenMovesWithALifetime) {
  Recorder r;
  PacemakerCluster pc(config(), r.runner());
  pc.set_groups({"orders"});
  std::vector<std::string> results;
  // Nothing to clear (crm_resource fails): the move runs all the same.
  r.fail_with = {"exited 1"};
  pc.failover("orders", "operator", "nodeb", [&](const std::string& e) { results.push_back(e); });
  ASSERT_EQ(r.runs.size(), 2u);
  EXPECT_EQ(joined(r.runs[0].argv), "crm_resource --clear -r orders");
  EXPECT_EQ(joined(r.runs[1].argv), "crm_resource --move -r orders -N nodeb --lifetime PT5M");
  EXPECT_EQ(r.runs[1].to_node, "nodeb");
  EXPECT_EQ(results, std::vector<std::string>{""});
  // A move that fails is said.
  r.fail_with = {"", "", "", "exited 108"};
  pc.failover("orders", "operator", "nodeb", [&](const std::string& e) { results.push_back(e); });
  EXPECT_EQ(results.back(), "exited 108");
  for (const auto& run : r.runs)
    for (const auto& a : run.argv) EXPECT_NE(a, "--ban") << joined(run.argv);
}

TEST(PacemakerCluster, HoldingIsTheAgentsStartNeverTheAdapters) {
  Recorder r;
  std::set<std::string> started;
  PacemakerCluster pc(config(), r.runner(), [&](const std::string& g) { return started.contains(g); });
  pc.set_groups({"orders", "billing"});
  EXPECT_TRUE(r.runs.empty()) << "nothing is run or taken over at load";
  EXPECT_FALSE(pc.holds("orders"));
  EXPECT_EQ(pc.info("orders").role, "standby");
  EXPECT_EQ(pc.info("orders").holder, "");
  started.insert("orders");  // the agent's `vigil start orders`
  EXPECT_TRUE(pc.holds("orders"));
  EXPECT_EQ(pc.info("orders").role, "active");
  EXPECT_EQ(pc.info("orders").holder, "nodea");
  EXPECT_EQ(pc.nodes()[0]["holds"], nlohmann::json::array({"orders"}));
  // A group no longer clustered is not held, whatever the supervisor says.
  pc.set_groups({"billing"});
  EXPECT_FALSE(pc.holds("orders"));
  // Without the supervisor's record: nothing is held.
  PacemakerCluster bare(config(), r.runner());
  bare.set_groups({"orders"});
  EXPECT_FALSE(bare.holds("orders"));
}

// Container watches end to end: a real vigil daemon against a real Podman
// API service (tests/unit/podman_fixture.hpp). Waits are on events with
// deadlines; a scenario that stops working fails.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>

#include "tests/e2e/harness.hpp"
#include "tests/unit/podman_fixture.hpp"

using namespace vigil::test;

namespace {

struct ContainerE2E : ::testing::Test {
  std::unique_ptr<testing_podman::PodmanService> pm;
  void SetUp() override {
    std::string why = testing_podman::missing();
    if (!why.empty()) GTEST_SKIP() << why;
    pm = std::make_unique<testing_podman::PodmanService>();
    if (!pm->error().empty()) GTEST_SKIP() << "no Podman service here: " << pm->error();
  }
  std::string docker_block() const { return "docker = { socket = \"" + pm->socket() + "\" }\n"; }
};

}  // namespace

TEST_F(ContainerE2E, KilledMainProcessIsSeenAtOnceAndRestartedThroughTheApi) {
  ASSERT_FALSE(pm->run_container("web").empty());
  Daemon d;
  d.write_rule("c.lua", docker_block() + "container \"web\" { match = { name = \"web\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") > 0; })) << d.output();
  pid_t first = d.watch_pid("web");
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0102", "web")) << d.output();
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("web");
    return p > 0 && p != first;
  })) << d.output();
  EXPECT_EQ(d.count_events("VGL0276", "web"), 1) << "started once through the API: " << d.output();
  EXPECT_EQ(d.watch("web")["container"]["state"], "running");
  EXPECT_EQ(d.watch("web")["restarts"], 1);
}

TEST_F(ContainerE2E, EngineRestartPolicyAlwaysIsCountedNotDoubled) {
  ASSERT_FALSE(pm->run_container("eng", {}, {}, {"--restart", "always"}).empty());
  Daemon d;
  d.write_rule("c.lua", docker_block() + "container \"eng\" { match = { name = \"eng\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("eng") > 0; })) << d.output();
  pid_t first = d.watch_pid("eng");
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  ASSERT_TRUE(d.wait_event("VGL0279", "eng")) << d.output();
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("eng");
    return p > 0 && p != first;
  })) << d.output();
  EXPECT_EQ(d.count_events("VGL0276", "eng"), 0) << "vigil made no restart of its own: " << d.output();
  EXPECT_EQ(d.watch("eng")["restarts"], 1) << "counted into the budget";
  EXPECT_EQ(d.watch("eng")["container"]["engine_restarts"], 1);
}

TEST_F(ContainerE2E, RestForOneGroupStopsWebRestartsDbThenStartsWebEachOnce) {
  ASSERT_FALSE(pm->run_container("shop-db").empty());
  ASSERT_FALSE(pm->run_container("web").empty());
  Daemon d;
  d.write_rule("c.lua", docker_block() +
                            "container \"db\" { match = { name = \"shop-db\" } }\n"
                            "container \"web\" { match = { name = \"web\" } }\n"
                            "group \"shop\" { strategy = \"rest_for_one\", \"db\", \"web\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("db") > 0 && d.watch_pid("web") > 0; })) << d.output();
  pid_t db = d.watch_pid("db"), web = d.watch_pid("web");
  ASSERT_EQ(::kill(db, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] {
    pid_t a = d.watch_pid("db"), b = d.watch_pid("web");
    return a > 0 && b > 0 && a != db && b != web && d.watch_state("web") == "running";
  }, std::chrono::seconds(30))) << d.output();
  // From the event log: web stopped, then db up, then web up; each once.
  std::vector<std::string> order;
  for (const auto& e : d.events()) {
    std::string id = e["id"].is_string() ? e["id"].get<std::string>() : "";
    std::string w = e["watch"].is_string() ? e["watch"].get<std::string>() : "";
    if (id == "VGL0109" && w == "web") order.push_back("stopped web");
    if (id == "VGL0276") order.push_back("start " + w);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"stopped web", "start db", "start web"})) << d.output();
}

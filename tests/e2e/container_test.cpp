// Container watches end to end: a real vigil daemon against a real Podman
// API service (tests/unit/podman_fixture.hpp). Waits are on events with
// deadlines; a scenario that stops working fails.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <cstdlib>
#include <memory>
#include <string>

#include "tests/e2e/harness.hpp"
#include "tests/unit/podman_fixture.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

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
  // The container's main process as the engine says (0 when none).
  pid_t engine_pid(const std::string& name) const {
    std::string out;
    if (pm->podman({"inspect", "--format", "{{.State.Pid}}", name}, &out) != 0) return 0;
    return static_cast<pid_t>(std::atol(out.c_str()));
  }
};

// The probe entry `i` of a watch's status (null when none).
nlohmann::json probe_status(const Daemon& d, const std::string& watch, size_t i = 0) {
  auto w = d.watch(watch);
  if (!w.is_object() || !w.contains("probes") || w["probes"].size() <= i) return nullptr;
  return w["probes"][i];
}

bool probe_passing(const Daemon& d, const std::string& watch, size_t i = 0) {
  auto p = probe_status(d, watch, i);
  return p.is_object() && p.value("passing", false);
}

std::string field(const nlohmann::json& ev, const char* key) {
  if (!ev.is_object() || !ev.contains("fields") || !ev["fields"].contains(key)) return "";
  const auto& v = ev["fields"][key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// An exec probe's timeout: a podman exec on a loaded machine (or under a
// sanitizer) may take seconds; only the command's answer is to decide.
constexpr const char* kExecTimeout = "timeout = \"15s\"";

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

// The health check (`test -e /tmp/ok`) starts failing when the test removes
// the file: after `fails` (2) the container is hung, killed and restarted
// once through the API; its command makes the file again, so the probe
// passes and nothing restarts it a second time.
TEST_F(ContainerE2E, FailingExecHealthCheckRestartsOnceAndPassesAgain) {
  ASSERT_FALSE(
      pm->run_container(
            "h", {}, {"sh", "-c", "touch /tmp/ok; trap \"exit 0\" TERM; while :; do sleep 1; done"})
          .empty());
  Daemon d;
  d.write_rule(
      "c.lua",
      docker_block() +
          "container \"h\" { match = { name = \"h\" }, probes = { exec { cmd = { \"test\", \"-e\", "
          "\"/tmp/ok\" }, every = \"1s\", fails = 2, " +
          kExecTimeout + " } } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return probe_passing(d, "h"); }, 30s))
      << d.watch("h").dump() << d.output();
  EXPECT_EQ(d.watch("h")["container"]["health"], "healthy");
  pid_t first = d.watch_pid("h");
  ASSERT_GT(first, 0);
  std::string out;
  ASSERT_EQ(pm->podman({"exec", "h", "/bin/busybox", "rm", "-f", "/tmp/ok"}, &out), 0) << out;
  ASSERT_TRUE(d.wait_event("VGL0142", "h", 1, 30s)) << d.output();
  auto hung = d.last_event("VGL0142", "h");
  EXPECT_EQ(field(hung, "pid"), std::to_string(first));
  EXPECT_NE(field(hung, "reason").find("exited 1"), std::string::npos) << hung.dump();
  ASSERT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("h");
        return p > 0 && p != first && d.watch_state("h") == "running";
      },
      30s))
      << d.output();
  EXPECT_EQ(d.count_events("VGL0276", "h"), 1) << "restarted once through the API: " << d.output();
  EXPECT_EQ(engine_pid("h"), d.watch_pid("h"));
  // The restarted container made its file again, and the probe passes.
  ASSERT_TRUE(wait_for([&] { return probe_passing(d, "h"); }, 30s))
      << d.watch("h").dump() << d.output();
  EXPECT_EQ(pm->podman({"exec", "h", "test", "-e", "/tmp/ok"}), 0);
  // No second restart over several probe periods (a bounded quiet wait).
  pid_t second = d.watch_pid("h");
  EXPECT_FALSE(wait_for(
      [&] { return d.count_events("VGL0142", "h") > 1 || d.count_events("VGL0276", "h") > 1; }, 4s))
      << d.output();
  EXPECT_EQ(d.watch_pid("h"), second);
  EXPECT_EQ(d.watch("h")["restarts"], 1);
  EXPECT_EQ(d.watch("h")["container"]["health"], "healthy");
}

// A health check that always fails: each hang is a restart out of the
// budget (limit 2), then the watch is exhausted (VGL0105) and stays so; no
// loop of restarts.
TEST_F(ContainerE2E, NeverHealthyContainerIsExhaustedAfterItsBudgetWithNoLoop) {
  ASSERT_FALSE(pm->run_container("sick").empty());
  Daemon d;
  d.write_rule("c.lua",
               docker_block() +
                   "container \"sick\" { match = { name = \"sick\" },\n"
                   "  restart = { limit = 2, within = \"10m\", backoff = \"100ms..200ms\" },\n"
                   "  probes = { exec { cmd = { \"false\" }, every = \"500ms\", fails = 2, " +
                   kExecTimeout + " } } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "sick", 1, 60s)) << d.output();
  EXPECT_EQ(d.watch_state("sick"), "exhausted");
  EXPECT_EQ(d.count_events("VGL0142", "sick"), 3) << "hung three times: " << d.output();
  EXPECT_EQ(d.count_events("VGL0276", "sick"), 2)
      << "the budget's restarts, no more: " << d.output();
  EXPECT_EQ(d.watch("sick")["restarts"], 2);
  // Nothing more for a few probe periods (a bounded quiet wait).
  EXPECT_FALSE(wait_for(
      [&] {
        return d.count_events("VGL0276", "sick") > 2 || d.count_events("VGL0142", "sick") > 3;
      },
      4s))
      << d.output();
  EXPECT_EQ(d.watch_state("sick"), "exhausted");
  EXPECT_EQ(d.watch_pid("sick"), 0);
  EXPECT_EQ(d.count_events("VGL0105", "sick"), 1);
}

// The API service goes away (killed) and comes back. The container runs
// on meanwhile (its conmon is not the service's): the pidfd says nothing
// died, the status shows the engine state unknown, and after the engine is
// up again (VGL0272, a resync) it is the same process: no death, no restart.
TEST_F(ContainerE2E, EngineGoneAndBackIsNoDeathAndNoRestart) {
  ASSERT_FALSE(pm->run_container("web").empty());
  Daemon d;
  d.write_rule("c.lua", docker_block() + "container \"web\" { match = { name = \"web\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0272", "", 1, 30s)) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") > 0; }, 30s)) << d.output();
  pid_t pid = d.watch_pid("web");
  pm->stop();
  ASSERT_TRUE(d.wait_event("VGL0273", "", 1, 30s)) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("web")["container"]["state"] == "unknown"; }, 30s))
      << d.watch("web").dump();
  EXPECT_TRUE(process_alive(pid));
  EXPECT_EQ(d.watch_pid("web"), pid);
  EXPECT_EQ(d.watch_state("web"), "running");
  ASSERT_TRUE(pm->start()) << pm->error();
  ASSERT_TRUE(d.wait_event("VGL0272", "", 2, 30s)) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("web")["container"]["state"] == "running"; }, 30s))
      << d.watch("web").dump();
  EXPECT_EQ(d.watch_pid("web"), pid);
  EXPECT_EQ(engine_pid("web"), pid);
  EXPECT_EQ(d.count_events("VGL0102", "web"), 0) << d.output();
  EXPECT_EQ(d.count_events("VGL0276", "web"), 0) << d.output();
  EXPECT_EQ(d.count_events("VGL0280", "web"), 0) << d.output();
  EXPECT_EQ(d.watch("web")["restarts"], 0);
}

// `podman rm -f` by hand. The pidfd sees the main process die first: a
// death like any other (VGL0102), which the rules answer with a restart;
// the engine says the container was removed (VGL0280), and vigil never
// creates one, so the restart is a failed start (VGL0124, "no container
// matches", or the engine's refusal while the removal is under way) and
// the rules go on deciding from the budget (the next restart scheduled,
// VGL0104). Per docs/containers.md: "a container the watch had and that
// is gone now (removed by hand, VGL0280) is a failed start, and the rules
// decide (budget, ladder)".
// The rules wait 3 s before the restart (`delay`), so that this test is
// about what happens once the container is gone; a restart at once, which
// races the removal, is AContainerRemovedUnderAnImmediateRestartLeavesNoProcess.
TEST_F(ContainerE2E, ContainerRemovedByHandIsAFailedStartTheRulesAnswer) {
  ASSERT_FALSE(pm->run_container("gone").empty());
  Daemon d;
  d.write_rule(
      "c.lua",
      docker_block() +
          "container \"gone\" { match = { name = \"gone\" }, restart = { delay = \"3s\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("gone") > 0; }, 30s)) << d.output();
  pid_t pid = d.watch_pid("gone");
  std::string out;
  ASSERT_EQ(pm->podman({"rm", "-f", "-t", "0", "gone"}, &out), 0) << out;
  ASSERT_TRUE(d.wait_event("VGL0102", "gone", 1, 30s)) << d.output();
  EXPECT_EQ(field(d.last_event("VGL0102", "gone"), "pid"), std::to_string(pid));
  ASSERT_TRUE(d.wait_event("VGL0280", "gone", 1, 30s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0124", "gone", 1, 30s)) << d.output();
  EXPECT_EQ(field(d.last_event("VGL0124", "gone"), "error"), "no container matches (name=gone)")
      << d.output();
  EXPECT_EQ(d.count_events("VGL0276", "gone"), 0) << "nothing to start: " << d.output();
  // The rules answer the failed start as any failed start: another try later.
  ASSERT_TRUE(d.wait_event("VGL0124", "gone", 2, 30s)) << d.output();
  EXPECT_EQ(field(d.last_event("VGL0124", "gone"), "error"), "no container matches (name=gone)")
      << d.output();
  EXPECT_EQ(d.watch_pid("gone"), 0);
  EXPECT_TRUE(d.watch("gone")["container"]["id"].is_null()) << d.watch("gone").dump();
  EXPECT_NE(pm->podman({"container", "exists", "gone"}), 0) << "vigil created no container";
}

// Compose labels: the watch of project shop's service web finds web's
// container, not db's (which is newer, so a match that ignored the
// service would pick it).
TEST_F(ContainerE2E, ComposeProjectAndServiceMatchOnlyThatService) {
  ASSERT_FALSE(pm->run_container("shop-web-1", {{"com.docker.compose.project", "shop"},
                                                {"com.docker.compose.service", "web"}})
                   .empty());
  ASSERT_FALSE(pm->run_container("shop-db-1", {{"com.docker.compose.project", "shop"},
                                               {"com.docker.compose.service", "db"}})
                   .empty());
  ASSERT_FALSE(pm->run_container("other-web-1", {{"com.docker.compose.project", "other"},
                                                 {"com.docker.compose.service", "web"}})
                   .empty());
  Daemon d;
  d.write_rule(
      "c.lua",
      docker_block() +
          "container \"web\" { match = { compose_project = \"shop\", service = \"web\" } }\n"
          "container \"cache\" { match = { compose_project = \"shop\", service = \"cache\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") > 0; }, 30s)) << d.output();
  EXPECT_EQ(d.watch_pid("web"), engine_pid("shop-web-1"));
  EXPECT_EQ(d.watch("web")["container"]["name"], "shop-web-1");
  EXPECT_EQ(d.watch("web")["container"]["state"], "running");
  ASSERT_TRUE(d.wait_event("VGL0277", "cache", 1, 30s)) << d.output();
  EXPECT_EQ(d.watch_pid("cache"), 0);
  EXPECT_TRUE(d.watch("cache")["container"]["id"].is_null()) << d.watch("cache").dump();
}

// A health command the image does not have: a failed probe whose reason is
// the engine's (runc's) message, in the event and in `vigil status --json`.
TEST_F(ContainerE2E, MissingHealthCommandIsAFailedProbeWithTheEnginesMessage) {
  ASSERT_FALSE(pm->run_container("w").empty());
  Daemon d;
  d.write_rule(
      "c.lua",
      docker_block() +
          "container \"w\" { match = { name = \"w\" }, probes = { exec { cmd = { \"wget\", \"-q\", "
          "\"-O-\", \"http://127.0.0.1/health\" }, every = \"1s\", fails = 100, " +
          kExecTimeout + " } } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0141", "w", 1, 30s)) << d.output();
  std::string reason = field(d.last_event("VGL0141", "w"), "reason");
  EXPECT_NE(reason.find("executable file not found"), std::string::npos) << reason;
  EXPECT_NE(reason.find("wget"), std::string::npos) << reason;
  auto p = probe_status(d, "w");
  ASSERT_TRUE(p.is_object()) << d.watch("w").dump();
  EXPECT_FALSE(p.value("passing", true));
  EXPECT_NE(p.value("reason", "").find("executable file not found"), std::string::npos) << p.dump();
  EXPECT_EQ(d.watch("w")["container"]["health"], "unhealthy");
  EXPECT_EQ(d.count_events("VGL0142", "w"), 0) << "below its threshold: not hung";
}

// Same-image counts: containers of one image (by ID: another tag of the
// same image counts) and label. Over the maximum, the newest is stopped;
// under the minimum with nothing stopped to start, one is created from
// the template.
TEST_F(ContainerE2E, SameImageCountStopsTheNewestOverMaxAndCreatesFromTheTemplateUnderMin) {
  const std::string image = testing_podman::PodmanService::kImage;
  ASSERT_EQ(pm->podman({"tag", image, "localhost/bb-alias:2"}), 0);
  std::map<std::string, std::string> worker = {{"app.role", "worker"}};
  ASSERT_FALSE(pm->run_container("w1", worker).empty());
  ASSERT_FALSE(pm->run_container("w2", worker).empty());
  ASSERT_FALSE(pm->run_container("other", {}).empty());  // same image, not a worker
  ASSERT_FALSE(pm->run_container("w3", worker, {}, {}, "localhost/bb-alias:2").empty());  // the newest
  Daemon d;
  d.write_rule("c.lua", docker_block() +
                            "container \"workers\" {\n"
                            "  match = { image = \"" + image + "\", label = { [\"app.role\"] = \"worker\" } },\n"
                            "  count = { min = 2, max = 2, hold = \"0.5s\" }, on_over = \"stop_newest\",\n"
                            "  create = { image = \"" + image + "\", label = { [\"app.role\"] = \"worker\" },\n"
                            "             cmd = { \"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\" } },\n"
                            "  restart = { limit = 5, within = \"1m\", delay = 0 }, engine_grace = \"20s\",\n"
                            "}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0285", "workers")) << d.output();
  auto running = [&](const std::string& name) {
    std::string out;
    return pm->podman({"inspect", "--format", "{{.State.Running}}", name}, &out) == 0 &&
           out.find("true") != std::string::npos;
  };
  ASSERT_TRUE(wait_for([&] { return !running("w3"); }, 20s)) << d.output();
  EXPECT_TRUE(running("w1") && running("w2") && running("other"));
  ASSERT_TRUE(wait_for([&] {
    auto w = d.watch("workers");
    return w["count"] == 2 && w["bounds"] == "within";
  })) << d.output();
  EXPECT_EQ(d.count_events("VGL0285", "workers"), 1) << d.output();

  // Two gone: one stopped by vigil is removed, a running one is removed.
  ASSERT_EQ(pm->podman({"rm", "-f", "w3"}), 0);
  ASSERT_EQ(pm->podman({"rm", "-f", "-t", "0", "w1"}), 0);
  ASSERT_TRUE(d.wait_event("VGL0126", "workers")) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0286", "workers")) << d.output();
  ASSERT_TRUE(wait_for([&] {
    auto w = d.watch("workers");
    return w["count"] == 2 && w["state"] == "running";
  }, 30s)) << d.output();
  std::string out;
  ASSERT_EQ(pm->podman({"ps", "-q", "--filter", "label=app.role=worker"}, &out), 0);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  EXPECT_EQ(d.count_events("VGL0286", "workers"), 1) << "one created: " << d.output();
}

// `podman rm -f` of a watched container with an immediate restart: a
// start may race the removal (Podman accepts it between its kill and its
// remove), and the new process would outlive the container. Whatever the
// race did, nothing of the container runs afterwards, and the rules hear
// a failed start.
TEST_F(ContainerE2E, AContainerRemovedUnderAnImmediateRestartLeavesNoProcess) {
  const std::string token = "vgl-leak-" + std::to_string(::getpid());
  ASSERT_FALSE(pm->run_container("racy", {}, {"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done # " + token})
                   .empty());
  Daemon d;
  d.write_rule("c.lua", docker_block() +
                            "container \"racy\" { match = { name = \"racy\" }, restart = { delay = 0, limit = 3, within = \"1m\" } }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("racy") > 0; }, 30s)) << d.output();
  ASSERT_EQ(pm->podman({"rm", "-f", "-t", "0", "racy"}), 0);
  // However the start met the removal (refused by the engine, the
  // container gone at its inspect, or no container to find), it failed,
  // and the rules heard of it; in about one run in five it started a
  // process that outlived the container, and VGL0287 ended it.
  ASSERT_TRUE(d.wait_event("VGL0124", "racy", 1, 30s)) << d.output();
  auto leaked = [&] {
    std::string n;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
      std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string c = read_file(e.path().string() + "/cmdline");
      std::string st = read_file(e.path().string() + "/stat");
      for (auto& ch : c) if (ch == '\0') ch = ' ';
      if (c.find(token) != std::string::npos && st.find(") Z") == std::string::npos)
        n += name + ": " + c + "\n";
    }
    return n;
  };
  EXPECT_TRUE(wait_for([&] { return leaked().empty(); }, 10s)) << leaked() << d.output();
  EXPECT_TRUE(wait_for([&] { return d.watch_pid("racy") == 0; }, 10s)) << d.output();
}

// Container watches in the supervisor against a fake engine whose
// "containers" are real processes (so the pidfd path is the real one):
// start and restart through the engine, death seen by the pidfd, the
// engine's own restarts observed and counted, take_over, exec probes, no
// engine, a removed container, resyncs that invent no deaths.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "host/container/engine.hpp"
#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/supervise/supervisor.hpp"

extern char** environ;

using namespace vigil;
using namespace std::chrono_literals;

namespace {

struct Policy1 : Policy {
  std::function<void(Unit&, const ExitInfo&)> fn;
  std::vector<ExitInfo> exits;
  MonoTime last_exit_at{};
  void on_exit(Unit& u, const ExitInfo& e) override {
    exits.push_back(e);
    last_exit_at = MonoClock::now();
    if (fn) fn(u, e);
  }
  std::vector<nlohmann::json> counts;
  std::function<void(Unit&, const nlohmann::json&)> count_fn;
  void on_count(Unit& u, const nlohmann::json& ev) override {
    counts.push_back(ev);
    if (count_fn) count_fn(u, ev);
  }
  void on_state(Unit&, const nlohmann::json&) override {}
  std::vector<nlohmann::json> hung;
  void on_hung(Unit&, const nlohmann::json& ev) override { hung.push_back(ev); }
  void run_probe(Unit&, size_t, uint64_t) override {}
};

// Containers are `sleep` processes; every answer comes later (posted).
struct FakeEngine : ContainerEngine {
  explicit FakeEngine(EventLoop& l) : loop(l) {}
  EventLoop& loop;
  EngineListener* listener = nullptr;
  bool is_up = true;
  EngineConfig cfg;
  std::map<std::string, ContainerInfo> all;
  int starts = 0, stops = 0;
  std::vector<std::string> policies_set;
  std::function<ExecResult(const std::vector<std::string>&)> exec_fn = [](auto&) {
    ExecResult r;
    r.exit_code = 0;
    return r;
  };

  void add(const std::string& id, const std::string& name, const std::string& policy = "no") {
    ContainerInfo c;
    c.id = id;
    c.name = name;
    c.image = "localhost/shop:1";
    c.image_id = "sha256:1111";
    c.status = "exited";
    c.restart_policy = policy;
    c.inspected = true;
    c.created = static_cast<double>(all.size());
    c.healthcheck = {"CMD-SHELL", "test -e /tmp/ok"};
    all[id] = c;
  }
  void run(ContainerInfo& c) {
    const char* argv[] = {"sleep", "1000", nullptr};
    pid_t pid = 0;
    posix_spawnp(&pid, "sleep", nullptr, nullptr, const_cast<char**>(argv), environ);
    c.pid = pid;
    c.running = true;
    c.status = "running";
  }
  void event(const std::string& id, const std::string& action) {
    ContainerEvent ev;
    ev.id = id;
    ev.name = all.count(id) ? all[id].name : "";
    ev.action = action;
    if (listener) listener->container_event(ev);
  }
  // The engine's restart policy at work: a new main process, and its event.
  void engine_restart(const std::string& id) {
    auto& c = all[id];
    run(c);
    ++c.restart_count;
    event(id, "restart");
  }

  void set_listener(EngineListener* l) override { listener = l; }
  bool up() const override { return is_up; }
  const EngineConfig& config() const override { return cfg; }
  void find(const ContainerMatch& m, bool all_too, Listed done) override {
    std::vector<ContainerInfo> found;
    for (auto& [id, c] : all)
      if ((m.name.empty() || m.name == c.name) && (m.image.empty() || m.image == c.image) &&
          (all_too || c.running))
        found.push_back(c);
    loop.post([done, found] { done("", found); });
  }
  void inspect(const std::string& id, Inspected done) override {
    auto it = all.find(id);
    ContainerInfo c = it == all.end() ? ContainerInfo{} : it->second;
    std::string err = it == all.end() ? "no such container: " + id : "";
    loop.post([done, err, c] { done(err, c); });
  }
  void image_id(const std::string&, std::function<void(const std::string&, const std::string&)> done) override {
    loop.post([done] { done("", "sha256:1111"); });
  }
  void start(const std::string& id, Done done) override {
    ++starts;
    run(all[id]);
    loop.post([this, id, done] {
      event(id, "start");
      done("");
    });
  }
  void stop(const std::string& id, double, Done done) override {
    ++stops;
    auto& c = all[id];
    if (c.running) ::kill(c.pid, SIGTERM);
    c.running = false;
    c.status = "exited";
    loop.post([done] { done(""); });
  }
  void restart(const std::string&, double, Done done) override { loop.post([done] { done(""); }); }
  void kill(const std::string& id, const std::string&, Done done) override {
    auto& c = all[id];
    if (c.running) ::kill(c.pid, SIGKILL);
    loop.post([done] { done(""); });
  }
  void remove(const std::string& id, bool, Done done) override {
    all.erase(id);
    loop.post([this, id, done] {
      event(id, "destroy");
      done("");
    });
  }
  std::string create_error;  // "": create works
  int creates = 0;
  void create(const ContainerTemplate& t, std::function<void(const std::string&, const std::string&)> done) override {
    if (!create_error.empty()) return loop.post([this, done] { done(create_error, ""); });
    std::string id = "9999999999990" + std::to_string(++creates);
    add(id, "");
    all[id].image = t.image;
    all[id].labels = t.labels;
    loop.post([done, id] { done("", id); });
  }
  void set_restart_policy(const std::string& id, const std::string& policy, Done done) override {
    policies_set.push_back(policy);
    all[id].restart_policy = policy;
    loop.post([done] { done(""); });
  }
  void exec(const std::string&, const std::vector<std::string>& argv, double,
            std::function<void(const ExecResult&)> done) override {
    ExecResult r = exec_fn(argv);
    loop.post([done, r] { done(r); });
  }
  void logs(const std::string&, int, std::function<void(const std::string&, const std::string&)> done) override {
    loop.post([done] { done("", "log line\n"); });
  }
  // A container process died: the engine notices (conmon), its state says so.
  void died(const std::string& id) {
    all[id].running = false;
    all[id].status = "exited";
  }
};

LogOptions quiet() {
  LogOptions o;
  o.console = false;
  return o;
}

struct ContainerUnits : ::testing::Test {
  EventLoop loop;
  EventLog log{quiet()};
  FakeEngine engine{loop};
  Supervisor sup{loop, log, ""};
  Policy1 policy;

  void SetUp() override {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sup.set_policy(&policy);
    sup.set_containers(&engine);
  }
  void TearDown() override {
    for (auto& [id, c] : engine.all)
      if (c.running) ::kill(c.pid, SIGKILL);
    sup.set_containers(nullptr);
  }
  Declaration decl(const std::string& name, const std::string& match, bool take_over = false) {
    Declaration d;
    d.name = name;
    ContainerDecl c;
    c.match.name = match;
    c.take_over = take_over;
    c.engine_grace = 5;
    d.container = c;
    return d;
  }
  bool run_until(const std::function<bool()>& cond, Duration limit = 5s) {
    auto deadline = MonoClock::now() + limit;
    while (!cond() && MonoClock::now() < deadline) loop.run_once(20ms);
    return cond();
  }
  int count(Msg m) {
    int n = 0;
    for (const auto& e : log.recent(10000)) n += e["id"] == message_def(m).id;
    return n;
  }
  // Kills the container's main process as a crash would.
  void crash(const std::string& id) {
    ::kill(engine.all[id].pid, SIGKILL);
    engine.died(id);
  }
};

}  // namespace

TEST_F(ContainerUnits, StartedThroughTheEngineDeathSeenByPidfdRestartedThroughTheEngine) {
  engine.add("aaaaaaaaaaaa01", "web");
  policy.fn = [&](Unit& u, const ExitInfo&) { sup.restart_later(u, 0); };
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  EXPECT_EQ(engine.starts, 1);
  ASSERT_TRUE(u->child);
  pid_t first = u->child->pid;
  EXPECT_EQ(first, engine.all["aaaaaaaaaaaa01"].pid);
  EXPECT_TRUE(u->foreign()) << "vigil stops it through the engine only";

  MonoTime killed = MonoClock::now();
  crash("aaaaaaaaaaaa01");
  ASSERT_TRUE(run_until([&] { return policy.exits.size() == 1; }));
  double seen = to_seconds(policy.last_exit_at - killed);
  EXPECT_LT(seen, 0.05) << "the pidfd tells at once, not the engine's die event";
  EXPECT_TRUE(policy.exits[0].status.known);
  EXPECT_EQ(policy.exits[0].status.signal, SIGKILL);
  ASSERT_TRUE(run_until([&] { return u->child && u->child->pid != first; }));
  EXPECT_EQ(engine.starts, 2) << "restarted through the engine, once";
  EXPECT_EQ(u->restarts, 1u);
  nlohmann::json j = u->to_json();
  EXPECT_EQ(j["container"]["id"], "aaaaaaaaaaaa");
  EXPECT_EQ(j["container"]["state"], "running");
}

TEST_F(ContainerUnits, StopGoesThroughTheEngine) {
  engine.add("bbbbbbbbbbbb01", "db");
  sup.apply({decl("db", "db")});
  Unit* u = sup.find("db");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  bool stopped = false;
  sup.stop(*u, [&] { stopped = true; });
  ASSERT_TRUE(run_until([&] { return stopped; }));
  EXPECT_EQ(engine.stops, 1);
  EXPECT_EQ(u->state, UnitState::Stopped);
  EXPECT_TRUE(policy.exits.empty()) << "a stop is not a death for the rules";
}

TEST_F(ContainerUnits, EngineRestartPolicyIsObservedAndCountedNotDoubled) {
  engine.add("cccccccccccc01", "web", "always");
  policy.fn = [&](Unit& u, const ExitInfo&) { sup.restart_later(u, 0); };
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  pid_t first = u->child->pid;
  crash("cccccccccccc01");
  ASSERT_TRUE(run_until([&] { return policy.exits.size() == 1; }));
  // Vigil waits for the engine's restart instead of making one.
  ASSERT_TRUE(run_until([&] { return u->ct->grace_timer != 0; }, 1s));
  EXPECT_EQ(engine.starts, 1);
  engine.engine_restart("cccccccccccc01");
  ASSERT_TRUE(run_until([&] { return u->child && u->child->pid != first; }));
  EXPECT_EQ(engine.starts, 1) << "no second restart by vigil";
  EXPECT_EQ(u->ct->engine_restarts, 1u);
  EXPECT_EQ(u->restarts, 1u) << "counted into the budget";
  EXPECT_EQ(count(Msg::ContainerEngineRestart), 1);
}

TEST_F(ContainerUnits, TakeOverSetsThePolicyToNoOnceAndVigilRestarts) {
  engine.add("dddddddddddd01", "web", "always");
  policy.fn = [&](Unit& u, const ExitInfo&) { sup.restart_later(u, 0); };
  sup.apply({decl("web", "web", true)});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running && !engine.policies_set.empty(); }));
  EXPECT_EQ(engine.policies_set, std::vector<std::string>{"no"});
  ASSERT_TRUE(run_until([&] { return count(Msg::ContainerTakenOver) == 1; }));
  pid_t first = u->child->pid;
  crash("dddddddddddd01");
  ASSERT_TRUE(run_until([&] { return u->child && u->child->pid != first; }));
  EXPECT_EQ(engine.starts, 2) << "vigil decides: it restarts it";
  EXPECT_EQ(engine.policies_set.size(), 1u) << "once";
}

TEST_F(ContainerUnits, FailingExecProbeMakesItHungAfterFails) {
  engine.add("eeeeeeeeeeee01", "web");
  std::vector<std::string> ran;
  engine.exec_fn = [&](const std::vector<std::string>& argv) {
    ran = argv;
    ExecResult r;
    r.exit_code = 1;
    r.err = "unhealthy\n";
    return r;
  };
  Declaration d = decl("web", "web");
  ProbeSpec p;
  p.kind = ProbeSpec::Kind::Exec;
  p.name = "healthcheck";
  p.healthcheck = true;
  p.every = 0.02;
  p.fails = 3;
  d.probes.push_back(p);
  sup.apply({std::move(d)});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return policy.hung.size() == 1; }));
  EXPECT_EQ(policy.hung[0]["fails"], 3);
  EXPECT_EQ(policy.hung[0]["reason"], "exited 1: unhealthy");
  EXPECT_EQ(ran, (std::vector<std::string>{"/bin/sh", "-c", "test -e /tmp/ok"}))
      << "CMD-SHELL runs through sh -c";
  EXPECT_EQ(u->to_json()["container"]["health"], "unhealthy");
}

TEST_F(ContainerUnits, NoEngineWaitsWithoutSpendingTheBudgetAndStartsWhenItAnswers) {
  engine.add("ffffffffffff01", "web");
  engine.is_up = false;
  engine.listener->engine_down("connection refused");
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return count(Msg::ContainerNoEngine) == 1; }));
  EXPECT_EQ(u->state, UnitState::Stopped);
  EXPECT_EQ(u->to_json()["container"]["state"], "unknown");
  EXPECT_EQ(engine.starts, 0);
  EXPECT_TRUE(policy.exits.empty());
  EXPECT_EQ(count(Msg::EngineDown), 1) << "the engine's own state is an event";
  engine.is_up = true;
  engine.listener->engine_up("5.0");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  EXPECT_EQ(engine.starts, 1);
  EXPECT_EQ(count(Msg::EngineUp), 1);
}

TEST_F(ContainerUnits, MatchThatFindsNothingIsAWarningAndAStartEventFindsIt) {
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return count(Msg::ContainerNoMatch) == 1; }));
  EXPECT_EQ(u->state, UnitState::Stopped);
  EXPECT_TRUE(policy.exits.empty()) << "not an error";
  engine.add("111111111111aa", "web");
  engine.run(engine.all["111111111111aa"]);
  engine.event("111111111111aa", "start");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  EXPECT_EQ(engine.starts, 0) << "it was running: adopted";
}

TEST_F(ContainerUnits, RemovedContainerIsAnEventAndTheRulesDecide) {
  engine.add("222222222222aa", "web");
  policy.fn = [&](Unit& u, const ExitInfo& e) {
    if (e.error.empty())
      sup.restart_later(u, 0.05);
    else
      sup.exhaust(u, std::nullopt);
  };
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  crash("222222222222aa");
  engine.all.erase("222222222222aa");
  engine.event("222222222222aa", "destroy");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Exhausted; }));
  EXPECT_EQ(count(Msg::ContainerRemoved), 1);
  ASSERT_EQ(policy.exits.size(), 2u);
  EXPECT_NE(policy.exits[1].error.find("no container matches"), std::string::npos)
      << policy.exits[1].error;
}

TEST_F(ContainerUnits, ResyncAfterReconnectInventsNoDeath) {
  engine.add("333333333333aa", "web");
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  pid_t pid = u->child->pid;
  engine.listener->engine_down("connection refused");
  EXPECT_EQ(u->to_json()["container"]["state"], "unknown");
  engine.listener->engine_up("5.0");
  std::vector<ContainerInfo> all;
  for (auto& [id, c] : engine.all) all.push_back(c);
  engine.listener->resync(all);
  loop.run_once(20ms);
  EXPECT_TRUE(policy.exits.empty());
  ASSERT_TRUE(u->child);
  EXPECT_EQ(u->child->pid, pid);
  EXPECT_EQ(engine.starts, 1);
  EXPECT_EQ(u->to_json()["container"]["state"], "running");
}

TEST_F(ContainerUnits, RestForOneGroupStopsTheDependentAndStartsItAfterTheContainer) {
  engine.add("444444444444aa", "db");
  engine.add("555555555555aa", "web");
  policy.fn = [&](Unit& u, const ExitInfo&) {
    sup.restart_set(&u, {"db", "web"}, 0, sup.find_group("shop"), "rest_for_one");
  };
  Declaration db = decl("db", "db");
  db.group = "shop";
  Declaration web = decl("web", "web");
  web.group = "shop";
  web.after = {"db"};
  GroupDecl g;
  g.name = "shop";
  g.strategy = "rest_for_one";
  g.members = {"db", "web"};
  g.units = {"db", "web"};
  sup.apply({std::move(db), std::move(web)}, {g});
  Unit* d = sup.find("db");
  Unit* w = sup.find("web");
  ASSERT_TRUE(run_until([&] { return d->state == UnitState::Running && w->state == UnitState::Running; }));
  pid_t dbpid = d->child->pid, webpid = w->child->pid;
  crash("444444444444aa");
  ASSERT_TRUE(run_until([&] {
    return d->child && w->child && d->child->pid != dbpid && w->child->pid != webpid &&
           d->state == UnitState::Running && w->state == UnitState::Running;
  }));
  EXPECT_EQ(engine.stops, 1) << "web stopped through the engine";
  EXPECT_EQ(engine.starts, 4) << "each started again once";
  // The order from the event log: web stopped before db starts, db before web.
  std::vector<std::string> order;
  for (const auto& e : log.recent(10000)) {
    if (e["id"] == message_def(Msg::Stopped).id) order.push_back("stopped " + e["watch"].get<std::string>());
    if (e["id"] == message_def(Msg::ProcessAdopted).id) order.push_back("up " + e["watch"].get<std::string>());
  }
  ASSERT_GE(order.size(), 5u);
  std::vector<std::string> tail(order.end() - 3, order.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"stopped web", "up db", "up web"}));
}

TEST_F(ContainerUnits, DumpHasInspectOutputAndTheLastLogLines) {
  engine.add("666666666666aa", "web");
  engine.all["666666666666aa"].raw = {{"Id", "666666666666aa"}, {"State", {{"Status", "running"}}}};
  sup.apply({decl("web", "web")});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }));
  char tmpl[] = "/tmp/vigil-cdump-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  sup.set_dump_dir(dir);
  std::string error;
  auto out = sup.dump(*u, {{"trigger", "test"}}, DumpOptions{}, error);
  ASSERT_TRUE(out) << error;
  auto read = [](const std::string& path) {
    std::ifstream f(path);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_NE(read(*out + "/container.inspect.json").find("\"Status\": \"running\""), std::string::npos);
  ASSERT_TRUE(run_until([&] { return !read(*out + "/container.log").empty(); }));
  EXPECT_EQ(read(*out + "/container.log"), "log line\n");
  std::filesystem::remove_all(dir);
}

TEST_F(ContainerUnits, ExecProbesWaitWhileTheEngineIsDown) {
  engine.add("777777777777aa", "web");
  int ran = 0;
  engine.exec_fn = [&](const std::vector<std::string>&) {
    ++ran;
    ExecResult r;
    r.exit_code = 0;
    return r;
  };
  Declaration d = decl("web", "web");
  ProbeSpec p;
  p.kind = ProbeSpec::Kind::Exec;
  p.name = "exec";
  p.command = {"true"};
  p.every = 0.02;
  p.fails = 2;
  d.probes.push_back(p);
  sup.apply({std::move(d)});
  Unit* u = sup.find("web");
  ASSERT_TRUE(run_until([&] { return ran >= 1; }));
  engine.is_up = false;
  engine.listener->engine_down("connection refused");
  int before = ran;
  auto until = MonoClock::now() + 150ms;
  while (MonoClock::now() < until) loop.run_once(20ms);
  EXPECT_EQ(ran, before) << "no exec while the engine is down";
  EXPECT_TRUE(policy.hung.empty()) << "a down engine is not a failed health check";
  ASSERT_TRUE(u->child);
  engine.is_up = true;
  engine.listener->engine_up("5.0");
  ASSERT_TRUE(run_until([&] { return ran > before; }));
}

// Same-image counts: a container watch with `count` is a set of the running
// containers its match selects.
namespace {
Declaration counted(const std::string& name, int64_t min, int64_t max, bool fill) {
  Declaration d;
  d.name = name;
  ContainerDecl c;
  c.match.image = "localhost/shop:1";
  CountLimits lim;
  lim.min = min;
  lim.max = max;
  lim.hold = 0.05;
  c.count = lim;
  c.fill = fill;
  c.engine_grace = 0.5;
  ContainerTemplate t;
  t.image = "localhost/shop:1";
  t.labels = {{"app.role", "worker"}};
  c.create = t;
  d.container = c;
  return d;
}
}  // namespace

TEST_F(ContainerUnits, ACountedSetOverItsMaximumStopsTheNewestOnly) {
  for (const char* id : {"a00000000000001", "a00000000000002", "a00000000000003"}) {
    engine.add(id, "");
    engine.run(engine.all[id]);
  }
  engine.add("a00000000000009", "other");
  engine.all["a00000000000009"].image = "localhost/other:1";
  engine.run(engine.all["a00000000000009"]);
  policy.count_fn = [&](Unit& u, const nlohmann::json& ev) {
    std::string error;
    if (ev["bounds"] == "over")
      for (const auto& c : ev["newest"]) sup.stop_member_container(u, c["id"], error);
  };
  sup.apply({counted("workers", 1, 2, false)});
  Unit* u = sup.find("workers");
  ASSERT_TRUE(run_until([&] { return engine.stops == 1 && u->ct->members.size() == 2; }));
  ASSERT_FALSE(policy.counts.empty());
  EXPECT_EQ(policy.counts[0]["bounds"], "over");
  EXPECT_EQ(policy.counts[0]["count"], 3) << "the other image's container is not counted";
  ASSERT_EQ(policy.counts[0]["newest"].size(), 1u);
  EXPECT_EQ(policy.counts[0]["newest"][0]["id"], "a00000000000003") << "the newest by creation";
  EXPECT_FALSE(engine.all["a00000000000003"].running);
  EXPECT_TRUE(engine.all["a00000000000001"].running);
  EXPECT_EQ(count(Msg::ContainerCountStop), 1);
  EXPECT_EQ(count(Msg::CountOver), 1);
  ASSERT_TRUE(run_until([&] { return count(Msg::CountWithin) == 1; }));
  nlohmann::json j = u->to_json();
  EXPECT_EQ(j["count"], 2);
  EXPECT_EQ(j["bounds"], "within");
  EXPECT_EQ(j["container"]["members"].size(), 2u);
  EXPECT_EQ(u->state, UnitState::Running);
  EXPECT_EQ(engine.stops, 1) << "stopped once";
}

TEST_F(ContainerUnits, UnderItsMinimumStartsStoppedContainersThenCreatesFromTheTemplate) {
  engine.add("b00000000000001", "");  // stopped
  sup.apply({counted("workers", 3, -1, true)});
  Unit* u = sup.find("workers");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running && u->ct->members.size() == 3; }));
  EXPECT_EQ(engine.creates, 2) << "one stopped started, two created";
  EXPECT_TRUE(engine.all["b00000000000001"].running);
  EXPECT_EQ(count(Msg::ContainerCountFill), 1);
  EXPECT_EQ(count(Msg::ContainerCreated), 2);
  EXPECT_EQ(u->ct->own.size(), 3u);
  EXPECT_TRUE(u->ready());
  EXPECT_TRUE(policy.exits.empty());

  // A member dies: the set is under its minimum and the rules hear of it.
  std::string id = u->ct->members.begin()->first;
  crash(id);
  engine.event(id, "die");
  ASSERT_TRUE(run_until([&] { return !policy.counts.empty() && policy.counts.back()["bounds"] == "under"; }));
  EXPECT_EQ(policy.counts.back()["count"], 2);
}

TEST_F(ContainerUnits, AFillThatCannotReachTheMinimumIsAFailedStartForTheBudget) {
  engine.create_error = "image not known";
  sup.apply({counted("workers", 2, -1, true)});
  Unit* u = sup.find("workers");
  ASSERT_TRUE(run_until([&] { return policy.exits.size() == 1; }));
  EXPECT_NE(policy.exits[0].error.find("under the minimum of 2"), std::string::npos) << policy.exits[0].error;
  EXPECT_EQ(count(Msg::ContainerCallFailed), 2);
  EXPECT_FALSE(u->ct->filling);

  // Without a template and nothing stopped, the start fails at once, in words.
  policy.exits.clear();
  Declaration d = counted("bare", 1, -1, true);
  d.container->create.reset();
  sup.apply({std::move(d)});
  ASSERT_TRUE(run_until([&] { return policy.exits.size() == 1; }));
  EXPECT_NE(policy.exits[0].error.find("no `create` template"), std::string::npos) << policy.exits[0].error;
}

TEST_F(ContainerUnits, AnOperatorStopOfASetStopsOnlyWhatVigilStarted) {
  engine.add("c00000000000001", "");
  engine.run(engine.all["c00000000000001"]);  // found running
  sup.apply({counted("workers", 2, -1, true)});
  Unit* u = sup.find("workers");
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running && u->ct->members.size() == 2; }));
  EXPECT_EQ(engine.creates, 1);
  bool stopped = false;
  sup.stop(*u, [&] { stopped = true; });
  ASSERT_TRUE(run_until([&] { return stopped; }));
  EXPECT_EQ(engine.stops, 1) << "the created one";
  EXPECT_TRUE(engine.all["c00000000000001"].running) << "the found one runs on";
  EXPECT_EQ(u->state, UnitState::Stopped);
  EXPECT_EQ(engine.creates, 1) << "a stopped set is not filled";
}

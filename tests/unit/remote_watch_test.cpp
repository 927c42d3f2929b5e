// Remote watches: what the rules may declare (and the errors for what
// they may not), a remote watch gating a local start through `requires`,
// and RemoteHub turning a peer's answers into events, readiness and the
// result of vigil.remote(node):restart(watch).
#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/remote/remote_hub.hpp"
#include "host/supervise/supervisor.hpp"
#include "lua/runtime.hpp"
#include "tests/unit/peer_fakes.hpp"

using namespace vigil;
using namespace std::chrono_literals;
using testing_fakes::FakeClock;
using testing_fakes::FakeTransport;

namespace {

RuntimeOptions opts() {
  RuntimeOptions o;
  o.stdlib_dir = VIGIL_SOURCE_DIR "/stdlib";
  o.callback_budget = 0.2;
  o.load_budget = 2;
  return o;
}

std::string write_rules(const std::string& name, const std::string& text) {
  auto dir = std::filesystem::temp_directory_path() / ("vigil-rw-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name) << text;
  return (dir / name).string();
}

const char* kPeer = "peer \"nodeb\" { url = \"https://10.1.0.2:8443\", ca = \"/e/ca.pem\" }\n";

LoadResult load(RuleRuntime& rt, const std::string& name, const std::string& rules) {
  return rt.load(write_rules(name, std::string(kPeer) + rules));
}

std::string all(const LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e + "\n";
  return s;
}

LogOptions quiet() {
  LogOptions o;
  o.console = false;
  return o;
}

}  // namespace

TEST(RemoteWatchRules, DeclaredWithItsNodeAndNameAndRequiredByALocalWatch) {
  RuleRuntime rt(opts(), HostContext{});
  auto res = load(rt, "ok.lua", R"(
watch "db@nodeb" { on = "nodeb", on_down = function(ev) end }
watch "cache@nodeb" { on = "nodeb", name = "redis", description = "the cache" }
watch "app" { start = { "/bin/true" }, requires = { "db@nodeb", "cache@nodeb" } }
)");
  ASSERT_TRUE(res.ok) << all(res);
  auto r = rt.remote_watches();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].value("name", ""), "cache@nodeb");
  EXPECT_EQ(r[0].value("remote", ""), "redis");
  EXPECT_EQ(r[1].value("name", ""), "db@nodeb");
  EXPECT_EQ(r[1].value("remote", ""), "db");  // the part before '@'
  EXPECT_EQ(r[1].value("on", ""), "nodeb");
  EXPECT_NE(r[1].value("where", "").find("ok.lua:3"), std::string::npos) << r[1];
  // Only the local watch reaches the supervisor, ordered after both.
  auto decls = rt.take_declarations();
  ASSERT_EQ(decls.size(), 1u);
  EXPECT_EQ(decls[0].name, "app");
  std::set<std::string> after(decls[0].after.begin(), decls[0].after.end());
  EXPECT_EQ(after, (std::set<std::string>{"db@nodeb", "cache@nodeb"}));
}

TEST(RemoteWatchRules, BadDeclarationsNameTheFileLineAndKey) {
  struct Case {
    const char* rules;
    const char* expect;
  } cases[] = {
      {"watch \"db@nodec\" { on = \"nodec\" }",
       "bad.lua:2: watch 'db@nodec': on: no peer named 'nodec'"},
      {"watch \"db@nodeb\" { on = \"nodeb\", start = { \"/bin/db\" } }",
       "bad.lua:2: watch 'db@nodeb': 'start' does not apply to a remote watch (its node starts it)"},
      {"watch \"db@nodeb\" { on = \"nodeb\", restart = { limit = 3 } }",
       "'restart' does not apply to a remote watch (its node's rules budget its restarts)"},
      {"watch \"db@nodeb\" { on = \"nodeb\", probes = {} }", "'probes' does not apply to a remote watch"},
      {"watch \"db@nodeb\" { on = \"nodeb\", on_dwn = function() end }",
       "bad.lua:2: watch 'db@nodeb': unknown key 'on_dwn'"},
      {"watch \"db@nodeb\" { on = \"nodeb\", on_down = \"alert\" }",
       "watch 'db@nodeb'.on_down: expected a function, got string"},
      {"watch \"db@nodeb\" { on = 7 }", "watch 'db@nodeb'.on: expected a string, got number"},
      {"watch \"db@nodeb\" { on = \"nodeb\", name = \"bad name\" }", "watch 'db@nodeb'.name: expected"},
      {"watch \"db@nodeb\" { on = \"nodeb\" }\nwatch \"db@nodeb\" { on = \"nodeb\" }",
       "bad.lua:3: watch 'db@nodeb': declared twice (first at"},
      {"watch \"db@nodeb\" { on = \"nodeb\" }\nwatch \"app\" { start = { \"/bin/true\" } }\n"
       "group \"g\" { \"db@nodeb\", \"app\" }",
       "bad.lua:4: group 'g': 'db@nodeb' is a remote watch"},
      {"watch \"app\" { start = { \"/bin/true\" }, requires = \"db@nodeb\" }",
       "bad.lua:2: watch 'app': requires: no watch or group named 'db@nodeb'"},
  };
  for (const auto& c : cases) {
    RuleRuntime rt(opts(), HostContext{});
    auto res = load(rt, "bad.lua", c.rules);
    EXPECT_FALSE(res.ok) << c.rules;
    EXPECT_NE(all(res).find(c.expect), std::string::npos) << c.rules << "\n got: " << all(res);
  }
}

TEST(RemoteWatchRules, ActingOnANodeIsRefusedWhileRulesLoad) {
  RuleRuntime rt(opts(), HostContext{});
  auto res = load(rt, "act.lua", "vigil.remote(\"nodeb\"):restart(\"db\")\n");
  ASSERT_FALSE(res.ok);
  EXPECT_NE(all(res).find("act.lua:2"), std::string::npos) << all(res);
}

namespace {

// A hub over fake transports on a real supervisor and loop (the local
// processes are real); the peer's time is the fake clock.
struct HubTest : ::testing::Test {
  EventLoop loop;
  EventLog log{quiet()};
  Supervisor sup{loop, log, ""};
  FakeClock clock;
  FakeTransport* t = nullptr;
  std::unique_ptr<RemoteHub> hub;
  struct NoPolicy : Policy {
    void on_exit(Unit& u, const ExitInfo&) override { (void)u; }
    void on_count(Unit&, const nlohmann::json&) override {}
    void on_state(Unit&, const nlohmann::json&) override {}
    void on_hung(Unit&, const nlohmann::json&) override {}
    void run_probe(Unit&, size_t, uint64_t) override {}
  } policy;

  void SetUp() override {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sup.set_policy(&policy);
    hub = std::make_unique<RemoteHub>(
        clock, log, sup, [this](const PeerConfig& c, std::string&) -> std::unique_ptr<PeerTransport> {
          EXPECT_EQ(c.url, "https://10.1.0.2:8443");
          auto ft = std::make_unique<FakeTransport>();
          t = ft.get();
          return ft;
        });
    hub->configure(nlohmann::json::array({{{"name", "nodeb"}, {"url", "https://10.1.0.2:8443"},
                                           {"every", 1}, {"fails", 2}}}),
                   {{"db@nodeb", "nodeb", "db", "r.lua:2"}});
    ASSERT_NE(t, nullptr);
  }
  void TearDown() override {
    bool done = false;
    sup.stop_all([&] { done = true; });
    run_until([&] { return done; });
  }
  bool run_until(const std::function<bool()>& cond, Duration limit = 5s) {
    auto deadline = MonoClock::now() + limit;
    while (!cond() && MonoClock::now() < deadline) loop.run_once(50ms);
    return cond();
  }
  std::vector<nlohmann::json> events(Msg m) {
    std::vector<nlohmann::json> out;
    for (const auto& e : log.recent(10000))
      if (e["id"] == message_def(m).id) out.push_back(e);
    return out;
  }
  bool db(const std::string& state, bool ready) {
    return t->status(nlohmann::json::array({{{"name", "db"}, {"state", state}, {"ready", ready}}}));
  }
  Declaration app() {
    Declaration d;
    d.name = "app";
    d.spec.argv = {"sleep", "1000"};
    d.spec.capture_output = false;
    d.after = {"db@nodeb"};
    EXPECT_FALSE(validate_spec(d.spec));
    return d;
  }
};

}  // namespace

TEST_F(HubTest, ARemoteWatchGatesALocalStartThroughRequires) {
  sup.apply({app()});
  Unit* u = sup.find("app");
  ASSERT_NE(u, nullptr);
  loop.run_once(50ms);
  EXPECT_EQ(u->state, UnitState::Waiting);
  EXPECT_EQ(u->waiting_for, (std::vector<std::string>{"db@nodeb"}));
  EXPECT_FALSE(u->child);
  // The node answers: db runs there but is not ready yet: still waiting.
  ASSERT_TRUE(db("starting", false));
  loop.run_once(50ms);
  EXPECT_FALSE(u->child);
  // Ready there: app starts here.
  clock.advance_s(1);
  ASSERT_TRUE(db("running", true));
  ASSERT_TRUE(run_until([&] { return u->state == UnitState::Running; }))
      << unit_state_name(u->state) << " " << sup.remote_ready("db@nodeb") << " "
      << nlohmann::json(log.recent(50)).dump(1);
  auto st = events(Msg::RemoteState);
  ASSERT_GE(st.size(), 2u);
  EXPECT_EQ(st.back()["watch"], "db@nodeb");
  EXPECT_EQ(st.back()["fields"]["node"], "nodeb");
  EXPECT_EQ(st.back()["fields"]["state"], "running");
  EXPECT_EQ(st.back()["fields"]["ready"], true);
  EXPECT_EQ(events(Msg::PeerUp).size(), 1u);
}

TEST_F(HubTest, PeerDownMakesTheRemoteWatchUnknownAndNotReady) {
  ASSERT_TRUE(db("running", true));
  EXPECT_TRUE(sup.remote_ready("db@nodeb"));
  clock.advance_s(2.1);  // fails (2) x every (1) without an answer
  auto down = events(Msg::PeerDown);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0]["fields"]["peer"], "nodeb");
  EXPECT_FALSE(sup.remote_ready("db@nodeb"));
  EXPECT_EQ(events(Msg::RemoteState).back()["fields"]["state"], "unknown");
  auto js = hub->watches_json();
  ASSERT_EQ(js.size(), 1u);
  EXPECT_EQ(js[0]["peer"], "down");
  EXPECT_EQ(js[0]["node"], "nodeb");
}

TEST_F(HubTest, RemoteEventsAreRelayedWithTheNodesSeverity) {
  t->event(9, "db");
  auto ev = events(Msg::RemoteEvent);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0]["watch"], "db@nodeb");
  EXPECT_EQ(ev[0]["severity"], "warning");
  EXPECT_EQ(ev[0]["fields"]["remote_id"], "VGL0102");
  EXPECT_EQ(ev[0]["fields"]["remote_seq"], 9);
  EXPECT_EQ(ev[0]["message"], "db@nodeb on nodeb: db: pid 1 exited 3");
}

TEST_F(HubTest, ActionsReportTheirResultAsEvents) {
  std::string err;
  EXPECT_FALSE(hub->act("nodec", "restart", "db", err));
  EXPECT_NE(err.find("no peer named 'nodec'"), std::string::npos);
  EXPECT_FALSE(hub->act("nodeb", "explode", "db", err));
  ASSERT_TRUE(hub->act("nodeb", "restart", "db", err)) << err;
  ASSERT_TRUE(t->answer("POST", {200, "{\"ok\":true}", ""}));
  auto done = events(Msg::RemoteActionDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]["fields"]["verb"], "restart");
  EXPECT_EQ(done[0]["watch"], "db@nodeb");
  ASSERT_TRUE(hub->act("nodeb", "stop", "db", err));
  ASSERT_TRUE(t->answer("POST", {403, "{\"ok\":false,\"error\":\"read only\"}", ""}));
  auto failed = events(Msg::RemoteActionFailed);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["fields"]["error"], "HTTP 403: read only");
  EXPECT_EQ(failed[0]["fields"]["status"], 403);
}

TEST_F(HubTest, ReloadKeepsAnUnchangedPeerAndDropsARemovedOne) {
  ASSERT_TRUE(db("running", true));
  FakeTransport* before = t;
  hub->configure(nlohmann::json::array({{{"name", "nodeb"}, {"url", "https://10.1.0.2:8443"},
                                         {"every", 1}, {"fails", 2}, {"where", "moved.lua:9"}}}),
                 {{"db@nodeb", "nodeb", "db", "r.lua:3"}});
  EXPECT_EQ(t, before);  // no new transport: the link and what it knows stay
  EXPECT_TRUE(sup.remote_ready("db@nodeb"));
  hub->configure(nlohmann::json::array(), {});
  EXPECT_EQ(hub->size(), 0u);
  EXPECT_FALSE(sup.remote_ready("db@nodeb"));
}

namespace {
Event remote_event(Msg m, const std::string& watch, nlohmann::json fields) {
  Event ev;
  ev.msg = m;
  ev.severity = message_def(m).severity;
  ev.watch = watch;
  fields["watch"] = watch;
  ev.fields = std::move(fields);
  ev.text = "test";
  return ev;
}
}  // namespace

// The hooks run on the host's remote_state and remote_event events, from
// the loop; vigil.remote answers nil, err where no hub is.
TEST(RemoteWatchRules, HooksRunOnTheHostsEvents) {
  EventLoop loop;
  RuleRuntime rt(opts(), HostContext{&loop, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr});
  auto res = load(rt, "hooks.lua", R"(
seen = {}
local function rec(tag) return function(ev, w) seen[#seen + 1] = tag .. ":" .. ev.state .. ":" .. w.remote end end
watch "db@nodeb" { on = "nodeb", on_up = rec("up"), on_down = rec("down"), on_state = rec("state"),
  on_event = function(ev) seen[#seen + 1] = "event:" .. ev.remote_id end }
watch "quiet@nodeb" { on = "nodeb" }
)");
  ASSERT_TRUE(res.ok) << all(res);
  rt.go_live();
  auto deliver = [&](const Event& ev) {
    rt.on_event(ev);
    for (int i = 0; i < 5; ++i) loop.run_once(std::chrono::milliseconds(0));
  };
  deliver(remote_event(Msg::RemoteState, "db@nodeb",
                       {{"state", "running"}, {"from", "unknown"}, {"ready", true}, {"was_ready", false}}));
  deliver(remote_event(Msg::RemoteState, "quiet@nodeb",
                       {{"state", "running"}, {"from", "unknown"}, {"ready", true}, {"was_ready", false}}));
  deliver(remote_event(Msg::RemoteEvent, "db@nodeb", {{"remote_id", "VGL0102"}}));
  deliver(remote_event(Msg::RemoteState, "db@nodeb",
                       {{"state", "unknown"}, {"from", "running"}, {"ready", false}, {"was_ready", true}}));
  std::string err;
  ASSERT_TRUE(rt.run_string(
      "got = table.concat(seen, ' ')\n"
      "assert(got == 'state:running:db up:running:db event:VGL0102 state:unknown:db down:unknown:db', got)",
      "=check", err))
      << err;
  ASSERT_TRUE(rt.run_string(
      "local ok, e = vigil.remote('nodeb'):restart('db@nodeb')\n"
      "assert(ok == nil and e:find('no peers here'), tostring(e))\n"
      "assert(not pcall(vigil.remote('nodeb').restart, {}, 'db'))  -- '.' instead of ':'\n"
      "assert(not pcall(vigil.remote('nodeb').restart, vigil.remote('nodeb'), 42))",
      "=check", err))
      << err;
}

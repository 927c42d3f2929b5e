// End-to-end: the daemon's periodic discovery (discover { every = ... }).
// The machine runs other processes (other tests under ctest -j2): every
// assertion is about processes this test started, told apart by their
// executable, a copy of /bin/sleep under the test's own directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// A copy of /bin/sleep named `name` in `dir`: an executable no other test has.
std::string program(const std::string& dir, const std::string& name) {
  std::string p = dir + "/" + name;
  std::filesystem::copy_file("/bin/sleep", p);
  std::filesystem::permissions(p, std::filesystem::perms::owner_all);
  return p;
}

std::string get(const Daemon& d, const std::string& path) {
  return raw_request(d.socket(), "GET " + path + " HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n");
}

// Events of this run with this id whose fields name the executable.
std::vector<json> events_for(const Daemon& d, const std::string& id, const std::string& exe) {
  std::vector<json> out;
  for (const auto& e : d.events(1000))
    if (e.value("id", "") == id && e["fields"].value("exe", "") == exe) out.push_back(e);
  return out;
}

bool has_exe(const json& candidates, const std::string& exe) {
  for (const auto& c : candidates)
    if (c["process"].value("exe", "") == exe) return true;
  return false;
}

}  // namespace

// The discovery worker runs at nice 19, so on a machine busy at nice 0
// (a build, the rest of the suite) a run can take tens of seconds: the
// deadlines for a run's events are a minute (20 s failed once so).
TEST(DaemonDiscovery, ReportsANewProcessOnceAndItsEndOnceNeverWhatItWatchesAndAnswersTheApi) {
  Daemon d;
  std::string steady = program(d.dir(), "steady-svc");
  std::string watched = program(d.dir(), "watched-svc");
  std::string matched = program(d.dir(), "matched-svc");
  d.write_rule("rules.lua",
               "discover { every = '2s', window = '1s', scans = 3 }\n"
               "watch 'w' { mode = 'observe', match = { exe = '" + watched + "' } }\n"
               // Not started, so never adopted: its match alone keeps its process out.
               "watch 'm' { autostart = false, restart_script = '/bin/true', match = { exe = '" + matched + "' } }\n");
  pid_t w = spawn_external({watched, "1000"});
  spawn_external({matched, "1000"});
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("w") == w; })) << d.output();
  // The first run: one summary, the whole set.
  ASSERT_TRUE(d.wait_event("VGL0211", "", 1, 60s)) << d.output();
  EXPECT_EQ(d.count_events("VGL0211"), 1);
  json first = d.last_event("VGL0211");  // kept: a loop over a temporary's member dangles
  for (const auto& n : first["fields"]["candidates"]) {
    EXPECT_NE(n, "watched-svc") << "a watched process is not proposed";
    EXPECT_NE(n, "matched-svc") << "nor one a watch's match selects";
  }

  pid_t s = spawn_external({steady, "1000"});
  ASSERT_TRUE(wait_for([&] { return !events_for(d, "VGL0212", steady).empty(); }, 60s))
      << d.output();
  json fresh = events_for(d, "VGL0212", steady)[0]["fields"];
  EXPECT_EQ(fresh["pid"], s);
  EXPECT_EQ(fresh["name"], "steady-svc");
  EXPECT_EQ(fresh["recovery"], "start");
  EXPECT_GE(fresh["score"].get<int>(), 30);
  // Two more runs: not said again.
  int ran = d.count_events("VGL0215");
  ASSERT_TRUE(d.wait_event("VGL0215", "", ran + 2, 60s)) << d.output();
  EXPECT_EQ(events_for(d, "VGL0212", steady).size(), 1u);

  // GET /v1/discover: the last answer, as vigil discover --json has it.
  std::string raw = get(d, "/v1/discover");
  ASSERT_NE(raw.find("200 OK"), std::string::npos) << raw.substr(0, 300);
  json last = json::parse(http_body(raw), nullptr, false);
  ASSERT_TRUE(last.is_object()) << raw.substr(0, 300);
  EXPECT_EQ(last["ok"], true);
  EXPECT_EQ(last["window"], 1.0);
  EXPECT_GT(last["at"].get<int64_t>(), 1700000000);
  EXPECT_TRUE(has_exe(last["candidates"], steady));
  EXPECT_FALSE(has_exe(last["candidates"], watched));
  EXPECT_NE(last["text"].get<std::string>().find("watch \"steady-svc\""), std::string::npos);
  for (const auto& c : last["candidates"])
    if (c["process"].value("exe", "") == steady) {
      EXPECT_EQ(c["process"]["pid"], s);
      EXPECT_TRUE(c["reasons"].is_array());
      EXPECT_TRUE(c["recovery"].is_object());
    }
  // The CLI's view of the same.
  CommandResult cli = d.cli({"discover", "--last", "--json"});
  ASSERT_EQ(cli.code, 0) << cli.err;
  EXPECT_TRUE(has_exe(json::parse(cli.out)["candidates"], steady));
  EXPECT_NE(d.cli({"discover", "--last"}).out.find("steady-svc"), std::string::npos);

  kill(s, SIGKILL);
  ASSERT_TRUE(reap(s));
  ASSERT_TRUE(wait_for([&] { return !events_for(d, "VGL0213", steady).empty(); }, 60s))
      << d.output();
  EXPECT_EQ(events_for(d, "VGL0213", steady)[0]["fields"]["pid"], s);
  ran = d.count_events("VGL0215");
  ASSERT_TRUE(d.wait_event("VGL0215", "", ran + 2, 60s)) << d.output();
  EXPECT_EQ(events_for(d, "VGL0213", steady).size(), 1u);
  EXPECT_EQ(events_for(d, "VGL0212", steady).size(), 1u);
  EXPECT_TRUE(events_for(d, "VGL0212", watched).empty());
  EXPECT_EQ(d.count_events("VGL0211"), 1) << "the summary is the first run's only";
  EXPECT_EQ(d.count_events("VGL0216"), 0) << d.output();
  // The watch shows its mode.
  EXPECT_EQ(d.watch("w")["mode"], "observe");
  EXPECT_NE(d.cli({"status", "w"}).out.find("mode:      observe"), std::string::npos);
  d.stop();
}

TEST(DaemonDiscovery, BadValuesAreLoadErrorsAndAReloadAddsAndRemovesIt) {
  CommandResult r = check_rule("discover { every = '1s' }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:1: discover.every: 1s is too short"), std::string::npos) << r.err;
  r = check_rule("\ndiscover { every = '1h', window = '2h' }\n");
  EXPECT_NE(r.err.find("rule.lua:2: discover.window: 7200s is longer than every"),
            std::string::npos)
      << r.err;
  r = check_rule("discover { every = '1h', scan = 3 }\n");
  EXPECT_NE(r.err.find("discover: unknown key 'scan'"), std::string::npos) << r.err;
  EXPECT_EQ(check_rule("discover { every = '1h' }\n").code, 0);

  Daemon d;
  d.write_rule("rules.lua", "-- nothing yet\n");
  ASSERT_TRUE(d.start());
  std::string raw = get(d, "/v1/discover");
  EXPECT_NE(raw.find("404"), std::string::npos) << raw.substr(0, 300);
  json body = json::parse(http_body(raw), nullptr, false);
  EXPECT_EQ(body["ok"], false);
  EXPECT_EQ(body["error"], "no discovery has run (declare discover { every = ... })");
  CommandResult cli = d.cli({"discover", "--last"});
  EXPECT_NE(cli.code, 0);
  EXPECT_NE(cli.err.find("no discovery has run"), std::string::npos) << cli.err;

  d.write_rule("rules.lua", "discover { every = '2s', window = '1s' }\n");
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  ASSERT_TRUE(d.wait_event("VGL0211", "", 1, 60s)) << d.output();
  EXPECT_NE(get(d, "/v1/discover").find("200 OK"), std::string::npos);
  // A bad value in a reload is refused; the running schedule goes on.
  d.write_rule("rules.lua", "discover { every = '2s', window = '5s' }\n");
  EXPECT_NE(d.cli({"reload"}).code, 0);
  int ran = d.count_events("VGL0215");
  ASSERT_TRUE(d.wait_event("VGL0215", "", ran + 1, 60s)) << d.output();
  // Removed: no more runs, and nothing to answer.
  d.write_rule("rules.lua", "-- discovery off\n");
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_NE(get(d, "/v1/discover").find("404"), std::string::npos);
  d.stop();
}

// A daemon that holds the proc connector's exec events (for a counted
// watch) reads an exec between two scans at once: a process that lived
// only between scans is in the window (VGL0215's `between`), and is not
// proposed (it did not live through the window).
TEST(DaemonDiscovery, ExecsBetweenScansAreSeenWhenTheConnectorIsHeld) {
  Daemon d;
  std::string counted = program(d.dir(), "counted-svc");
  std::string brief = program(d.dir(), "brief-job");
  d.write_rule("rules.lua",
               "discover { every = '2s', window = '1s', scans = 3 }\n"
               "watch 'c' { mode = 'observe', match = { exe = '" + counted + "' }, count = { min = 1 } }\n");
  pid_t c = spawn_external({counted, "1000"});
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(wait_for([&] { return d.watch("c").value("count", 0) == 1; })) << d.output();
  if (d.daemon_info().value("proc_events", false) == false)
    GTEST_SKIP() << "no proc connector here (not root, or CN_PROC unavailable)";
  // Brief processes, one every 100 ms, until a run says it saw one.
  std::vector<pid_t> briefs;
  auto last_spawn = std::chrono::steady_clock::now() - 1s;
  bool seen = wait_for(
      [&] {
        if (std::chrono::steady_clock::now() - last_spawn >= 100ms) {
          briefs.push_back(spawn_external({brief, "0.3"}));
          last_spawn = std::chrono::steady_clock::now();
        }
        for (const auto& e : d.events(1000))
          if (e.value("id", "") == "VGL0215" && e["fields"].value("between", 0) > 0) return true;
        return false;
      },
      60s);
  for (pid_t b : briefs) reap(b);
  ASSERT_TRUE(seen) << d.output();
  int ran = d.count_events("VGL0215");
  ASSERT_TRUE(d.wait_event("VGL0215", "", ran + 1, 60s)) << d.output();
  EXPECT_TRUE(events_for(d, "VGL0212", brief).empty()) << "a brief process is not a service";
  json last = json::parse(http_body(get(d, "/v1/discover")), nullptr, false);
  EXPECT_FALSE(has_exe(last["candidates"], brief));
  EXPECT_FALSE(has_exe(last["candidates"], counted)) << "a counted watch's member is watched";
  kill(c, SIGKILL);
  reap(c);
  d.stop();
}

// A scan of a machine with many processes takes a worker a good part of a
// second; meanwhile the loop answers at once.
TEST(DaemonDiscovery, TheLoopAnswersWhileADiscoveryScansManyProcesses) {
  Daemon d;
  std::string many = program(d.dir(), "many-sleep");
  constexpr int kProcs = 3000;
  // Orphans of a helper, re-parented to the test (a subreaper): the
  // daemon's kill_processes at the end reaps them.
  pid_t helper = fork();
  if (helper == 0) {
    char secs[] = "1000";
    char* args[] = {const_cast<char*>(many.c_str()), secs, nullptr};
    for (int i = 0; i < kProcs; ++i) {
      pid_t pid;
      if (posix_spawn(&pid, many.c_str(), nullptr, nullptr, args, environ) != 0) _exit(1);
    }
    _exit(0);
  }
  int st = 0;
  waitpid(helper, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "could not spawn " << kProcs;
  d.write_rule("rules.lua", "discover { every = '3s', window = '2s', scans = 3 }\n");
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(d.wait_event("VGL0215", "", 1, 60s)) << d.output();
  // Through the next run: ping the loop as fast as it answers.
  double worst = 0;
  int pings = 0;
  auto until = std::chrono::steady_clock::now() + 60s;
  int runs = d.count_events("VGL0215");
  while (d.count_events("VGL0215") < runs + 1 && std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 20; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      std::string reply = get(d, "/v1/ping");
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      ASSERT_NE(reply.find("200 OK"), std::string::npos) << reply;
      worst = std::max(worst, ms);
      ++pings;
    }
  }
  json ran = d.last_event("VGL0215")["fields"];
  ASSERT_GE(ran["processes"].get<int>(), kProcs);
  double cpu = ran["cpu"].get<double>();
  printf("%d pings during a discovery of %d processes (%.3f s of CPU on the worker): worst %.1f ms\n",
         pings, ran["processes"].get<int>(), cpu, worst);
  // A scan on the loop would hold a ping for at least its CPU time (a
  // third of `cpu`, about 0.4 s here); 400 ms leaves room for a noisy
  // machine's scheduling without letting a blocked loop through.
  EXPECT_LT(worst, std::max(400.0, 1000 * cpu / 3 * 0.9));
  d.stop();
}

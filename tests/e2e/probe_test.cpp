// End-to-end: probes against real servers and real hangs. The programs
// are tests/e2e/tools/probe_target.py (an HTTP server, an sd_notify
// client) started by the real daemon; a hang is a real SIGSTOP, a real
// 500, a real script that never ends, a real silence on the notify socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "host/core/fd.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const std::string kTarget = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/probe_target.py";

// A readiness probe on the server's port: liveness probes with a long
// `startup` begin once the server accepts, however slowly Python starts.
std::string gate(int port) {
  return "tcp { port = " + std::to_string(port) + ", every = \"100ms\", readiness = true }, ";
}

std::string target(const std::string& args) {
  return "start = { \"/bin/sh\", \"-c\", \"exec python3 " + kTarget + " " + args + "\" },\n";
}

// The probe entry `i` of a watch's status.
nlohmann::json probe_status(const Daemon& d, const std::string& watch, size_t i = 0) {
  auto w = d.watch(watch);
  if (!w.is_object() || !w.contains("probes") || w["probes"].size() <= i) return nullptr;
  return w["probes"][i];
}

bool probe_passing(const Daemon& d, const std::string& watch, size_t i) {
  auto p = probe_status(d, watch, i);
  return p.is_object() && p.value("passing", false);
}

std::string field(const nlohmann::json& ev, const char* key) {
  if (!ev.is_object() || !ev["fields"].contains(key)) return "";
  const auto& v = ev["fields"][key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

TEST(Probe, FrozenHttpServerIsHungAndRestarted) {
  Daemon d;
  int port = free_port();
  d.write_rule("a.lua", "watch \"web\" {\n" + target("--port " + std::to_string(port)) +
                            "  probes = { " + gate(port) +
                            "http { url = \"http://127.0.0.1:" + std::to_string(port) +
                            "/health\", body = \"ok\", every = \"200ms\", timeout = \"300ms\", "
                            "fails = 2, startup = \"60s\" } },\n"
                            "  stop = { timeout = \"1s\" },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return probe_passing(d, "web", 1); }, 20s)) << d.watch("web").dump();
  pid_t first = d.watch_pid("web");
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGSTOP), 0);
  ASSERT_TRUE(d.wait_event("VGL0142", "web", 1, 20s)) << d.output();
  auto hung = d.last_event("VGL0142", "web");
  EXPECT_EQ(field(hung, "pid"), std::to_string(first));
  EXPECT_NE(field(hung, "reason").find("timed out"), std::string::npos) << hung.dump();
  // Killed (a stopped process is continued so that it can die) and
  // restarted through the policy.
  ASSERT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("web");
        return p > 0 && p != first && d.watch_state("web") == "running";
      },
      20s))
      << d.output();
  EXPECT_GE(d.count_events("VGL0104", "web"), 1);
  // The new server answers: the probe passes again.
  ASSERT_TRUE(wait_for([&] { return probe_passing(d, "web", 1); }, 20s)) << d.watch("web").dump();
}

TEST(Probe, ServerAnswering500IsRestarted) {
  Daemon d;
  int port = free_port();
  d.write_rule("a.lua",
               "watch \"web\" {\n" +
                   target("--port " + std::to_string(port) + " --status 500 --body broken") +
                   "  probes = { " + gate(port) +
                   "http { url = \"http://127.0.0.1:" + std::to_string(port) +
                   "/\", every = \"200ms\", fails = 3, startup = \"60s\" } },\n"
                   "  restart = { limit = 1, within = \"1h\" },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  pid_t first = 0;
  ASSERT_TRUE(wait_for([&] { return (first = d.watch_pid("web")) > 0; }));
  ASSERT_TRUE(d.wait_event("VGL0142", "web", 1, 20s)) << d.output();
  auto hung = d.last_event("VGL0142", "web");
  EXPECT_NE(field(hung, "reason").find("status 500"), std::string::npos) << hung.dump();
  EXPECT_EQ(field(hung, "status"), "500");
  EXPECT_NE(field(hung, "evidence").find("broken"), std::string::npos) << hung.dump();
  EXPECT_EQ(field(hung, "fails"), "3");
  // Restarted once, then hung again: the budget (limit 1) is exhausted.
  ASSERT_TRUE(wait_for([&] { return d.watch_state("web") == "exhausted"; }, 30s)) << d.output();
  EXPECT_GE(d.count_events("VGL0142", "web"), 2);
}

TEST(Probe, HangingScriptIsKilledAtItsTimeout) {
  Daemon d;
  // A sleep nothing else runs: the script's child must die with it.
  std::string token = "sleep 10" + std::to_string(getpid());
  d.write_rule("a.lua",
               "watch \"svc\" {\n  start = { \"/bin/sleep\", \"1000\" },\n"
               "  probes = { script { command = \"echo checking the queue; " +
                   token +
                   "\", timeout = \"300ms\", every = \"200ms\", fails = 1 } },\n"
                   "  on_hung = \"alert\",\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  pid_t pid = 0;
  ASSERT_TRUE(wait_for([&] { return (pid = d.watch_pid("svc")) > 0; }));
  ASSERT_TRUE(d.wait_event("VGL0142", "svc")) << d.output();
  auto ev = d.last_event("VGL0142", "svc");
  EXPECT_NE(field(ev, "reason").find("killed at its timeout (0.3 s)"), std::string::npos)
      << ev.dump();
  EXPECT_NE(field(ev, "evidence").find("checking the queue"), std::string::npos) << ev.dump();
  double elapsed = std::stod(field(ev, "elapsed"));
  EXPECT_GE(elapsed, 0.3);
  EXPECT_LT(elapsed, 3.0);
  // The script (and what it ran) is gone; the watched process is not
  // touched when the rule says "alert".
  EXPECT_TRUE(wait_for([&] { return count_processes(token) == 0; }));
  EXPECT_EQ(d.watch_pid("svc"), pid);
  EXPECT_EQ(d.count_events("VGL0122", "svc"), 0);
}

TEST(Probe, NotifyReadyAndWatchdogSilenceRestarts) {
  Daemon d;
  std::string flag = d.dir() + "/pinging";
  write_file(flag, "");
  d.write_rule("a.lua", "watch \"n\" {\n" + target("--notify --pings-while " + flag) +
                            "  probes = { notify { ready = true, watchdog = \"1s\" } },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0144", "n", 1, 20s)) << d.output();
  auto w = d.watch("n");
  EXPECT_TRUE(w["ready"].get<bool>()) << w.dump();
  EXPECT_EQ(w.value("status", ""), "serving");
  pid_t first = d.watch_pid("n");
  // Pinging: not declared hung over several watchdog periods.
  ASSERT_TRUE(wait_for([&] {
    auto u = d.watch("n")["uptime"];
    return u.is_number() && u.get<double>() >= 2.5;
  }));
  EXPECT_EQ(d.count_events("VGL0141", "n"), 0) << d.output();
  std::filesystem::remove(flag);  // the program goes silent
  ASSERT_TRUE(d.wait_event("VGL0142", "n", 1, 20s)) << d.output();
  auto ev = d.last_event("VGL0142", "n");
  EXPECT_EQ(field(ev, "pid"), std::to_string(first));
  EXPECT_NE(field(ev, "reason").find("no WATCHDOG=1 for"), std::string::npos) << ev.dump();
  ASSERT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("n");
        return p > 0 && p != first;
      },
      20s))
      << d.output();
}

TEST(Probe, NoReadyWithinStartupIsAFailure) {
  Daemon d;
  d.write_rule("a.lua", "watch \"n\" {\n" + target("--notify --no-ready") +
                            "  probes = { notify { ready = true, startup = \"500ms\" } },\n"
                            "  on_hung = \"alert\",\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0142", "n", 1, 20s)) << d.output();
  auto ev = d.last_event("VGL0142", "n");
  EXPECT_NE(field(ev, "reason").find("no READY=1 within 0.5 s"), std::string::npos) << ev.dump();
  EXPECT_FALSE(d.watch("n")["ready"].get<bool>());
  EXPECT_EQ(d.count_events("VGL0144", "n"), 0);
}

TEST(Probe, ReadinessProbeGatesReadyAndNeverRestarts) {
  Daemon d;
  int port = free_port();
  d.write_rule("a.lua",
               "watch \"app\" {\n  start = { \"/bin/sleep\", \"1000\" },\n"
               "  probes = { tcp { port = " +
                   std::to_string(port) +
                   ", every = \"100ms\", fails = 2, readiness = true } },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  pid_t pid = 0;
  ASSERT_TRUE(wait_for([&] { return (pid = d.watch_pid("app")) > 0; }));
  // Nothing listens: failures, never ready, never killed.
  ASSERT_TRUE(d.wait_event("VGL0141", "app", 2)) << d.output();
  EXPECT_NE(field(d.last_event("VGL0141", "app"), "reason").find("refused"), std::string::npos)
      << d.last_event("VGL0141", "app").dump();
  EXPECT_FALSE(d.watch("app")["ready"].get<bool>());
  EXPECT_EQ(d.count_events("VGL0142", "app"), 0);
  // Something starts listening: ready.
  pid_t server = spawn_external({"python3", kTarget, "--port", std::to_string(port)});
  ASSERT_TRUE(d.wait_event("VGL0144", "app", 1, 20s)) << d.output();
  EXPECT_TRUE(d.watch("app")["ready"].get<bool>());
  EXPECT_EQ(d.watch_pid("app"), pid);
  EXPECT_EQ(d.count_events("VGL0122", "app"), 0);
  // It stops listening: no longer ready, still not killed.
  kill(server, SIGKILL);
  reap(server);
  ASSERT_TRUE(d.wait_event("VGL0145", "app", 1, 20s)) << d.output();
  EXPECT_FALSE(d.watch("app")["ready"].get<bool>());
  EXPECT_EQ(d.watch_pid("app"), pid);
}

TEST(Probe, LivenessProbesWaitForTheirStartupGrace) {
  Daemon d;
  int port = free_port();  // nothing listens
  d.write_rule("a.lua",
               "watch \"slow\" {\n  start = { \"/bin/sleep\", \"1000\" },\n"
               "  probes = { tcp { port = " +
                   std::to_string(port) +
                   ", every = \"100ms\", startup = \"1s\", fails = 1 } },\n"
                   "  on_hung = \"alert\",\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0141", "slow")) << d.output();
  nlohmann::json first;
  for (const auto& e : d.events())
    if (e["id"] == "VGL0141" && e["watch"] == "slow" && first.is_null()) first = e;
  // The first probe ran when the grace was over, not before.
  EXPECT_GE(std::stod(field(first, "uptime")), 0.99) << first.dump();
}

TEST(Probe, RuleLibraryCheckBuiltOnProbePrimitives) {
  Daemon d;
  int port = free_port();
  d.write_rule("a.lua",
               "local web = require \"vigil.web\"\n"
               "watch \"httpd\" {\n" +
                   target("--port " + std::to_string(port) + " --apache-idle 0") + "  probes = { " +
                   gate(port) + "web.apache { url = \"http://127.0.0.1:" + std::to_string(port) +
                   "/server-status?auto\", every = \"200ms\", fails = 2, "
                   "startup = \"60s\" } },\n"
                   "  on_hung = \"alert\",\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0142", "httpd", 1, 20s)) << d.output();
  auto ev = d.last_event("VGL0142", "httpd");
  EXPECT_EQ(field(ev, "probe"), "apache workers");
  EXPECT_NE(field(ev, "reason").find("0 idle workers (5 busy), fewer than 1"), std::string::npos)
      << ev.dump();
}

TEST(Probe, PrimitivesReportToRules) {
  Daemon d;
  int port = free_port();
  std::string out = d.dir() + "/out.txt";
  d.write_rule("a.lua", "watch \"srv\" {\n" + target("--port " + std::to_string(port)) +
                            "}\n"
                            "local function log(s) local f = io.open(\"" +
                            out +
                            "\", \"a\") f:write(s, \"\\n\") f:close() end\n"
                            "vigil.timer.every(0.2, function()\n"
                            "  vigil.probe.http({ url = \"http://127.0.0.1:" +
                            std::to_string(port) +
                            "/\", body = \"ok\" }, function(r)\n"
                            "    log(\"http \" .. tostring(r.ok) .. \" \" .. tostring(r.status) .. "
                            "\" \" .. r.body) end)\n"
                            "  vigil.probe.tcp({ port = 1 }, function(r)\n"
                            "    log(\"tcp \" .. tostring(r.ok) .. \" \" .. (r.reason or \"\")) "
                            "end)\n"
                            "  vigil.probe.http({ url = \"http://no-such-host.invalid/\" }, "
                            "function(r)\n"
                            "    log(\"dns \" .. tostring(r.ok) .. \" \" .. (r.reason or \"\")) "
                            "end)\n"
                            "end)\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for(
      [&] {
        std::string t = read_file(out);
        return t.find("http true 200 ok") != std::string::npos &&
               t.find("tcp false") != std::string::npos && t.find("dns false") != std::string::npos;
      },
      20s))
      << read_file(out);
  std::string t = read_file(out);
  EXPECT_NE(t.find("refused"), std::string::npos) << t;
  EXPECT_NE(t.find("resolve"), std::string::npos) << t;
}

TEST(Probe, BadProbesAreErrorsAtCheckTime) {
  Daemon d;
  struct Case {
    std::string probe, message;
  };
  std::vector<Case> cases = {
      {"http { url = \"htp://x/\" }", "is not an http:// or https:// URL"},
      {"http { url = \"http://127.0.0.1:99999/\" }", "bad port '99999'"},
      {"http { url = \"http:///health\" }", "has no host"},
      {"tcp { port = 70000 }", "70000 is out of range"},
      {"tcp { host = \"x\" }", "'port' is required"},
      {"file { path = \"/tmp/x\" }", "'max_age' is required"},
      {"http { url = \"http://x/\", evry = \"1s\" }", "unknown key 'evry'"},
      {"notify { }", "needs ready = true, a watchdog, or both"},
      {"script { command = { \"/no/such/program\" } }", "'/no/such/program' not found"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string file = d.dir() + "/bad" + std::to_string(i) + ".lua";
    write_file(file, "watch \"w\" {\n  start = { \"/bin/sleep\", \"1\" },\n  probes = {\n    " +
                         cases[i].probe + ",\n  },\n}\n");
    auto r = d.cli({"check", file});
    EXPECT_EQ(r.code, 1) << cases[i].probe;
    EXPECT_NE(r.err.find(cases[i].message), std::string::npos) << cases[i].probe << ": " << r.err;
    EXPECT_NE(r.err.find(file + ":"), std::string::npos) << r.err;
  }
}

// Debian's stock mod_status with ExtendedStatus On: IdleWorkers sits past
// byte 512 of "?auto", so a check that reads only the evidence excerpt
// calls a healthy server hung. A real apache2 on a private config.
TEST(Probe, ApacheStatusIsReadInFull) {
  const std::string mods = "/usr/lib/apache2/modules";
  if (access("/usr/sbin/apache2", X_OK) != 0 || access((mods + "/mod_status.so").c_str(), R_OK))
    GTEST_SKIP() << "apache2 with mod_status is not installed";
  Daemon d;
  int port = free_port();
  std::string root = d.dir() + "/apache";
  std::filesystem::create_directories(root);
  std::string conf = root + "/httpd.conf";
  write_file(conf, "ServerRoot \"" + root + "\"\nServerName 127.0.0.1\nListen 127.0.0.1:" +
                       std::to_string(port) + "\nPidFile " + root + "/httpd.pid\nErrorLog " + root +
                       "/error.log\nDefaultRuntimeDir " + root +
                       "\n"
                       "LoadModule mpm_event_module " +
                       mods +
                       "/mod_mpm_event.so\n"
                       "LoadModule authz_core_module " +
                       mods +
                       "/mod_authz_core.so\n"
                       "LoadModule authz_host_module " +
                       mods +
                       "/mod_authz_host.so\n"
                       "LoadModule status_module " +
                       mods +
                       "/mod_status.so\n"
                       "User nobody\nGroup nogroup\nExtendedStatus On\n"
                       "StartServers 1\nServerLimit 1\nThreadsPerChild 10\nMinSpareThreads 1\n"
                       "MaxSpareThreads 10\nMaxRequestWorkers 10\nDocumentRoot " +
                       root +
                       "\n"
                       "<Location \"/server-status\">\n  SetHandler server-status\n"
                       "  Require ip 127.0.0.1\n</Location>\n");
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/server-status?auto";
  d.write_rule("a.lua",
               "local web = require \"vigil.web\"\n"
               "watch \"httpd\" {\n  start = { \"/usr/sbin/apache2\", \"-f\", \"" +
                   conf + "\", \"-DFOREGROUND\" },\n  probes = { " + gate(port) +
                   "web.apache { url = \"" + url +
                   "\", every = \"200ms\", fails = 2, startup = \"60s\" } },\n"
                   "  on_hung = \"alert\",\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return probe_passing(d, "httpd", 1); }, 30s))
      << d.watch("httpd").dump() << "\n"
      << read_file(root + "/error.log") << d.output();
  EXPECT_EQ(d.count_events("VGL0142", "httpd"), 0) << d.output();
  // The premise: the field the check needs is past the 512-byte excerpt.
  auto page =
      run_command({"/usr/bin/env", "python3", "-c",
                   "import sys, urllib.request as u; o = u.build_opener(u.ProxyHandler({})); "
                   "sys.stdout.write(o.open(sys.argv[1]).read().decode())",
                   url});
  ASSERT_NE(page.out.find("IdleWorkers:"), std::string::npos) << page.out << page.err;
  EXPECT_GT(page.out.find("IdleWorkers:"), 512u) << page.out;
}

// Tomcat's manager text interface lists every application; on a real
// server the one asked for is often kilobytes in (a recorded page).
TEST(Probe, TomcatListIsReadInFull) {
  Daemon d;
  int port = free_port();
  std::string page = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/tomcat_manager_list.txt";
  ASSERT_GT(read_file(page).find("\n/shop:running:"), 512u);
  d.write_rule("a.lua",
               "local web = require \"vigil.web\"\n"
               "watch \"tomcat\" {\n" +
                   target("--port " + std::to_string(port) + " --body-file " + page) +
                   "  probes = { " + gate(port) +
                   "web.tomcat { url = \"http://127.0.0.1:" + std::to_string(port) +
                   "/manager/text/list\", app = \"/shop\", every = \"200ms\", "
                   "fails = 2, startup = \"60s\" },\n"
                   "    web.tomcat { name = \"quotes\", url = \"http://127.0.0.1:" +
                   std::to_string(port) +
                   "/manager/text/list\", app = \"/quotes\", every = \"200ms\", "
                   "fails = 1, startup = \"60s\" } },\n"
                   "  on_hung = \"alert\",\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return probe_passing(d, "tomcat", 1); }, 30s))
      << d.watch("tomcat").dump() << d.output();
  // A stopped application further in is seen as stopped, not as missing.
  ASSERT_TRUE(d.wait_event("VGL0142", "tomcat", 1, 30s)) << d.output();
  auto ev = d.last_event("VGL0142", "tomcat");
  EXPECT_EQ(field(ev, "probe"), "quotes") << ev.dump();
  EXPECT_NE(field(ev, "reason").find("application /quotes is stopped"), std::string::npos)
      << ev.dump();
}

namespace {

// A real short-lived sd_notify sender: sends READY=1 and exits at once
// (or, with "stay", leaves its session and stays).
std::string notify_sender(const Daemon& d) {
  std::string path = d.dir() + "/notify_sender.py";
  write_file(path,
             "import os, socket, sys, time\n"
             "if 'setsid' in sys.argv: os.setsid()\n"
             "a = os.environ['NOTIFY_SOCKET']\n"
             "a = '\\0' + a[1:] if a.startswith('@') else a\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
             "s.sendto(b'READY=1', a)\n"
             "if 'stay' in sys.argv: time.sleep(1000)\n");
  return path;
}

// The service waits for `go`, runs the sender to its end (the shell
// reaps it), writes `sent`, then runs on. The test holds vigil stopped
// meanwhile, so the sender is gone before vigil reads its message.
std::string gone_sender_service(const std::string& prelude, const std::string& sender,
                                const std::string& go, const std::string& sent) {
  return "  start = \"" + prelude + "while [ ! -e " + go + " ]; do sleep 0.05; done; python3 " +
         sender + "; touch " + sent + "; exec sleep 1000\",\n";
}

void send_while_vigil_is_stopped(Daemon& d, const std::string& go, const std::string& sent) {
  ASSERT_EQ(kill(d.pid(), SIGSTOP), 0);
  write_file(go, "");
  bool done = wait_for([&] { return std::filesystem::exists(sent); }, 30s);
  kill(d.pid(), SIGCONT);
  ASSERT_TRUE(done) << "the service never ran its sender";
}

}  // namespace

// A sender gone before its message is read, with nothing to prove whose
// it was (it was in vigil's own cgroup): dropped, but said, once.
TEST(Probe, NotifyFromAGoneSenderIsReportedNotDroppedSilently) {
  Daemon d;
  std::string go = d.dir() + "/go", sent = d.dir() + "/sent";
  d.write_rule("a.lua", "watch \"n\" {\n" + gone_sender_service("", notify_sender(d), go, sent) +
                            "  probes = { notify { ready = true, startup = \"120s\" } },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("n") == "running"; }));
  send_while_vigil_is_stopped(d, go, sent);
  ASSERT_TRUE(d.wait_event("VGL0165", "", 1, 20s)) << d.output();
  auto ev = d.last_event("VGL0165");
  EXPECT_NE(field(ev, "reason").find("the sender had exited before vigil read the message"),
            std::string::npos)
      << ev.dump();
  EXPECT_EQ(field(ev, "keys"), "READY");
  EXPECT_FALSE(d.watch("n")["ready"].get<bool>());
  EXPECT_EQ(d.count_events("VGL0165"), 1);
}

// A gone sender whose cgroup (kept by the kernel after its exit) is the
// service's own, not vigil's: proof enough, the service is ready.
TEST(Probe, NotifyFromAGoneSenderInTheServiceCgroupIsAccepted) {
  std::string root = "/sys/fs/cgroup/unified";
  if (!std::filesystem::exists(root + "/cgroup.procs")) root = "/sys/fs/cgroup";
  std::string cg = root + "/vigil-e2e-notify-" + std::to_string(getpid());
  if (!std::filesystem::exists(root + "/cgroup.procs") || mkdir(cg.c_str(), 0755) != 0)
    GTEST_SKIP() << "cannot make a cgroup (v2) under " << root;
  {
    Daemon d;
    std::string go = d.dir() + "/go", sent = d.dir() + "/sent";
    d.write_rule("a.lua", "watch \"n\" {\n" +
                              gone_sender_service("echo $$ > " + cg + "/cgroup.procs; ",
                                                  notify_sender(d), go, sent) +
                              "  probes = { notify { ready = true, startup = \"120s\" } },\n}\n");
    ASSERT_TRUE(d.start()) << d.output();
    ASSERT_TRUE(wait_for([&] {
      pid_t p = d.watch_pid("n");
      return p > 0 && read_file(cg + "/cgroup.procs").find(std::to_string(p)) != std::string::npos;
    }));
    send_while_vigil_is_stopped(d, go, sent);
    bool ready = d.wait_event("VGL0144", "n", 1, 20s);
    auto dropped = d.last_event("VGL0165");
    if (!ready && field(dropped, "reason").find("keeps no cgroup") != std::string::npos)
      GTEST_SKIP() << "the kernel keeps no cgroup of an exited sender (Linux < 6.15)";
    EXPECT_TRUE(ready) << d.output();
    EXPECT_EQ(d.count_events("VGL0165"), 0) << d.output();
    d.stop();
  }
  wait_for([&] { return rmdir(cg.c_str()) == 0; }, 10s);
}

// A helper that left the service's process group (its own session) but
// is its descendant, still there when the message is read: accepted.
TEST(Probe, NotifyFromADescendantInItsOwnSessionIsAccepted) {
  Daemon d;
  std::string sender = notify_sender(d);
  d.write_rule("a.lua", "watch \"n\" {\n  start = \"python3 " + sender +
                            " setsid stay & exec sleep 1000\",\n"
                            "  probes = { notify { ready = true, startup = \"120s\" } },\n}\n");
  ASSERT_TRUE(d.start()) << d.output();
  bool ready = d.wait_event("VGL0144", "n", 1, 30s);
  kill_processes(sender);
  EXPECT_TRUE(ready) << d.output();
  EXPECT_EQ(d.count_events("VGL0165"), 0) << d.output();
}

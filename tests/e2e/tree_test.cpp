// kill = "tree" (issue 12.14) against Debian's real apache2: a master
// (session leader, root) and its prefork workers (nobody). Vigil adopts
// the master; its signals must reach the workers, and what a dead master
// left running must be gone before the restart script starts a new one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const char* kApache = "/usr/sbin/apache2";
const char* kModules = "/usr/lib/apache2/modules";

// The pids in session `sid` (alive), read from /proc.
std::vector<pid_t> session_members(pid_t sid) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string n = e.path().filename();
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string stat = read_file(e.path().string() + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0, pgrp = 0, session = 0;
    if (sscanf(stat.c_str() + close + 2, "%c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
      continue;
    if (session == sid && state != 'Z') out.push_back(std::stoi(n));
  }
  return out;
}

struct Apache {
  std::string dir, conf;
  int port = free_port();

  explicit Apache(const std::string& base) : dir(base + "/apache"), conf(dir + "/apache2.conf") {
    std::filesystem::create_directories(dir + "/htdocs");
    write_file(dir + "/htdocs/index.html", "hello\n");
    // The workers run as nobody and must reach the document root.
    namespace fs = std::filesystem;
    for (const std::string& p : {base, dir, dir + "/htdocs"})
      fs::permissions(p, fs::perms::others_exec | fs::perms::group_exec, fs::perm_options::add);
    fs::permissions(dir + "/htdocs/index.html", fs::perms::others_read, fs::perm_options::add);
    std::string m = kModules;
    write_file(conf, "ServerRoot \"" + dir + "\"\nServerName localhost\nListen 127.0.0.1:" +
                         std::to_string(port) + "\nPidFile " + dir + "/apache2.pid\nErrorLog " +
                         dir + "/error.log\nDefaultRuntimeDir " + dir + "\nMutex file:" + dir +
                         " default\nLoadModule mpm_prefork_module " + m +
                         "/mod_mpm_prefork.so\nLoadModule authz_core_module " + m +
                         "/mod_authz_core.so\nUser nobody\nGroup nogroup\nDocumentRoot " + dir +
                         "/htdocs\nStartServers 3\nMinSpareServers 3\nMaxSpareServers 5\n");
  }
  std::string start_command() const { return std::string(kApache) + " -f " + conf + " -k start"; }
  pid_t master() const {
    std::string t = read_file(dir + "/apache2.pid");
    return t.empty() ? 0 : std::atoi(t.c_str());
  }
  bool serving() const {
    auto r = run_command({"/usr/bin/env", "python3", "-c",
                          "import sys, urllib.request as u\n"
                          "o = u.build_opener(u.ProxyHandler({}))\n"
                          "sys.stdout.write(o.open(sys.argv[1], timeout=2).read().decode())",
                          url()});
    return r.code == 0 && r.out == "hello\n";
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/index.html"; }
  std::string rule(const std::string& extra) const {
    return "watch \"web\" { match = { exe = \"" + std::string(kApache) + "\", cmdline = \"" + conf +
           "\", user = \"root\" },\n  restart_script = \"" + start_command() +
           "\",\n  stop = { timeout = \"2s\" },\n" + extra + " }\n";
  }
};

bool have_apache() {
  return access(kApache, X_OK) == 0 && getuid() == 0;
}

}  // namespace

TEST(Tree, AFrozenApacheIsStoppedWholeAndRestartedOnAFreePort) {
  if (!have_apache()) GTEST_SKIP() << "needs root and " << kApache << " (apt install apache2)";
  Daemon d;
  Apache a(d.dir());
  ASSERT_EQ(run_command({"/bin/sh", "-c", a.start_command()}).code, 0)
      << read_file(a.dir + "/error.log");
  ASSERT_TRUE(wait_for([&] { return a.master() > 0 && a.serving(); }, 20s));
  pid_t master = a.master();
  d.write_rule("a.lua", a.rule("  probes = { http { url = \"" + a.url() +
                               "\", every = \"300ms\", timeout = \"500ms\", fails = 2 } },"));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == master; })) << d.output();
  std::vector<pid_t> old = session_members(master);
  ASSERT_GE(old.size(), 2u) << "apache2 started no workers";
  // Frozen: the master and every worker stopped.
  for (pid_t p : old) kill(p, SIGSTOP);
  ASSERT_TRUE(d.wait_event("VGL0142", "web", 1, 20s)) << d.output();
  // Hung, stopped whole (TERM, CONT, KILL after 2 s reach every worker),
  // and the restart script's apache2 gets the port.
  EXPECT_TRUE(wait_for([&] { return session_members(master).empty(); }, 20s))
      << session_members(master).size() << " processes of the old apache2 left\n"
      << d.output();
  EXPECT_TRUE(wait_for(
      [&] {
        reap(master, 0ms);
        pid_t p = d.watch_pid("web");
        return p > 0 && p != master && a.serving();
      },
      30s))
      << d.output() << read_file(a.dir + "/error.log");
  d.stop();
  kill_processes(a.conf);
}

TEST(Tree, WorkersLeftByAKilledMasterAreStoppedBeforeTheRestartScript) {
  if (!have_apache()) GTEST_SKIP() << "needs root and " << kApache << " (apt install apache2)";
  Daemon d;
  Apache a(d.dir());
  ASSERT_EQ(run_command({"/bin/sh", "-c", a.start_command()}).code, 0)
      << read_file(a.dir + "/error.log");
  ASSERT_TRUE(wait_for([&] { return a.master() > 0 && a.serving(); }, 20s));
  pid_t master = a.master();
  d.write_rule("a.lua", a.rule(""));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == master; })) << d.output();
  ASSERT_GE(session_members(master).size(), 2u);
  // kill -9 of the master: its workers keep the port open.
  ASSERT_EQ(kill(master, SIGKILL), 0);
  // apache2 -k start daemonizes, so its master is this test's child (the
  // harness is a subreaper) and nothing else reaps it. A zombie keeps its
  // pid in use, and the next apache2 -k start would take it for a running
  // apache2 and refuse to start.
  ASSERT_TRUE(reap(master));
  ASSERT_TRUE(d.wait_event("VGL0176", "web", 1, 20s)) << d.output();
  auto e = d.last_event("VGL0176", "web");
  EXPECT_EQ(e["fields"]["pid"], master);
  EXPECT_GE(e["fields"]["count"].get<int>(), 2);
  EXPECT_TRUE(session_members(master).empty());
  EXPECT_TRUE(wait_for(
      [&] {
        reap(master, 0ms);
        pid_t p = d.watch_pid("web");
        return p > 0 && p != master && a.serving();
      },
      30s))
      << d.output() << read_file(a.dir + "/error.log");
  d.stop();
  kill_processes(a.conf);
}

TEST(Tree, KillProcessLeavesTheWorkersAlone) {
  if (!have_apache()) GTEST_SKIP() << "needs root and " << kApache << " (apt install apache2)";
  Daemon d;
  Apache a(d.dir());
  ASSERT_EQ(run_command({"/bin/sh", "-c", a.start_command()}).code, 0)
      << read_file(a.dir + "/error.log");
  ASSERT_TRUE(wait_for([&] { return a.master() > 0 && a.serving(); }, 20s));
  pid_t master = a.master();
  d.write_rule("a.lua", a.rule("  kill = \"process\","));
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == master; })) << d.output();
  size_t workers = session_members(master).size() - 1;
  ASSERT_GE(workers, 1u);
  ASSERT_EQ(kill(master, SIGKILL), 0);
  ASSERT_TRUE(reap(master));
  ASSERT_TRUE(d.wait_event("VGL0123", "web", 1, 20s)) << d.output();  // the script ran
  EXPECT_EQ(d.count_events("VGL0176", "web"), 0) << d.output();
  EXPECT_EQ(session_members(master).size(), workers);
  d.stop();
  kill_processes(a.conf);
}

// `kill` is checked like every key, and only an adopted process has a
// tree vigil did not make.
TEST(Tree, KillIsCheckedAtLoad) {
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"watch \"a\" { match = { name = \"x\" }, kill = \"all\" }", "kill: expected one of"},
      {"watch \"a\" { match = { name = \"x\" }, kill = true }", "kill: expected one of"},
      {"watch \"a\" { start = \"true\", kill = \"tree\" }", "'kill' is for adopted processes"},
  };
  for (const auto& c : cases) {
    auto r = check_rule(c.text);
    EXPECT_EQ(r.code, 1) << c.text;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "rule: " << c.text << "\nerr: " << r.err;
  }
  for (const char* good : {"watch \"a\" { match = { name = \"x\" }, kill = \"process\" }",
                           "watch \"a\" { match = { name = \"x\" }, kill = \"tree\" }"}) {
    auto r = check_rule(good);
    EXPECT_EQ(r.code, 0) << good << "\n" << r.err;
  }
}

// End-to-end: the lifecycle of a watch whose process vigil did not start
// (issue 12): a real nginx (a master and its workers) started by the test
// on a loopback port, adopted by its match, and what vigil does with it
// when the watch is removed, its match changes, or an operator restarts
// it; and that a restart keeps the whole declaration (its probes).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "host/core/fd.hpp"
#include "host/proc/proc_files.hpp"
#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const char* kNginx = "/usr/sbin/nginx";

bool serving(int port) {
  vigil::Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return s && connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

std::vector<pid_t> children_of(pid_t pid) {
  vigil::ProcReader r;
  auto kids = r.children(pid);
  std::sort(kids.begin(), kids.end());
  return kids;
}

// A private nginx: its configuration, pid file, logs and temp paths in
// DIR/NAME, two workers, one loopback port. `argv` runs it in the
// foreground (daemon off), so its master is the process started.
struct Nginx {
  std::string conf;
  int port = 0;
  std::vector<std::string> argv;
  pid_t master = 0;  // when the test started it

  Nginx(const std::string& dir, const std::string& name) {
    std::string root = dir + "/" + name;
    std::filesystem::create_directories(root);
    port = free_port();
    conf = root + "/nginx.conf";
    std::string text = R"(worker_processes 2;
pid ROOT/nginx.pid;
error_log ROOT/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ROOT/body;
  proxy_temp_path ROOT/proxy;
  fastcgi_temp_path ROOT/fastcgi;
  uwsgi_temp_path ROOT/uwsgi;
  scgi_temp_path ROOT/scgi;
  server { listen 127.0.0.1:PORT; location / { return 200 "ok\n"; } }
}
)";
    for (size_t at; (at = text.find("ROOT")) != std::string::npos;) text.replace(at, 4, root);
    text.replace(text.find("PORT"), 4, std::to_string(port));
    write_file(conf, text);
    argv = {kNginx, "-e", root + "/error.log", "-c", conf, "-g", "daemon off;"};
  }
  ~Nginx() {
    if (master > 0 && process_alive(master)) {
      kill(master, SIGTERM);  // the master takes its workers down with it
      if (!reap(master)) kill(master, SIGKILL);
    }
    if (master > 0) waitpid(master, nullptr, WNOHANG);
  }

  // Started by the test, as another init system would: not vigil's.
  bool start() {
    master = spawn_external(argv);
    return wait_for([&] { return children_of(master).size() == 2 && serving(port); }, 20s);
  }
  // The rule's match: the master's command line names the configuration
  // (the workers' say "nginx: worker process").
  std::string match() const { return "match = { cmdline = \"-c " + conf + "\" }"; }
  // `start = { ... }` for a watch that starts it itself.
  std::string start_key() const {
    std::string s = "start = {";
    for (const auto& a : argv) s += " \"" + a + "\",";
    return s + " }";
  }
};

#define NEED_NGINX() \
  if (access(kNginx, X_OK) != 0) GTEST_SKIP() << kNginx << " is not installed (nginx-light)"

}  // namespace

// Issue 12, item 1: deleting the rule file of a match-only watch (inotify)
// used to send TERM to the nginx it had adopted. Now vigil lets go of it,
// as at shutdown: the master and its workers run on, still serving;
// `stop_on_remove = true` asks for the stop.
TEST(Lifecycle, ARemovedAdoptedWatchLeavesTheServerRunningUnlessToldToStopIt) {
  NEED_NGINX();
  Daemon d;
  Nginx web(d.dir(), "web");
  ASSERT_TRUE(web.start()) << "nginx did not start on port " << web.port;
  std::vector<pid_t> workers = children_of(web.master);
  d.write_rule("keep.lua", "watch \"keep\" { start = { \"sleep\", \"100060\" } }\n");
  d.write_rule("web.lua", "watch \"web\" { " + web.match() + " }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == web.master; })) << d.output();

  std::filesystem::remove(d.rules_dir() + "/web.lua");  // inotify reloads
  ASSERT_TRUE(d.wait_event("VGL0117", "web", 1, 20s)) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch("web").is_null(); })) << d.output();
  EXPECT_EQ(d.count_events("VGL0108", "web"), 0) << "a stop was requested: " << d.output();
  EXPECT_TRUE(d.wait_event("VGL0160", "web")) << d.output();
  EXPECT_TRUE(process_alive(web.master))
      << "removing the watch stopped a process vigil did not start";
  EXPECT_EQ(children_of(web.master), workers);
  EXPECT_TRUE(serving(web.port));
  EXPECT_EQ(d.watch_state("keep"), "running");

  // Asked for: the removal stops it (TERM; nginx takes its workers down).
  d.write_rule("web.lua", "watch \"web\" { " + web.match() + ", stop_on_remove = true }\n");
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == web.master; }, 20s)) << d.output();
  std::filesystem::remove(d.rules_dir() + "/web.lua");
  ASSERT_TRUE(reap(web.master, 20s)) << "stop_on_remove did not stop it: " << d.output();
  EXPECT_EQ(d.count_events("VGL0108", "web"), 1);
  EXPECT_TRUE(wait_for([&] {
    for (pid_t w : workers)
      if (process_alive(w)) return false;
    return true;
  }));
  // Gone once vigil has seen the exit (the test reaped it: vigil learns
  // its status a moment later).
  EXPECT_TRUE(wait_for([&] { return d.watch("web").is_null(); })) << d.output();
}

// `stop_on_remove` is checked like every key.
TEST(Lifecycle, StopOnRemoveIsCheckedAtLoad) {
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"watch \"a\" { match = { name = \"x\" }, stop_on_remove = \"yes\" }",
       "stop_on_remove: expected a boolean"},
      {"watch \"a\" { start = \"true\", stop_on_remove = true }",
       "'stop_on_remove' applies to a watch with a 'match'"},
  };
  for (const auto& c : cases) {
    auto r = check_rule(c.text);
    EXPECT_EQ(r.code, 1) << c.text;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "rule: " << c.text << "\nerr: " << r.err;
  }
  auto r = check_rule("watch \"a\" { match = { name = \"x\" }, stop_on_remove = false }");
  EXPECT_EQ(r.code, 0) << r.err;
}

// Issue 12, item 2: a reload that changed the match used to kill the
// nginx adopted by the old one and never adopt the one the new match
// names (not even after `vigil start`). A changed match is a re-find: the
// old server is left running, the new one adopted.
TEST(Lifecycle, AChangedMatchReleasesTheOldServerAndAdoptsTheNewOne) {
  NEED_NGINX();
  Daemon d;
  Nginx a(d.dir(), "a"), b(d.dir(), "b");
  ASSERT_TRUE(a.start()) << "nginx a did not start on port " << a.port;
  ASSERT_TRUE(b.start()) << "nginx b did not start on port " << b.port;
  std::vector<pid_t> a_workers = children_of(a.master), b_workers = children_of(b.master);
  d.write_rule("web.lua", "watch \"web\" { " + a.match() + " }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == a.master; })) << d.output();

  d.write_rule("web.lua", "watch \"web\" { " + b.match() + " }\n");
  d.cli({"reload"});  // (inotify may have reloaded already: the same rules)
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == b.master; }, 20s))
      << d.watch("web").dump() << d.output();
  EXPECT_EQ(d.watch_state("web"), "running");
  EXPECT_EQ(d.watch("web")["adopted"], true);
  EXPECT_EQ(d.count_events("VGL0108", "web"), 0) << "a stop was requested: " << d.output();
  EXPECT_EQ(d.last_event("VGL0160", "web")["fields"]["pid"], a.master) << d.output();
  EXPECT_TRUE(process_alive(a.master)) << "the old match's server was stopped";
  EXPECT_EQ(children_of(a.master), a_workers);
  EXPECT_TRUE(serving(a.port));
  EXPECT_EQ(children_of(b.master), b_workers);

  // Back to a: b is let go of in turn, a adopted again.
  d.write_rule("web.lua", "watch \"web\" { " + a.match() + " }\n");
  d.cli({"reload"});
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == a.master; }, 20s)) << d.output();
  EXPECT_TRUE(process_alive(b.master));
  EXPECT_TRUE(serving(b.port));
}

// Issue 12, item 3: `vigil restart` on a match-only watch used to kill
// the adopted nginx, say "stopped" and exit 0, with nothing to start it
// again. It is refused, and nothing is touched.
TEST(Lifecycle, RestartOfAMatchOnlyWatchIsRefusedAndTouchesNothing) {
  NEED_NGINX();
  Daemon d;
  Nginx web(d.dir(), "web");
  ASSERT_TRUE(web.start()) << "nginx did not start on port " << web.port;
  std::vector<pid_t> workers = children_of(web.master);
  d.write_rule("web.lua", "watch \"web\" { " + web.match() + " }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("web") == web.master; })) << d.output();

  auto r = d.cli({"restart", "web"});
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.err.find("nothing to restart it with"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("restart_script"), std::string::npos) << r.err;
  EXPECT_EQ(d.count_events("VGL0108", "web"), 0) << d.output();
  EXPECT_TRUE(process_alive(web.master));
  EXPECT_EQ(children_of(web.master), workers);
  EXPECT_EQ(d.watch_pid("web"), web.master);
  EXPECT_EQ(d.watch_state("web"), "running");
  EXPECT_EQ(d.watch("web")["restarts"], 0);

  // Once it is gone (the watch waits for it to come back), still refused.
  kill(web.master, SIGTERM);
  ASSERT_TRUE(reap(web.master, 20s));
  ASSERT_TRUE(wait_for([&] { return d.watch_state("web") == "stopped"; })) << d.output();
  r = d.cli({"restart", "web"});
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.err.find("nothing to restart it with"), std::string::npos) << r.err;
}

// Issue 12, item 9: `vigil restart` rebuilt the declaration by hand and
// left out the probes: the restarted nginx ran unprobed until the next
// reload. The restart keeps the whole declaration.
TEST(Lifecycle, RestartKeepsTheWholeDeclarationProbesIncluded) {
  NEED_NGINX();
  Daemon d;
  Nginx web(d.dir(), "web");
  std::string url = "http://127.0.0.1:" + std::to_string(web.port) + "/";
  d.write_rule("web.lua", "watch \"web\" {\n  " + web.start_key() +
                              ",\n"
                              "  probes = { http { url = \"" +
                              url +
                              "\", body = \"ok\", every = \"200ms\", timeout = \"2s\" },\n"
                              "             tcp { port = " +
                              std::to_string(web.port) +
                              ", every = \"200ms\" } },\n"
                              "  checks = { threads = 50 },\n"
                              "}\n");
  ASSERT_TRUE(d.start()) << d.output();
  auto passing = [&](size_t n) {
    auto w = d.watch("web");
    if (!w.is_object() || !w.contains("probes") || w["probes"].size() != n) return false;
    for (const auto& p : w["probes"])
      if (!p.value("passing", false)) return false;
    return true;
  };
  ASSERT_TRUE(wait_for([&] { return passing(2); }, 20s)) << d.watch("web").dump() << d.output();
  pid_t first = d.watch_pid("web");
  auto before = d.watch("web");

  auto r = d.cli({"restart", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(wait_for(
      [&] {
        pid_t p = d.watch_pid("web");
        return p > 0 && p != first && d.watch_state("web") == "running";
      },
      20s))
      << d.output();
  EXPECT_TRUE(wait_for([&] { return passing(2); }, 20s))
      << "the restarted watch lost its probes: " << d.watch("web").dump();
  auto after = d.watch("web");
  EXPECT_EQ(after["where"], before["where"]);
  EXPECT_EQ(after["probes"][0]["name"], before["probes"][0]["name"]);
  EXPECT_EQ(after["probes"][1]["name"], before["probes"][1]["name"]);
}

// The same for a group: restarting it stops and starts each of its
// watches, so a group with a watch that cannot be started is refused
// whole, and neither the adopted nginx nor its sibling is touched.
TEST(Lifecycle, RestartOfAGroupWithAMatchOnlyWatchIsRefusedAndTouchesNothing) {
  NEED_NGINX();
  Daemon d;
  Nginx web(d.dir(), "web");
  ASSERT_TRUE(web.start()) << "nginx did not start on port " << web.port;
  d.write_rule("web.lua",
               "watch \"app\" { start = { \"sleep\", \"100061\" } }\n"
               "watch \"web\" { " +
                   web.match() +
                   " }\n"
                   "group \"site\" { \"app\", \"web\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_pid("web") == web.master && d.watch_state("app") == "running";
  })) << d.output();
  pid_t app = d.watch_pid("app");

  auto r = d.cli({"restart", "site"});
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.err.find("its watch 'web' has nothing to restart it with"), std::string::npos)
      << r.err;
  EXPECT_EQ(d.count_events("VGL0108"), 0) << d.output();
  EXPECT_TRUE(process_alive(web.master));
  EXPECT_EQ(d.watch_pid("web"), web.master);
  EXPECT_EQ(d.watch_pid("app"), app);
}

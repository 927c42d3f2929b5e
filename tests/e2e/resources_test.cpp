// End-to-end: limits and environment of a started program (issue 14
// item 4), each read back from /proc of the real child, and the bad
// input: refused by `vigil check` where it can be known, else a failed
// start (an event, counted by the restart budget).
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

std::string proc(pid_t pid, const char* file) {
  return read_file("/proc/" + std::to_string(pid) + "/" + file);
}

// The line of /proc/PID/limits for `what` ("Max open files"), squeezed.
std::string limit_line(pid_t pid, const std::string& what) {
  std::istringstream in(proc(pid, "limits"));
  for (std::string l; std::getline(in, l);) {
    if (l.rfind(what, 0) != 0) continue;
    std::istringstream words(l.substr(what.size()));
    std::string out, w;
    while (words >> w) out += (out.empty() ? "" : " ") + w;
    return out;
  }
  return "(none)";
}

// Field `n` (1-based) of /proc/PID/stat, counted after the command.
std::string stat_field(pid_t pid, int n) {
  std::string s = proc(pid, "stat");
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string f;
  for (int i = 3; i <= n; ++i) in >> f;
  return f;
}

std::string status_line(pid_t pid, const std::string& key) {
  std::istringstream in(proc(pid, "status"));
  for (std::string l; std::getline(in, l);)
    if (l.rfind(key + ":", 0) == 0) {
      std::string v = l.substr(key.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
      return v;
    }
  return "(none)";
}

std::vector<std::string> environ_of(pid_t pid) {
  std::string e = proc(pid, "environ");
  std::vector<std::string> out;
  for (size_t at = 0; at < e.size();) {
    size_t end = e.find('\0', at);
    out.push_back(e.substr(at, end - at));
    at = end == std::string::npos ? e.size() : end + 1;
  }
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

TEST(Resources, EachSettingReachesTheChild) {
  Daemon d;
  std::string envf = d.dir() + "/default";
  write_file(envf, "# the package's defaults\nFROM_FILE='file value'\nBOTH=file\n");
  d.write_rule("a.lua", R"(
watch "r" {
  start = { "/bin/sleep", "1000" },
  user = "nobody",
  supplementary_groups = { "adm" },
  limits = { nofile = 4242, core = "unlimited", as = "2GB", stack = { "8MB", "unlimited" },
             cpu = "1h", nproc = { soft = 100, hard = 200 } },
  nice = 7,
  ionice = "best-effort:6",
  oom_score_adjust = 345,
  env_file = ")" + envf + R"(",
  env = { BOTH = "rule" },
  no_new_privileges = true,
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("r") == "running"; })) << d.output();
  pid_t pid = d.watch_pid("r");
  ASSERT_GT(pid, 0);
  EXPECT_EQ(limit_line(pid, "Max open files"), "4242 4242 files");
  EXPECT_EQ(limit_line(pid, "Max core file size"), "unlimited unlimited bytes");
  EXPECT_EQ(limit_line(pid, "Max address space"), "2147483648 2147483648 bytes");
  EXPECT_EQ(limit_line(pid, "Max stack size"), "8388608 unlimited bytes");
  EXPECT_EQ(limit_line(pid, "Max cpu time"), "3600 3600 seconds");
  EXPECT_EQ(limit_line(pid, "Max processes"), "100 200 processes");
  EXPECT_EQ(stat_field(pid, 19), "7");  // nice
  EXPECT_EQ(syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, pid), (2 << 13) | 6);
  EXPECT_EQ(proc(pid, "oom_score_adj"), "345\n");
  auto env = environ_of(pid);
  EXPECT_TRUE(has(env, "FROM_FILE=file value")) << proc(pid, "environ");
  EXPECT_TRUE(has(env, "BOTH=rule"));  // the rule's env wins over the file
  EXPECT_FALSE(has(env, "BOTH=file"));
  EXPECT_TRUE(has(env, "USER=nobody"));
  EXPECT_EQ(status_line(pid, "Uid").substr(0, 5), "65534");
  std::string groups = " " + status_line(pid, "Groups") + " ";
  EXPECT_NE(groups.find(" 4 "), std::string::npos) << groups;  // adm
  EXPECT_EQ(status_line(pid, "NoNewPrivs"), "1");

  // The env file is read at each start: an edit applies at the restart.
  write_file(envf, "FROM_FILE=edited\n");
  kill(pid, SIGKILL);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d.watch_pid("r");
    return p > 0 && p != pid && d.watch_state("r") == "running";
  })) << d.output();
  env = environ_of(d.watch_pid("r"));
  EXPECT_TRUE(has(env, "FROM_FILE=edited")) << proc(d.watch_pid("r"), "environ");
}

TEST(Resources, AWatchWithoutThemInheritsVigils) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "plain" { start = { "/bin/sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("plain") == "running"; }));
  pid_t pid = d.watch_pid("plain");
  EXPECT_EQ(stat_field(pid, 19), stat_field(d.pid(), 19));
  EXPECT_EQ(proc(pid, "oom_score_adj"), proc(d.pid(), "oom_score_adj"));
  EXPECT_EQ(status_line(pid, "NoNewPrivs"), "0");
  EXPECT_EQ(limit_line(pid, "Max core file size"), limit_line(d.pid(), "Max core file size"));
}

TEST(Resources, EnvFileMissingOrBadAtStartIsAFailedStartCounted) {
  Daemon d;
  std::string envf = d.dir() + "/default";
  write_file(envf, "A=1\n");
  d.write_rule("a.lua", R"(
watch "gone" {
  start = { "/bin/sleep", "1000" },
  env_file = ")" + envf + R"(",
  restart = { limit = 1, within = "10m", backoff = "10ms" },
}
watch "bad" {
  start = { "/bin/sleep", "1000" },
  env_file = ")" + envf + R"(2",
  restart = { limit = 1, within = "10m", backoff = "10ms" },
}
watch "optional" {
  start = { "/bin/sleep", "1000" },
  env_file = "-)" + d.dir() + R"(/never",
})");
  write_file(envf + "2", "A=1\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("gone") == "running" && d.watch_state("bad") == "running" &&
           d.watch_state("optional") == "running";
  })) << d.output();
  std::filesystem::remove(envf);
  write_file(envf + "2", "A=1\nB 2\n");
  kill(d.watch_pid("gone"), SIGKILL);
  kill(d.watch_pid("bad"), SIGKILL);
  ASSERT_TRUE(wait_for([&] {
    return d.watch_state("gone") == "exhausted" && d.watch_state("bad") == "exhausted";
  })) << d.output();
  auto ev = d.last_event("VGL0103", "gone");
  ASSERT_FALSE(ev.is_null()) << d.output();
  EXPECT_NE(ev.dump().find("env_file: " + envf + ": No such file or directory"), std::string::npos)
      << ev.dump();
  ev = d.last_event("VGL0103", "bad");
  ASSERT_FALSE(ev.is_null());
  EXPECT_NE(ev.dump().find(envf + "2:2: expected KEY=VALUE"), std::string::npos) << ev.dump();
  EXPECT_EQ(d.watch("gone")["restarts"], 1);  // the failed start used the budget
  EXPECT_TRUE(d.running());
}

TEST(Resources, ALimitTheKernelRefusesIsAFailedStartNamingIt) {
  // Above fs.nr_open even root cannot raise RLIMIT_NOFILE: the child's
  // setrlimit fails, and the start with it.
  Daemon d;
  d.write_rule("a.lua", R"(
watch "big" {
  start = { "/bin/sleep", "1000" },
  limits = { nofile = 1073741824 },
  restart = { limit = 1, within = "10m", backoff = "10ms" },
})");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_state("big") == "exhausted"; })) << d.output();
  auto w = d.watch("big");
  EXPECT_NE(w["last_exit"].value("error", "").find("setrlimit(nofile)"), std::string::npos)
      << w.dump();
  EXPECT_GE(d.count_events("VGL0103", "big"), 1);
}

TEST(Resources, CheckRefusesBadValuesWithTheirLine) {
  std::string dir = std::filesystem::temp_directory_path() / ("vigil-res-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  write_file(dir + "/badline", "A=1\n# fine\nnot-a-line\n");
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"limits = { nofiles = 10 }", "rule.lua:1: watch 'w'.limits: unknown limit 'nofiles' (did you mean 'nofile'?)"},
      {"limits = { nofile = { 100, 10 } }", "watch 'w'.limits.nofile: the soft limit 100 is above the hard limit 10"},
      {"limits = { nofile = { \"unlimited\", 10 } }", "the soft limit unlimited is above the hard limit 10"},
      {"limits = { as = \"lots\" }", "watch 'w'.limits.as: bad size"},
      {"limits = { nofile = \"2GB\" }", "watch 'w'.limits.nofile: expected an integer or \"unlimited\""},
      {"limits = { nice = 41 }", "watch 'w'.limits.nice: 41 is out of range [0, 40]"},
      {"nice = 25", "watch 'w'.nice: 25 is out of range [-20, 19]"},
      {"nice = -21", "watch 'w'.nice: -21 is out of range"},
      {"ionice = \"best-efort:4\"", "watch 'w'.ionice: unknown class 'best-efort' (did you mean 'best-effort'?)"},
      {"ionice = \"realtime:9\"", "watch 'w'.ionice: level 9 is out of range [0, 7]"},
      {"ionice = { class = \"idle\", level = 3 }", "the idle class has no level"},
      {"oom_score_adjust = 1001", "watch 'w'.oom_score_adjust: 1001 is out of range [-1000, 1000]"},
      {"env_file = \"relative\"", "watch 'w'.env_file: expected an absolute path"},
      {"env_file = \"" + dir + "/none\"", "rule.lua:1: watch 'w': env_file: " + dir + "/none: No such file or directory"},
      {"env_file = \"" + dir + "/badline\"", "env_file: " + dir + "/badline:3: expected KEY=VALUE"},
      {"env_file = \"" + dir + "\"", "env_file: " + dir + ": is a directory"},
      {"supplementary_groups = { \"adm\" }", "'supplementary_groups' are added to a 'user''s own groups: set 'user'"},
      {"user = \"nobody\", supplementary_groups = { \"no-such-group\" }", "supplementary_groups: no such group 'no-such-group'"},
      {"no_new_privileges = 1", "watch 'w'.no_new_privileges: expected a boolean"},
  };
  for (const auto& c : cases) {
    auto r = check_rule("watch \"w\" {\n  start = { \"/bin/sleep\", \"1\" }, " + c.text + " }\n");
    EXPECT_EQ(r.code, 1) << c.text;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "rule: " << c.text << "\nerr: " << r.err;
  }
  // A match watch starts nothing: the keys are refused there.
  auto r = check_rule("watch \"m\" { match = { name = \"x\" }, nice = 5 }");
  EXPECT_NE(r.err.find("'nice' applies to a process vigil starts"), std::string::npos) << r.err;
  // And good values pass.
  write_file(dir + "/good", "A=1\n");
  r = check_rule("watch \"w\" { start = { \"/bin/sleep\", \"1\" }, limits = { core = \"unlimited\", "
                 "memlock = { \"64KB\", \"1MB\" }, rttime = \"1s\" }, ionice = { class = \"realtime\" }, "
                 "nice = -5, oom_score_adjust = -1000, env_file = \"-" + dir + "/none\", "
                 "user = \"nobody\", supplementary_groups = { \"adm\", 4 }, no_new_privileges = true }");
  EXPECT_EQ(r.code, 0) << r.err;
  std::filesystem::remove_all(dir);
}

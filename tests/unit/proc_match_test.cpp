// Matcher and find_processes on processes the test starts, each key alone
// and together, against one process that should match and one that should
// not.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "host/proc/match.hpp"
#include "host/proc/proc_scan.hpp"
#include "tests/unit/proc_test_support.hpp"

using namespace vigil;
using namespace vigil::proc_test;

namespace {

std::string compile_error(const MatchSpec& spec) {
  std::string error;
  auto m = Matcher::compile(spec, error);
  EXPECT_FALSE(m) << "compiled: " << spec.describe();
  return error;
}

Matcher compile(const MatchSpec& spec) {
  std::string error;
  auto m = Matcher::compile(spec, error);
  if (!m) {
    ADD_FAILURE() << spec.describe() << ": " << error;
    MatchSpec fallback;
    fallback.name = "\x01never";  // a comm no process has
    m = Matcher::compile(fallback, error);
  }
  return *m;
}

// Whether `spec` matches the process `pid` as it is now.
bool matches(const MatchSpec& spec, pid_t pid, pid_t parent_pid = 0) {
  Matcher m = compile(spec);
  ProcReader reader;
  auto st = reader.stat(pid);
  if (!st) {
    ADD_FAILURE() << "no stat for " << pid;
    return false;
  }
  return m.matches(*st, reader, parent_pid);
}

std::vector<pid_t> found_pids(const MatchSpec& spec, pid_t parent_pid = 0,
                              const std::vector<pid_t>& exclude = {}) {
  ProcReader reader;
  std::vector<pid_t> out;
  for (const auto& f : find_processes(compile(spec), reader, parent_pid, exclude))
    out.push_back(f.pid);
  return out;
}

// The longest line of /proc/self/cgroup: a substring of every child's.
std::string own_cgroup_line() {
  std::istringstream in(read_file("/proc/self/cgroup").value_or(""));
  std::string best;
  for (std::string line; std::getline(in, line);)
    if (line.size() > best.size()) best = line;
  return best;
}

// Two sleeps: `a` runs a copy named vta-PID as root with argv
// "alpha-marker-PID 1000"; `b` runs /bin/sleep as uid 1234 with argv
// "beta-marker-PID 1001". Each key is checked to pick one and not the other.
class ProcMatcher : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir.path().empty());
    tag = std::to_string(getpid());
    a_name = "vta-" + tag;
    a_path = dir.copy_executable("/bin/sleep", a_name);
    a = spawn({"alpha-marker-" + tag, "1000"}, {.path = a_path});
    ASSERT_TRUE(a);
    b = spawn({"beta-marker-" + tag, "1001"}, {.path = "/bin/sleep", .in_child = [] {
                                                 return setresgid(4321, 4321, 4321) == 0 &&
                                                        setresuid(1234, 1234, 1234) == 0;
                                               }});
    ASSERT_TRUE(b);
    cgroup = own_cgroup_line();
    ASSERT_FALSE(cgroup.empty());
  }

  // The spec that `a` matches with every key set.
  MatchSpec full_a() const {
    MatchSpec s;
    s.name = a_name;
    s.exe = a_path;
    s.cmdline = "alpha-marker-" + tag + " 1000";
    s.cmdline_re = "^alpha-marker-[0-9]+ 1000$";
    s.user = "root";
    s.ppid = getpid();
    s.cgroup = cgroup;
    return s;
  }

  TempDir dir;
  std::string tag, a_name, a_path, cgroup;
  Child a, b;
};

}  // namespace

TEST(ProcMatcherCompile, Errors) {
  EXPECT_NE(compile_error(MatchSpec{}).find("match:"), std::string::npos);
  MatchSpec kernel_only;
  kernel_only.kernel = true;  // selects, but is no key by itself
  EXPECT_NE(compile_error(kernel_only).find("match:"), std::string::npos);

  for (const char* re : {"(", "a[", "*{", "x{2,1}"}) {
    MatchSpec s;
    s.cmdline_re = re;
    std::string error = compile_error(s);
    EXPECT_TRUE(error.starts_with("match.cmdline_re: ")) << error;
    EXPECT_NE(error.find(re), std::string::npos) << error;
  }

  MatchSpec nobody;
  nobody.name = "x";
  nobody.user = "no-such-user-vigil";
  std::string error = compile_error(nobody);
  EXPECT_TRUE(error.starts_with("match.user: no such user")) << error;
  EXPECT_NE(error.find("no-such-user-vigil"), std::string::npos) << error;

  MatchSpec conflict;
  conflict.user = "root";
  conflict.uid = 5;
  error = compile_error(conflict);
  EXPECT_TRUE(error.starts_with("match:")) << error;
}

TEST(ProcMatcherCompile, UserAsNameOrDigits) {
  MatchSpec s;
  s.name = "x";
  s.user = "4242";  // no passwd entry needed
  EXPECT_EQ(compile(s).spec().uid, std::optional<uid_t>(4242));
  s.user = "0";
  EXPECT_EQ(compile(s).spec().uid, std::optional<uid_t>(0));
  s.user = "root";
  EXPECT_EQ(compile(s).spec().uid, std::optional<uid_t>(0));
  s.user = "nobody";
  EXPECT_EQ(compile(s).spec().uid, std::optional<uid_t>(65534));
}

TEST(ProcMatcherCompile, UidOutOfRangeIsNotRoot) {
  // Digits that do not fit uid_t are no uid at all; they must not leave
  // the uid at its initial 0 (root).
  for (const char* user : {"4294967296", "99999999999", "184467440737095516160"}) {
    MatchSpec s;
    s.name = "x";
    s.user = user;
    std::string error;
    auto m = Matcher::compile(s, error);
    EXPECT_FALSE(m) << user << " compiled to uid " << (m && m->spec().uid ? *m->spec().uid : -1);
    EXPECT_TRUE(error.starts_with("match.user: ")) << error;
  }
}

TEST(ProcMatcherCompile, UserAndUidMustAgree) {
  // Both set and different is an error, whether user is a name or digits.
  MatchSpec s;
  s.name = "x";
  s.user = "root";
  s.uid = 5;
  EXPECT_TRUE(compile_error(s).starts_with("match: user 'root' is uid 0, not uid 5"));
  s.user = "7";
  std::string error = compile_error(s);
  EXPECT_TRUE(error.starts_with("match: user '7' is uid 7, not uid 5")) << error;
  s.user = "5";
  EXPECT_EQ(compile(s).spec().uid, std::optional<uid_t>(5));
  s.user = "root";
  s.uid = 0;
  EXPECT_EQ(compile(s).spec().uid, std::optional<uid_t>(0));
}

TEST(ProcMatcherCompile, Flags) {
  MatchSpec s;
  s.name = "x";
  Matcher plain = compile(s);
  EXPECT_TRUE(plain.inherited_by_fork());
  EXPECT_FALSE(plain.uses_parent_watch());
  s.ppid = 1;
  EXPECT_FALSE(compile(s).inherited_by_fork());
  s.ppid.reset();
  s.parent = "web";
  EXPECT_FALSE(compile(s).inherited_by_fork());
  EXPECT_TRUE(compile(s).uses_parent_watch());
}

TEST_F(ProcMatcher, EachKeyAlone) {
  struct Case {
    const char* what;
    MatchSpec spec;
    bool a, b;
  };
  auto spec = [](auto set) {
    MatchSpec s;
    set(s);
    return s;
  };
  const std::string sleep = sleep_binary();
  std::vector<Case> cases = {
      {"name a", spec([&](MatchSpec& s) { s.name = a_name; }), true, false},
      {"name sleep", spec([&](MatchSpec& s) { s.name = "sleep"; }), false, true},
      {"name prefix", spec([&](MatchSpec& s) { s.name = "vta-"; }), false, false},
      {"exe a", spec([&](MatchSpec& s) { s.exe = a_path; }), true, false},
      {"exe sleep", spec([&](MatchSpec& s) { s.exe = sleep; }), false, true},
      {"exe through a symlink", spec([&](MatchSpec& s) { s.exe = "/bin/sleep"; }), false,
       sleep == "/bin/sleep"},
      {"cmdline across args",
       spec([&](MatchSpec& s) { s.cmdline = "alpha-marker-" + tag + " 1000"; }), true, false},
      {"cmdline both", spec([&](MatchSpec& s) { s.cmdline = "-marker-" + tag + " 100"; }), true,
       true},
      {"cmdline none", spec([&](MatchSpec& s) { s.cmdline = "gamma-marker-" + tag; }), false,
       false},
      {"cmdline_re anchored",
       spec([&](MatchSpec& s) { s.cmdline_re = "^alpha-marker-[0-9]+ 1000$"; }), true, false},
      {"cmdline_re both",
       spec([&](MatchSpec& s) { s.cmdline_re = "^(alpha|beta)-marker-" + tag + " 100[01]$"; }),
       true, true},
      {"uid 1234", spec([&](MatchSpec& s) { s.uid = 1234; }), false, true},
      {"uid 0", spec([&](MatchSpec& s) { s.uid = 0; }), true, false},
      {"ppid self", spec([&](MatchSpec& s) { s.ppid = getpid(); }), true, true},
      {"ppid other", spec([&](MatchSpec& s) { s.ppid = getppid(); }), false, false},
      {"cgroup own", spec([&](MatchSpec& s) { s.cgroup = cgroup; }), true, true},
      {"cgroup other", spec([&](MatchSpec& s) { s.cgroup = cgroup + "-not-this-one"; }), false,
       false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(matches(c.spec, a.pid()), c.a) << c.what << " on a";
    EXPECT_EQ(matches(c.spec, b.pid()), c.b) << c.what << " on b";
  }
}

TEST_F(ProcMatcher, UserAloneIsAKey) {
  // `user` is resolved into uid while compiling; a spec with nothing else
  // must still count as having a key.
  MatchSpec s;
  s.user = "root";
  EXPECT_TRUE(matches(s, a.pid()));
  EXPECT_FALSE(matches(s, b.pid()));
  s.user = "1234";
  EXPECT_FALSE(matches(s, a.pid()));
  EXPECT_TRUE(matches(s, b.pid()));
  MatchSpec nobody;
  nobody.user = "no-such-user-vigil";
  std::string error = compile_error(nobody);
  EXPECT_TRUE(error.starts_with("match.user: no such user")) << error;
}

TEST_F(ProcMatcher, AllKeysTogetherAndEachOneWrong) {
  EXPECT_TRUE(matches(full_a(), a.pid()));
  EXPECT_FALSE(matches(full_a(), b.pid()));
  EXPECT_EQ(found_pids(full_a()), std::vector<pid_t>{a.pid()});

  struct Wrong {
    const char* key;
    void (*spoil)(MatchSpec&);
  };
  const Wrong wrongs[] = {
      {"name", [](MatchSpec& s) { s.name = "sleep"; }},
      {"exe", [](MatchSpec& s) { s.exe += "x"; }},
      {"cmdline", [](MatchSpec& s) { s.cmdline += "0"; }},
      {"cmdline_re", [](MatchSpec& s) { s.cmdline_re = "^beta"; }},
      {"user", [](MatchSpec& s) { s.user = "1234"; }},
      {"ppid", [](MatchSpec& s) { s.ppid = 1; }},
      {"cgroup", [](MatchSpec& s) { s.cgroup += "/elsewhere"; }},
      {"kernel", [](MatchSpec& s) { s.kernel = true; }},
      {"parent", [](MatchSpec& s) { s.parent = "web"; }},  // with no parent pid
  };
  for (const Wrong& w : wrongs) {
    MatchSpec s = full_a();
    w.spoil(s);
    EXPECT_FALSE(matches(s, a.pid())) << "only " << w.key << " is wrong";
  }
}

TEST_F(ProcMatcher, ParentKeyUsesTheParentWatchPid) {
  MatchSpec s;
  s.parent = "web";  // another watch's name; its current pid is passed in
  EXPECT_TRUE(matches(s, a.pid(), getpid()));
  EXPECT_FALSE(matches(s, a.pid(), 0)) << "a parent watch without a process matches nothing";
  EXPECT_FALSE(matches(s, a.pid(), getppid()));
  EXPECT_FALSE(matches(s, a.pid(), a.pid()));
  s.name = a_name;
  EXPECT_EQ(found_pids(s, getpid()), std::vector<pid_t>{a.pid()});
  EXPECT_TRUE(found_pids(s, 0).empty());
}

TEST_F(ProcMatcher, NameLongerThanCommMatchesTheTruncatedComm) {
  // 20 characters; the kernel keeps the first 15 as comm.
  std::string name = "vlong-" + tag;
  name.resize(20, 'x');
  std::string path = dir.copy_executable("/bin/sleep", name);
  Child c = spawn({path, "1000"});
  ASSERT_TRUE(c);
  ASSERT_EQ(read_file(proc_path(c.pid(), "comm")), name.substr(0, 15) + "\n");

  MatchSpec s;
  s.name = name;
  EXPECT_TRUE(matches(s, c.pid()));
  EXPECT_EQ(found_pids(s), std::vector<pid_t>{c.pid()});
  s.name = name.substr(0, 15);
  EXPECT_TRUE(matches(s, c.pid()));
  s.name = name.substr(0, 14);
  EXPECT_FALSE(matches(s, c.pid()));
  s.name = "x" + name.substr(1);
  EXPECT_FALSE(matches(s, c.pid()));
}

TEST_F(ProcMatcher, ZombiesNeverMatch) {
  // Keys that stay true of a zombie: its stat, status and cgroup remain.
  MatchSpec s;
  s.name = a_name;
  s.ppid = getpid();
  s.user = "root";
  s.cgroup = cgroup;
  ASSERT_TRUE(matches(s, a.pid()));
  ASSERT_EQ(kill(a.pid(), SIGKILL), 0);
  ASSERT_TRUE(a.wait_zombie());  // exited, not reaped
  ProcReader reader;
  auto st = reader.stat(a.pid());
  ASSERT_TRUE(st);
  ASSERT_EQ(st->state, 'Z');
  ASSERT_EQ(st->comm, a_name);
  ASSERT_EQ(st->ppid, getpid());
  EXPECT_FALSE(matches(s, a.pid()));
  MatchSpec only_ppid;
  only_ppid.ppid = getpid();
  EXPECT_FALSE(matches(only_ppid, a.pid()));
  EXPECT_EQ(found_pids(only_ppid), std::vector<pid_t>{b.pid()});
}

TEST(ProcMatcherKernel, KernelThreadsOnlyWithKernelTrue) {
  MatchSpec s;
  s.name = "kthreadd";
  EXPECT_FALSE(matches(s, 2));
  EXPECT_TRUE(found_pids(s).empty());
  s.kernel = true;
  EXPECT_TRUE(matches(s, 2));
  EXPECT_EQ(found_pids(s), std::vector<pid_t>{2});

  // Every kernel thread but kthreadd is its child.
  MatchSpec children;
  children.ppid = 2;
  EXPECT_TRUE(found_pids(children).empty()) << "kernel threads matched without kernel = true";
  children.kernel = true;
  auto kthreads = found_pids(children);
  EXPECT_GT(kthreads.size(), 5u);
  ProcReader reader;
  for (pid_t pid : kthreads) {
    auto st = reader.stat(pid);
    EXPECT_TRUE(!st || st->kernel_thread()) << pid;
  }

  // A user process is not matched with kernel = true.
  MatchSpec self;
  self.ppid = getppid();
  ASSERT_TRUE(matches(self, getpid()));
  self.kernel = true;
  EXPECT_FALSE(matches(self, getpid()));
}

TEST(ProcMatcherKernel, LongKernelThreadNames) {
  // The kernel shows kernel threads' full names (up to 63 bytes), not a
  // 15-byte comm: "rcu_exp_par_gp_kthread_worker/0" is one. Such a name must
  // match as written. (kworkers are skipped: their names follow the work.)
  ProcReader reader;
  std::optional<ProcStat> kthread;
  PidIterator it;
  while (auto pid = it.next()) {
    auto st = reader.stat(*pid);
    if (st && st->kernel_thread() && st->comm.size() > 15 && !st->comm.starts_with("kworker")) {
      kthread = st;
      break;
    }
  }
  if (!kthread) GTEST_SKIP() << "no kernel thread with a name longer than 15 bytes here";
  MatchSpec s;
  s.name = kthread->comm;
  s.kernel = true;
  EXPECT_TRUE(matches(s, kthread->pid)) << s.name;
  EXPECT_EQ(found_pids(s), std::vector<pid_t>{kthread->pid}) << s.name;
  // A different kernel thread that shares the first 15 bytes is not it.
  s.name = kthread->comm.substr(0, 15);
  EXPECT_FALSE(matches(s, kthread->pid)) << s.name;
}

TEST(ProcFind, OldestFirstNotPidOrderAndExclude) {
  // The younger process gets the lower pid (clone3 with set_tid, as root),
  // so pid order and age order disagree.
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string name = "vto-" + std::to_string(getpid());
  std::string path = dir.copy_executable("/bin/sleep", name);
  auto pid_max = read_file("/proc/sys/kernel/pid_max");
  ASSERT_TRUE(pid_max);
  auto free_pid_below = [](pid_t from) {
    for (pid_t p = from; p > 300; --p)
      if (!proc_exists(p)) return p;
    return pid_t{0};
  };
  pid_t old_pid = free_pid_below(std::stoi(*pid_max) - 100);
  ASSERT_GT(old_pid, 0);
  Child old = spawn({path, "1000"}, {.want_pid = old_pid});
  ASSERT_TRUE(old);
  ASSERT_EQ(old.pid(), old_pid);
  ProcReader reader;
  auto old_st = reader.stat(old.pid());
  ASSERT_TRUE(old_st);
  // The next process must start in a later clock tick (10 ms).
  ASSERT_TRUE(wait_for([&] { return boottime_ticks() > old_st->start_time; }));
  pid_t young_pid = free_pid_below(old_pid - 100);
  ASSERT_GT(young_pid, 0);
  Child young = spawn({path, "1001"}, {.want_pid = young_pid});
  ASSERT_TRUE(young);
  ASSERT_EQ(young.pid(), young_pid);
  auto young_st = reader.stat(young.pid());
  ASSERT_TRUE(young_st);
  ASSERT_GT(young_st->start_time, old_st->start_time);
  ASSERT_LT(young.pid(), old.pid());

  MatchSpec s;
  s.name = name;
  ProcReader r;
  auto found = find_processes(compile(s), r);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].pid, old.pid());
  EXPECT_EQ(found[0].start_time, old_st->start_time);
  EXPECT_EQ(found[1].pid, young.pid());
  EXPECT_EQ(found[1].start_time, young_st->start_time);

  EXPECT_EQ(found_pids(s, 0, {old.pid()}), std::vector<pid_t>{young.pid()});
  EXPECT_EQ(found_pids(s, 0, {young.pid(), 1, getpid()}), std::vector<pid_t>{old.pid()});
  EXPECT_TRUE(found_pids(s, 0, {young.pid(), old.pid()}).empty());
}

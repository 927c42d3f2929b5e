#include "host/supervise/spawn.hpp"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/futex.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "host/core/strings.hpp"
#include "host/proc/proc_stat.hpp"
#include "host/supervise/env_file.hpp"

extern char** environ;

namespace vigil {

namespace {

enum Stage {
  kStageSetup,
  kStageChdir,
  kStageGroups,
  kStageGid,
  kStageUid,
  kStageExec,
  kStageRlimit,
  kStageNice,
  kStageIonice,
  kStageOom,
  kStageNoNewPrivs,
  kStageCount
};
const char* const kStageNames[kStageCount] = {
    "setup", "chdir",  "setgroups", "setgid",        "setuid",      "exec",
    "setrlimit", "nice", "ionice", "oom_score_adj", "no_new_privs"};

// The rule's names of the limits (docs/rules.md), as systemd's Limit*=.
struct RlimitName {
  const char* name;
  int resource;
};
const RlimitName kRlimits[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},
    {"cpu", RLIMIT_CPU},         {"data", RLIMIT_DATA},
    {"fsize", RLIMIT_FSIZE},     {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE},
    {"nice", RLIMIT_NICE},       {"nofile", RLIMIT_NOFILE},
    {"nproc", RLIMIT_NPROC},     {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},
    {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
};

bool executable(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

std::string lookup_env(const ProcessSpec& spec, const char* key) {
  for (const auto& [k, v] : spec.env)
    if (k == key) return v;
  const char* v = getenv(key);
  return v ? v : "";
}

struct Identity {
  bool set = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string home, name;
};

// Resolves user/group to ids in the parent (getpwnam is not safe after fork).
std::optional<std::string> resolve_identity(const ProcessSpec& spec, Identity& id) {
  if (spec.user.empty() && spec.group.empty() && spec.supplementary_groups.empty())
    return std::nullopt;
  id.set = true;
  id.uid = geteuid();
  id.gid = getegid();
  if (!spec.user.empty()) {
    std::vector<char> buf(16384);
    passwd pw, *res = nullptr;
    int rc = getpwnam_r(spec.user.c_str(), &pw, buf.data(), buf.size(), &res);
    if (rc != 0 || !res) return "user: no such user '" + spec.user + "'";
    id.uid = pw.pw_uid;
    id.gid = pw.pw_gid;
    id.home = pw.pw_dir;
    id.name = pw.pw_name;
    int n = 64;
    id.groups.resize(static_cast<size_t>(n));
    if (getgrouplist(pw.pw_name, pw.pw_gid, id.groups.data(), &n) < 0) {
      id.groups.resize(static_cast<size_t>(n));
      getgrouplist(pw.pw_name, pw.pw_gid, id.groups.data(), &n);
    }
    id.groups.resize(static_cast<size_t>(n));
  }
  if (!spec.group.empty()) {
    std::vector<char> buf(16384);
    group gr, *res = nullptr;
    int rc = getgrnam_r(spec.group.c_str(), &gr, buf.data(), buf.size(), &res);
    if (rc != 0 || !res) return "group: no such group '" + spec.group + "'";
    id.gid = gr.gr_gid;
    if (spec.user.empty()) id.groups = {gr.gr_gid};
  }
  // Added to the user's own groups (systemd's SupplementaryGroups=): a
  // name, or a number that is taken as a gid.
  for (const auto& g : spec.supplementary_groups) {
    std::vector<char> buf(16384);
    group gr, *res = nullptr;
    int rc = getgrnam_r(g.c_str(), &gr, buf.data(), buf.size(), &res);
    gid_t gid;
    if (rc == 0 && res) {
      gid = gr.gr_gid;
    } else if (!g.empty() && g.find_first_not_of("0123456789") == std::string::npos) {
      gid = static_cast<gid_t>(std::stoul(g));
    } else {
      return "supplementary_groups: no such group '" + g + "'";
    }
    if (std::find(id.groups.begin(), id.groups.end(), gid) == id.groups.end())
      id.groups.push_back(gid);
  }
  return std::nullopt;
}

// Everything the child needs, prepared before the clone. It owns what
// the child reads: a child that has not exec'd yet may outlive the spec
// it was made from (the loop goes on meanwhile, see Flight).
struct ChildPlan {
  std::string path;
  std::vector<std::string> argv_storage;
  std::vector<char*> argv;
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  std::string cwd;  // empty: vigil's
  Identity id;
  int umask = -1;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  int table_end = 3;                // the child's own table keeps the descriptors below this
  SpawnFailure failure{-1, 0, -1};  // written by the child (plain stores); stage -1: none
  const int* ignored = nullptr;     // signals vigil ignores (SIG_IGN)
  int ignored_count = 0;
  const rlimit* nofile = nullptr;  // restore this RLIMIT_NOFILE (vigil raised its own)
  // The rule's limits and scheduling (ProcessSpec), in the order applied.
  std::vector<ProcessSpec::Limit> limits;
  int nice = ProcessSpec::kInherit;
  int ioprio = -1;
  char oom[16];  // the text written to /proc/self/oom_score_adj
  int oom_len = 0;
  bool no_new_privs = false;
  // What the child reads of the containers above, as plain pointers and
  // counts set by the parent before the clone (seal). The child calls no
  // library function, not even vector::empty: a sanitizer build does not
  // inline those, and an instrumented call takes its frame from the loop
  // thread's fake stack, which the child shares (ASan's
  // stack-use-after-return report during a restart storm).
  struct Raw {
    const char* path = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* cwd = nullptr;  // nullptr: vigil's
    const ProcessSpec::Limit* limits = nullptr;
    size_t limit_count = 0;
    const gid_t* groups = nullptr;
    size_t group_count = 0;
  } raw;
  void seal() {
    raw = {path.c_str(), argv.data(),   envp.data(),      cwd.empty() ? nullptr : cwd.c_str(),
           limits.data(), limits.size(), id.groups.data(), id.groups.size()};
  }
};

// The open-file limit vigil started with, when it raised its own.
rlimit g_child_nofile;
bool g_child_nofile_set = false;

// The signals whose disposition is SIG_IGN, read once: vigil sets its
// dispositions when it starts and never changes them afterwards.
struct IgnoredSignals {
  int list[NSIG];
  int count = 0;
  IgnoredSignals() {
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction sa {};
      if (sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) list[count++] = sig;
    }
  }
};

// The child runs in vigil's address space (CLONE_VM), and without
// CLONE_VFORK alongside it: it must not touch what the loop thread uses.
// glibc's wrappers store errno in the calling thread's TLS, which the
// child shares with the loop, so the child makes its system calls raw:
// each returns -errno and writes nothing but the plan's failure.
#if defined(__x86_64__)
constexpr bool kRawSyscalls = true;
__attribute__((always_inline)) inline long sys(long n, long a = 0, long b = 0, long c = 0,
                                               long d = 0, long e = 0) {
  long ret;
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
               : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
constexpr bool kRawSyscalls = true;
__attribute__((always_inline)) inline long sys(long n, long a = 0, long b = 0, long c = 0,
                                               long d = 0, long e = 0) {
  register long x8 asm("x8") = n;
  register long x0 asm("x0") = a;
  register long x1 asm("x1") = b;
  register long x2 asm("x2") = c;
  register long x3 asm("x3") = d;
  register long x4 asm("x4") = e;
  asm volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory", "cc");
  return x0;
}
#else
// Elsewhere through glibc, and every spawn waits for its exec (the
// loop is suspended, so the shared errno is the child's alone).
constexpr bool kRawSyscalls = false;
inline long sys(long n, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
  long r = syscall(n, a, b, c, d, e);
  return r < 0 ? -errno : r;
}
#endif
template <typename T>
__attribute__((always_inline)) inline long arg(T v) {
  if constexpr (std::is_pointer_v<T>)
    return reinterpret_cast<long>(v);
  else
    return static_cast<long>(v);
}

// The child reports a failed stage here (the parent reads it once the
// kernel has told it the child is gone from its memory, see Flight).
[[noreturn]] __attribute__((no_sanitize("address"))) void child_fail(ChildPlan& plan, int stage,
                                                                    long ret, int detail = -1) {
  plan.failure.stage = stage;
  plan.failure.err = static_cast<int>(-ret);
  plan.failure.detail = detail;
  for (;;) sys(SYS_exit_group, 127);
}

// The rule's limits, scheduling and OOM score, before the identity
// changes: raising a hard limit, a negative nice, the realtime I/O class
// and a lower oom_score_adj all need the privileges setuid drops.
__attribute__((no_sanitize("address"))) void child_resources(ChildPlan& plan) {
  long r;
  for (size_t i = 0; i < plan.raw.limit_count; ++i) {
    const ProcessSpec::Limit& l = plan.raw.limits[i];
    rlimit lim{static_cast<rlim_t>(l.soft), static_cast<rlim_t>(l.hard)};
    if ((r = sys(SYS_prlimit64, 0, l.resource, arg(&lim), 0)) < 0)
      child_fail(plan, kStageRlimit, r, l.resource);
  }
  if (plan.nice != ProcessSpec::kInherit &&
      (r = sys(SYS_setpriority, PRIO_PROCESS, 0, plan.nice)) < 0)
    child_fail(plan, kStageNice, r);
  if (plan.ioprio >= 0 && (r = sys(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, plan.ioprio)) < 0)
    child_fail(plan, kStageIonice, r);
  if (plan.oom_len) {
    // /proc/self is the child's own (a process of its own, not a thread).
    long fd = sys(SYS_openat, AT_FDCWD, arg("/proc/self/oom_score_adj"), O_WRONLY | O_CLOEXEC);
    if (fd < 0) child_fail(plan, kStageOom, fd);
    if ((r = sys(SYS_write, fd, arg(plan.oom), plan.oom_len)) != plan.oom_len)
      child_fail(plan, kStageOom, r < 0 ? r : -EIO);
    sys(SYS_close, fd);
  }
}

// Runs in the cloned child, on its flight's stack, in the parent's
// address space: raw system calls only (see sys), no allocation, nothing
// read that the parent may change (the plan is the flight's own).
__attribute__((no_sanitize("address"))) int child_main(void* arg_) {
  ChildPlan& plan = *static_cast<ChildPlan*>(arg_);
  long r;
  // vigil blocks the signals it reads through signalfd and ignores SIGPIPE;
  // the program must start with neither. exec resets caught signals but
  // keeps ignored ones, so only those are reset. The child has its own copy
  // of the dispositions (no CLONE_SIGHAND): vigil's are not touched. (The
  // kernel's sigaction, all zero: SIG_DFL, no flags, no mask.)
  long dfl[4] = {0, 0, 0, 0};
  for (int i = 0; i < plan.ignored_count; ++i)
    sys(SYS_rt_sigaction, plan.ignored[i], arg(dfl), 0, sizeof(uint64_t));
  uint64_t none = 0;
  sys(SYS_rt_sigprocmask, SIG_SETMASK, arg(&none), 0, sizeof none);
  // The table is still vigil's (CLONE_FILES): first a table of the
  // child's own holding only the slots below the first free one past the
  // stdio slots (a copy of a few dozen entries, not of every pidfd).
  if ((r = sys(SYS_close_range, plan.table_end, ~0U, CLOSE_RANGE_UNSHARE)) < 0)
    child_fail(plan, kStageSetup, r);
  if ((r = sys(SYS_setsid)) < 0) child_fail(plan, kStageSetup, r);
  // dup3, not dup2 (aarch64 has no dup2): the slots are never 0-2.
  if ((r = sys(SYS_dup3, plan.stdin_fd, 0, 0)) < 0 || (r = sys(SYS_dup3, plan.stdout_fd, 1, 0)) < 0 ||
      (r = sys(SYS_dup3, plan.stderr_fd, 2, 0)) < 0)
    child_fail(plan, kStageSetup, r);
  if (plan.umask >= 0) sys(SYS_umask, plan.umask);
  if (plan.nofile) sys(SYS_prlimit64, 0, RLIMIT_NOFILE, arg(plan.nofile), 0);
  if (plan.raw.limit_count > 0 || plan.nice != ProcessSpec::kInherit || plan.ioprio >= 0 ||
      plan.oom_len)
    child_resources(plan);
  if (plan.raw.cwd && (r = sys(SYS_chdir, arg(plan.raw.cwd))) < 0)
    child_fail(plan, kStageChdir, r);
  if (plan.id.set) {
    if (sys(SYS_geteuid) == 0 &&
        (r = sys(SYS_setgroups, static_cast<long>(plan.raw.group_count), arg(plan.raw.groups))) < 0)
      child_fail(plan, kStageGroups, r);
    if ((r = sys(SYS_setresgid, plan.id.gid, plan.id.gid, plan.id.gid)) < 0)
      child_fail(plan, kStageGid, r);
    if ((r = sys(SYS_setresuid, plan.id.uid, plan.id.uid, plan.id.uid)) < 0)
      child_fail(plan, kStageUid, r);
  }
  // Last: it does not stop the setuid above, and from here on no exec
  // gains privileges (setuid bits, file capabilities).
  if (plan.no_new_privs && (r = sys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0)
    child_fail(plan, kStageNoNewPrivs, r);
  // Nothing of vigil's leaks into the program (what the small table has
  // of vigil's low descriptors, and the slots).
  sys(SYS_close_range, 3, ~0U, 0);
  r = sys(SYS_execve, arg(plan.raw.path), arg(plan.raw.argv), arg(plan.raw.envp));
  child_fail(plan, kStageExec, r);
}

// A child between its clone and its exec, and what it uses meanwhile:
// its plan, its stack, and two descriptor slots that hold what become its
// stdout and stderr.
//
// Issue 13: a clone with CLONE_VFORK suspends the loop until the child
// has exec'd, so a burst of restarts (or the launch of 1000 watches)
// started one child at a time, one exec after the other on one core. A
// flight lets the loop go on while the child execs (a spawn with
// wait_exec = false): the kernel clears `word` when the child leaves
// vigil's memory, at its exec or its exit (CLONE_CHILD_CLEARTID), and
// wakes a futex waiter on it. Until then nothing of the flight is touched.
//
// The descriptors. A clone without CLONE_FILES copies vigil's whole
// table (a pidfd per child and more), and the exec then closes every one
// of those copies: 0.7 ms of each spawn at 1000 watches, against 0.2 ms
// at 20. So the child shares the table and unshares only its low end,
// where the slots are: /dev/null for stdin (all flights), and per flight
// the output files dup'd in for this spawn (/dev/null put back when the
// flight lands). The slots are taken at start, so they are low numbers,
// and never 0-2 (dup3 onto the same number fails).
constexpr size_t kFlights = 8;
struct Flight {
  alignas(64) char stack[64 * 1024];
  ChildPlan plan;
  pid_t pid = 0;
  bool busy = false;
  bool asked = false;  // spawn_outcome will be asked for it (wait_exec = false)
  int word = 0;        // 1 from the clone until the child left vigil's memory
  Fd out_slot, err_slot;
};

struct Flights {
  std::array<Flight, kFlights> f;
  Fd null;           // the stdin slot
  int table_end = 0;  // one past the highest slot
  bool ok = true;
  // Outcomes of landed flights that spawn_outcome has not been asked for
  // yet (a pid's newest).
  std::unordered_map<pid_t, std::optional<SpawnFailure>> outcomes;
  size_t next = 0;

  Flights() {
    Fd dev(::open("/dev/null", O_RDWR | O_CLOEXEC));
    null = Fd(dev ? fcntl(dev.get(), F_DUPFD_CLOEXEC, 3) : -1);
    ok = static_cast<bool>(null);
    table_end = null.get() + 1;
    for (Flight& fl : f) {
      fl.out_slot = Fd(null ? fcntl(null.get(), F_DUPFD_CLOEXEC, 3) : -1);
      fl.err_slot = Fd(null ? fcntl(null.get(), F_DUPFD_CLOEXEC, 3) : -1);
      ok = ok && fl.out_slot && fl.err_slot;
      table_end = std::max({table_end, fl.out_slot.get() + 1, fl.err_slot.get() + 1});
    }
  }

  static bool landed(const Flight& fl) { return __atomic_load_n(&fl.word, __ATOMIC_ACQUIRE) == 0; }
  static void wait(Flight& fl) {
    // A shared futex (not _PRIVATE): the kernel's wake at the child's
    // exec or exit is a shared one.
    while (!landed(fl)) syscall(SYS_futex, &fl.word, FUTEX_WAIT, 1, nullptr, nullptr, 0);
  }
  // The flight is done with: its slots back to /dev/null, its outcome
  // kept if it will be asked for, the flight free.
  std::optional<SpawnFailure> land(Flight& fl) {
    std::optional<SpawnFailure> out;
    if (fl.plan.failure.stage >= 0) out = fl.plan.failure;
    dup3(null.get(), fl.out_slot.get(), O_CLOEXEC);
    dup3(null.get(), fl.err_slot.get(), O_CLOEXEC);
    fl.plan = ChildPlan{};
    fl.busy = false;
    return out;
  }
  void collect() {
    for (Flight& fl : f)
      if (fl.busy && landed(fl)) {
        bool asked = fl.asked;
        pid_t pid = fl.pid;
        auto out = land(fl);
        // Asked once each by the supervisor; a bound all the same.
        if (asked && (outcomes.size() < 65536 || outcomes.contains(pid))) outcomes[pid] = out;
      }
  }
  // A free flight: a landed one, else the oldest, once it has landed.
  Flight& take() {
    collect();
    for (size_t i = 0; i < kFlights; ++i) {
      Flight& fl = f[(next + i) % kFlights];
      if (!fl.busy) {
        next = (next + i + 1) % kFlights;
        return fl;
      }
    }
    Flight& oldest = f[next];
    wait(oldest);
    collect();
    next = (next + 1) % kFlights;
    return oldest;
  }
};
Flights g_flights;

// The child's start time as /proc/PID/stat gives it (field 22: clock
// ticks of the boot clock, taken when the kernel created the task), from
// the boot clock read just before and just after the clone: when both
// fall in the same tick, that is the tick. Reading it back from /proc
// cost a fifth of a restart (the open creates the pid's /proc entries,
// which its reaping then tears down); 0 when the clone straddled a tick.
uint64_t start_ticks(const timespec& before, const timespec& after) {
  static const long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0 || 1'000'000'000 % hz != 0) return 0;
  const uint64_t tick = 1'000'000'000 / static_cast<uint64_t>(hz);
  auto ns = [](const timespec& t) {
    return static_cast<uint64_t>(t.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(t.tv_nsec);
  };
  uint64_t a = ns(before) / tick, b = ns(after) / tick;
  return a == b ? a : 0;
}

std::optional<Spawned> fork_plan(ChildPlan&& built, bool wait_exec, std::string& error) {
  if (!g_flights.ok) {
    error = "/dev/null: cannot keep descriptors for the children's stdio";
    return std::nullopt;
  }
  if (!kRawSyscalls) wait_exec = true;
  Flight& fl = g_flights.take();
  fl.plan = std::move(built);
  ChildPlan& plan = fl.plan;
  auto put = [&](const Fd& slot, int src) {
    if (src < 0) return slot.get();  // /dev/null already
    return dup3(src, slot.get(), O_CLOEXEC) < 0 ? -1 : slot.get();
  };
  plan.stdin_fd = g_flights.null.get();
  plan.stdout_fd = put(fl.out_slot, plan.stdout_fd);
  plan.stderr_fd = put(fl.err_slot, plan.stderr_fd);
  plan.table_end = g_flights.table_end;
  if (plan.stdout_fd < 0 || plan.stderr_fd < 0) {
    error = "dup3: " + errno_text(errno);
    g_flights.land(fl);
    return std::nullopt;
  }
  static const IgnoredSignals ignored;
  plan.ignored = ignored.list;
  plan.ignored_count = ignored.count;
  if (g_child_nofile_set) plan.nofile = &g_child_nofile;
  plan.argv.clear();
  for (auto& a : plan.argv_storage) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  plan.envp.clear();
  for (auto& e : plan.env_storage) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  plan.seal();

  // clone(CLONE_VM) instead of fork(): no page tables are copied and no
  // page of the daemon goes copy-on-write, so the daemon's size does not
  // slow its restarts. With CLONE_VFORK (wait_exec) the call returns once
  // the child has exec'd or failed; without it, at once (see Flight).
  // CLONE_PIDFD: the kernel hands back the child's pidfd with it (the pid
  // cannot be recycled before we reap it in any case).
  int pidfd = -1;
  fl.busy = true;
  fl.asked = !wait_exec;
  __atomic_store_n(&fl.word, 1, __ATOMIC_RELEASE);
  timespec before{}, after{};
  clock_gettime(CLOCK_BOOTTIME, &before);
  int flags = CLONE_VM | CLONE_FILES | CLONE_PIDFD | CLONE_CHILD_CLEARTID | SIGCHLD |
              (wait_exec ? CLONE_VFORK : 0);
  pid_t pid = clone(child_main, fl.stack + sizeof fl.stack, flags, &plan, &pidfd, nullptr, &fl.word);
  clock_gettime(CLOCK_BOOTTIME, &after);
  if (pid < 0) {
    error = "clone: " + errno_text(errno);
    g_flights.land(fl);
    return std::nullopt;
  }
  fl.pid = pid;

  Spawned out;
  out.pid = pid;
  out.pidfd = Fd(pidfd);
  if (wait_exec) {
    Flights::wait(fl);  // landed already: CLONE_VFORK returned after the exec
    out.failure = g_flights.land(fl);
  } else {
    out.exec_pending = true;
  }
  if (!out.pidfd) {
    error = "clone: no pidfd";
    kill(pid, SIGKILL);
    return std::nullopt;
  }
  out.start_time = start_ticks(before, after);
  if (!out.start_time) out.start_time = proc_start_time(pid);
  return out;
}

// vigil's environment, then the user's HOME, USER and LOGNAME, then the
// env_file's variables, then the rule's env: each layer wins over those
// before it (docs/rules.md).
std::vector<std::string> build_env(const ProcessSpec* spec, const Identity* id,
                                   const EnvList* file = nullptr) {
  std::vector<std::string> env;
  auto in = [](const EnvList* list, std::string_view key) {
    if (list)
      for (const auto& [k, v] : *list)
        if (k == key) return true;
    return false;
  };
  const EnvList* rule = spec ? &spec->env : nullptr;
  bool ident = id && id->set && !id->name.empty();
  auto overridden = [&](std::string_view entry) {
    size_t eq = entry.find('=');
    std::string_view key = entry.substr(0, eq);
    if (ident && (key == "HOME" || key == "USER" || key == "LOGNAME")) return true;
    return in(rule, key) || in(file, key);
  };
  for (char** e = environ; *e; ++e)
    if (!overridden(*e)) env.emplace_back(*e);
  if (ident) {
    for (const auto& [k, v] : {std::pair<const char*, const std::string&>{"HOME", id->home},
                               {"USER", id->name},
                               {"LOGNAME", id->name}})
      if (!in(rule, k) && !in(file, k)) env.push_back(std::string(k) + "=" + v);
  }
  if (file)
    for (const auto& [k, v] : *file)
      if (!in(rule, k)) env.push_back(k + "=" + v);
  if (rule)
    for (const auto& [k, v] : *rule) env.push_back(k + "=" + v);
  return env;
}

}  // namespace

const char* spawn_stage_name(int stage) {
  return stage >= 0 && stage < kStageCount ? kStageNames[stage] : "unknown";
}

std::string spawn_failure_text(const SpawnFailure& f) {
  std::string stage = spawn_stage_name(f.stage);
  if (f.stage == kStageRlimit) stage += std::string("(") + rlimit_name(f.detail) + ")";
  return stage + ": " + errno_text(f.err);
}

const char* rlimit_name(int resource) {
  for (const auto& r : kRlimits)
    if (r.resource == resource) return r.name;
  return "unknown";
}

int rlimit_by_name(std::string_view name) {
  for (const auto& r : kRlimits)
    if (name == r.name) return r.resource;
  return -1;
}

std::optional<std::string> resolve_program(const std::string& prog, const std::string& cwd,
                                           std::string path) {
  if (prog.find('/') != std::string::npos) {
    std::string p = prog;
    if (p[0] != '/' && !cwd.empty()) p = cwd + "/" + p;
    if (executable(p)) return p;
    return std::nullopt;
  }
  if (path.empty()) path = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (!dir.empty() && executable(dir + "/" + prog)) return dir + "/" + prog;
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string> validate_spec(ProcessSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) return std::string("start: empty command");
  const std::string& prog = spec.argv[0];
  auto resolved = resolve_program(prog, spec.cwd, lookup_env(spec, "PATH"));
  if (!resolved) {
    if (prog.find('/') != std::string::npos)
      return "start: '" + prog + "' is not an executable file";
    return "start: command '" + prog + "' not found in PATH";
  }
  spec.path = *resolved;
  if (!spec.cwd.empty()) {
    struct stat st;
    if (::stat(spec.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return "cwd: '" + spec.cwd + "' is not a directory";
  }
  Identity id;
  if (auto err = resolve_identity(spec, id)) return err;
  if (!spec.pidfile.empty()) {
    struct stat st;
    if (::stat(spec.pidfile.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      return "pidfile: '" + spec.pidfile + "' is a directory";
  }
  if (!spec.env_file.empty()) {
    // Checked now so that `vigil check` shows a bad line; read again at
    // each start.
    EnvList file;
    if (auto err = read_env_file(spec.env_file, file)) return "env_file: " + *err;
  }
  if (!spec.stop_command.empty()) {
    // Resolved now, with the watch's cwd and PATH, so that stop time finds
    // the same program.
    auto cmd = resolve_program(spec.stop_command[0], spec.cwd, lookup_env(spec, "PATH"));
    if (!cmd) return "stop.command: command '" + spec.stop_command[0] + "' not found";
    spec.stop_command[0] = *cmd;
  }
  return std::nullopt;
}

std::optional<Spawned> spawn_process(const ProcessSpec& spec, const SpawnIo& io,
                                     std::string& error) {
  ChildPlan plan;
  if (auto err = resolve_identity(spec, plan.id)) {
    error = *err;
    return std::nullopt;
  }
  plan.path = spec.path.empty() ? spec.argv.at(0) : spec.path;
  plan.argv_storage = spec.argv;
  if (spec.env_file.empty()) {
    plan.env_storage = build_env(&spec, &plan.id);
  } else {
    // Read at each start: an edited file applies at the next restart.
    EnvList file;
    if (auto err = read_env_file(spec.env_file, file)) {
      error = "env_file: " + *err;
      return std::nullopt;
    }
    plan.env_storage = build_env(&spec, &plan.id, &file);
  }
  for (const auto& [k, v] : io.extra_env) plan.env_storage.push_back(k + "=" + v);
  plan.cwd = spec.cwd;
  plan.umask = spec.umask;
  plan.limits = spec.limits;
  plan.nice = spec.nice;
  plan.ioprio = spec.ioprio;
  if (spec.oom_score_adj != ProcessSpec::kInherit)
    plan.oom_len = snprintf(plan.oom, sizeof plan.oom, "%d", spec.oom_score_adj);
  plan.no_new_privs = spec.no_new_privs;
  plan.stdout_fd = io.stdout_fd;
  plan.stderr_fd = io.stderr_fd;
  return fork_plan(std::move(plan), io.wait_exec, error);
}

std::optional<SpawnFailure> spawn_outcome(pid_t pid) {
  for (Flight& fl : g_flights.f)
    if (fl.busy && fl.pid == pid) {
      Flights::wait(fl);
      return g_flights.land(fl);
    }
  auto it = g_flights.outcomes.find(pid);
  if (it == g_flights.outcomes.end()) return std::nullopt;
  auto out = it->second;
  g_flights.outcomes.erase(it);
  return out;
}

void set_child_nofile(const rlimit& limit) {
  g_child_nofile = limit;
  g_child_nofile_set = true;
}

std::optional<Spawned> spawn_command(const std::vector<std::string>& argv, std::string& error,
                                     const std::vector<std::pair<std::string, std::string>>& env,
                                     int output_fd) {
  if (argv.empty()) {
    error = "empty command";
    return std::nullopt;
  }
  const char* env_path = getenv("PATH");
  auto resolved = resolve_program(argv[0], "", env_path ? env_path : "");
  if (!resolved) {
    error = "command '" + argv[0] + "' not found";
    return std::nullopt;
  }
  ChildPlan plan;
  plan.path = *resolved;
  plan.argv_storage = argv;
  ProcessSpec with_env;
  with_env.env = env;
  plan.env_storage = build_env(&with_env, nullptr);
  plan.stdout_fd = plan.stderr_fd = output_fd;
  return fork_plan(std::move(plan), true, error);
}

}  // namespace vigil

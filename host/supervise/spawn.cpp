#include "host/supervise/spawn.hpp"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
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
#include <cstdlib>
#include <cstring>

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

// Everything the child needs, prepared before fork.
struct ChildPlan {
  const char* path;
  std::vector<char*> argv;
  std::vector<std::string> env_storage;
  std::vector<char*> envp;
  const char* cwd = nullptr;
  Identity id;
  int umask = -1;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  int table_end = 3;                    // the child's own table keeps the descriptors below this
  std::optional<SpawnFailure> failure;  // written by the child
  const int* ignored = nullptr;         // signals vigil ignores (SIG_IGN)
  int ignored_count = 0;
  const rlimit* nofile = nullptr;  // restore this RLIMIT_NOFILE (vigil raised its own)
  // The rule's limits and scheduling (ProcessSpec), in the order applied.
  const ProcessSpec::Limit* limits = nullptr;
  size_t limit_count = 0;
  int nice = ProcessSpec::kInherit;
  int ioprio = -1;
  char oom[16];  // the text written to /proc/self/oom_score_adj
  int oom_len = 0;
  bool no_new_privs = false;
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

// The child reports a failed stage here. It shares the parent's memory
// (CLONE_VM) and the parent is suspended until the child execs or exits
// (CLONE_VFORK), so a plain store is seen by the parent when it resumes.
[[noreturn]] void child_fail(ChildPlan& plan, int stage, int detail = -1) {
  plan.failure = SpawnFailure{stage, errno, detail};
  _exit(127);
}

// The rule's limits, scheduling and OOM score, before the identity
// changes: raising a hard limit, a negative nice, the realtime I/O class
// and a lower oom_score_adj all need the privileges setuid drops.
void child_resources(ChildPlan& plan) {
  for (size_t i = 0; i < plan.limit_count; ++i) {
    const ProcessSpec::Limit& l = plan.limits[i];
    rlimit r{static_cast<rlim_t>(l.soft), static_cast<rlim_t>(l.hard)};
    if (setrlimit(static_cast<__rlimit_resource_t>(l.resource), &r) != 0)
      child_fail(plan, kStageRlimit, l.resource);
  }
  if (plan.nice != ProcessSpec::kInherit && setpriority(PRIO_PROCESS, 0, plan.nice) != 0)
    child_fail(plan, kStageNice);
  if (plan.ioprio >= 0 && syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, plan.ioprio) != 0)
    child_fail(plan, kStageIonice);
  if (plan.oom_len) {
    // /proc/self is the child's own (a process of its own, not a thread).
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) child_fail(plan, kStageOom);
    if (write(fd, plan.oom, static_cast<size_t>(plan.oom_len)) != plan.oom_len)
      child_fail(plan, kStageOom);
    close(fd);
  }
}

// Runs in the cloned child, on its own stack, in the parent's address
// space: async-signal-safe calls only, no allocation, and the identity
// changes as raw syscalls (glibc's setxid wrappers would try to
// synchronise threads of the parent).
int child_main(void* arg) {
  ChildPlan& plan = *static_cast<ChildPlan*>(arg);
  // vigil blocks the signals it reads through signalfd and ignores SIGPIPE;
  // the program must start with neither. exec resets caught signals but
  // keeps ignored ones, so only those are reset. The child has its own copy
  // of the dispositions (no CLONE_SIGHAND): vigil's are not touched.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int i = 0; i < plan.ignored_count; ++i) sigaction(plan.ignored[i], &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // The table is still vigil's (CLONE_FILES): first a table of the
  // child's own holding only the slots below the first free one past the
  // stdio slots (a copy of a dozen entries, not of every pidfd).
  if (syscall(SYS_close_range, plan.table_end, ~0U, CLOSE_RANGE_UNSHARE) != 0)
    child_fail(plan, kStageSetup);
  if (setsid() < 0) child_fail(plan, kStageSetup);
  if (dup2(plan.stdin_fd, 0) < 0 || dup2(plan.stdout_fd, 1) < 0 || dup2(plan.stderr_fd, 2) < 0)
    child_fail(plan, kStageSetup);
  if (plan.umask >= 0) ::umask(static_cast<mode_t>(plan.umask));
  if (plan.nofile) setrlimit(RLIMIT_NOFILE, plan.nofile);
  if (plan.limit_count || plan.nice != ProcessSpec::kInherit || plan.ioprio >= 0 || plan.oom_len)
    child_resources(plan);
  if (plan.cwd && chdir(plan.cwd) != 0) child_fail(plan, kStageChdir);
  if (plan.id.set) {
    if (geteuid() == 0 && syscall(SYS_setgroups, plan.id.groups.size(), plan.id.groups.data()) != 0)
      child_fail(plan, kStageGroups);
    if (syscall(SYS_setresgid, plan.id.gid, plan.id.gid, plan.id.gid) != 0)
      child_fail(plan, kStageGid);
    if (syscall(SYS_setresuid, plan.id.uid, plan.id.uid, plan.id.uid) != 0)
      child_fail(plan, kStageUid);
  }
  // Last: it does not stop the setuid above, and from here on no exec
  // gains privileges (setuid bits, file capabilities).
  if (plan.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    child_fail(plan, kStageNoNewPrivs);
  // Nothing of vigil's leaks into the program (what the small table has
  // of vigil's low descriptors, and the slots).
  close_range(3, ~0U, 0);
  execve(plan.path, plan.argv.data(), plan.envp.data());
  child_fail(plan, kStageExec);
}

// The child's stack. The parent is suspended while the child uses it
// (CLONE_VFORK) and the loop is single-threaded, so one is enough.
alignas(64) char g_child_stack[64 * 1024];

// The child's descriptors (issue 13). A clone without CLONE_FILES copies
// vigil's whole descriptor table (a pidfd per child and more), and the
// exec then closes every one of those copies: 0.7 ms of each spawn at
// 1000 watches, against 0.2 ms at 20. So the child shares the table and
// unshares only its low end, where three slots hold what becomes its
// stdin, stdout and stderr: /dev/null, or the output file dup'd into the
// slot for this spawn (and /dev/null put back after it). The slots are
// taken at start, so they are low numbers, and never 0-2 (dup2 onto the
// same number would keep its close-on-exec flag).
struct StdioSlots {
  Fd fd[3];
  int end = 0;  // one past the highest slot
  StdioSlots() {
    Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    for (auto& f : fd) {
      f = Fd(null ? fcntl(null.get(), F_DUPFD_CLOEXEC, 3) : -1);
      end = std::max(end, f.get() + 1);
    }
  }
  bool ok() const { return fd[0] && fd[1] && fd[2]; }
  // The slot holds `src` (or /dev/null for -1); its number, or -1.
  int put(int i, int src) {
    if (src < 0 || src == fd[i].get()) return fd[i].get();
    return dup3(src, fd[i].get(), O_CLOEXEC) < 0 ? -1 : fd[i].get();
  }
  void reset() {
    for (int i = 1; i < 3; ++i) dup3(fd[0].get(), fd[i].get(), O_CLOEXEC);
  }
};
StdioSlots g_slots;

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

std::optional<Spawned> fork_plan(ChildPlan& plan, std::string& error) {
  if (!g_slots.ok()) {
    error = "/dev/null: cannot keep descriptors for the children's stdio";
    return std::nullopt;
  }
  plan.stdin_fd = g_slots.fd[0].get();
  plan.stdout_fd = g_slots.put(1, plan.stdout_fd);
  plan.stderr_fd = g_slots.put(2, plan.stderr_fd);
  plan.table_end = g_slots.end;
  struct Reset {
    ~Reset() { g_slots.reset(); }  // no output file stays open in a slot
  } reset;
  if (plan.stdout_fd < 0 || plan.stderr_fd < 0) {
    error = "dup3: " + errno_text(errno);
    return std::nullopt;
  }
  static const IgnoredSignals ignored;
  plan.ignored = ignored.list;
  plan.ignored_count = ignored.count;
  if (g_child_nofile_set) plan.nofile = &g_child_nofile;
  plan.argv.push_back(nullptr);
  for (auto& e : plan.env_storage) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);

  // clone(CLONE_VM | CLONE_VFORK) instead of fork(): no page tables are
  // copied and no page of the daemon goes copy-on-write, so the daemon's
  // size does not slow its restarts. The call returns once the child has
  // exec'd (or failed and exited), which also tells the exec result at once.
  // CLONE_PIDFD: the kernel hands back the child's pidfd with it (the pid
  // cannot be recycled before we reap it in any case).
  int pidfd = -1;
  timespec before{}, after{};
  clock_gettime(CLOCK_BOOTTIME, &before);
  pid_t pid = clone(child_main, g_child_stack + sizeof g_child_stack,
                    CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | SIGCHLD, &plan, &pidfd);
  clock_gettime(CLOCK_BOOTTIME, &after);
  if (pid < 0) {
    error = "clone: " + errno_text(errno);
    return std::nullopt;
  }

  Spawned out;
  out.pid = pid;
  out.failure = plan.failure;
  out.pidfd = Fd(pidfd);
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
  plan.path = spec.path.empty() ? spec.argv.at(0).c_str() : spec.path.c_str();
  for (const auto& a : spec.argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
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
  plan.cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
  plan.umask = spec.umask;
  plan.limits = spec.limits.data();
  plan.limit_count = spec.limits.size();
  plan.nice = spec.nice;
  plan.ioprio = spec.ioprio;
  if (spec.oom_score_adj != ProcessSpec::kInherit)
    plan.oom_len = snprintf(plan.oom, sizeof plan.oom, "%d", spec.oom_score_adj);
  plan.no_new_privs = spec.no_new_privs;
  plan.stdout_fd = io.stdout_fd;
  plan.stderr_fd = io.stderr_fd;
  return fork_plan(plan, error);
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
  plan.path = resolved->c_str();
  for (const auto& a : argv) plan.argv.push_back(const_cast<char*>(a.c_str()));
  ProcessSpec with_env;
  with_env.env = env;
  plan.env_storage = build_env(&with_env, nullptr);
  plan.stdout_fd = plan.stderr_fd = output_fd;
  return fork_plan(plan, error);
}

}  // namespace vigil

// Helpers for the tests of host/proc: processes the test starts (and always
// kills and reaps), a temp directory, and waiting for a condition with a
// deadline. They read /proc by themselves, not through the code under test.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "host/core/fd.hpp"

namespace vigil::proc_test {

using namespace std::chrono_literals;

// Polls `cond` every millisecond until it holds or `timeout` passes; its
// last value.
inline bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(1ms);
  }
}

// The whole file; nullopt when it cannot be opened or read.
inline std::optional<std::string> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return std::nullopt;
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

inline std::string proc_path(pid_t pid, const char* name) {
  return "/proc/" + std::to_string(pid) + "/" + name;
}

inline bool proc_exists(pid_t pid) {
  return ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0;
}

// Field 3 of /proc/PID/stat, or 0 when the process is gone.
inline char proc_state(pid_t pid) {
  auto text = read_file(proc_path(pid, "stat"));
  if (!text) return 0;
  size_t close = text->rfind(')');
  return close == std::string::npos || close + 2 >= text->size() ? 0 : (*text)[close + 2];
}

// Now in the unit of ProcStat::start_time (clock ticks since boot).
inline uint64_t boottime_ticks() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  auto hz = static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
  return static_cast<uint64_t>(ts.tv_sec) * hz +
         static_cast<uint64_t>(ts.tv_nsec) * hz / 1'000'000'000u;
}

struct Pipe {
  Fd r, w;
  Pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) r.reset(p[0]), w.reset(p[1]);
  }
};

// A process the test started. Going out of scope SIGKILLs and reaps it,
// so no test leaves a process behind, whatever assertion failed.
class Child {
 public:
  Child() = default;
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, 0)) {}
  Child& operator=(Child&& o) noexcept {
    if (this != &o) {
      kill_and_wait();
      pid_ = std::exchange(o.pid_, 0);
    }
    return *this;
  }
  ~Child() { kill_and_wait(); }

  pid_t pid() const { return pid_; }
  explicit operator bool() const { return pid_ > 0; }

  // Waits until it has exited, leaving it a zombie (not reaped).
  bool wait_zombie() {
    siginfo_t si{};
    return pid_ > 0 && ::waitid(P_PID, static_cast<id_t>(pid_), &si, WEXITED | WNOWAIT) == 0;
  }
  // Reaps it (waiting for its exit); the wait status, or -1.
  int wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    pid_t r;
    do r = ::waitpid(pid_, &status, 0);
    while (r < 0 && errno == EINTR);
    pid_ = 0;
    return r < 0 ? -1 : status;
  }
  int kill_and_wait(int sig = SIGKILL) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    return wait();
  }

 private:
  pid_t pid_ = 0;
};

// struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1), spelled
// out to avoid <linux/sched.h> next to glibc's <sched.h>.
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size;
};

// fork(), or with want_pid > 0 clone3() with that exact pid (root in the
// initial pid namespace). -1 and errno on failure.
inline pid_t fork_as(pid_t want_pid) {
  if (want_pid <= 0) return ::fork();
  CloneArgs args{};
  args.exit_signal = SIGCHLD;
  auto tid = static_cast<pid_t>(want_pid);
  args.set_tid = reinterpret_cast<uintptr_t>(&tid);
  args.set_tid_size = 1;
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

inline std::string joined_with_nuls(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += a, out += '\0';
  return out;
}

struct SpawnOptions {
  std::string path = {};                // what to exec; argv[0] when empty
  std::function<bool()> in_child = {};  // runs in the child before exec; false: errno says why
  pid_t want_pid = 0;                   // see fork_as
};

// Forks and execs argv; returns once the exec has completed, i.e.
// /proc/PID/cmdline shows argv (the kernel sets exe and comm before it).
// An empty Child (and a test failure) when it could not.
inline Child spawn(const std::vector<std::string>& argv, const SpawnOptions& opt = {}) {
  std::string path = opt.path.empty() ? argv.at(0) : opt.path;
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  Pipe errors;  // close-on-exec: EOF once the exec succeeded
  pid_t pid = fork_as(opt.want_pid);
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    return Child();
  }
  if (pid == 0) {
    errors.r.reset();
    if (!opt.in_child || opt.in_child()) ::execv(path.c_str(), args.data());
    int e = errno;
    ssize_t ignored = ::write(errors.w.get(), &e, sizeof e);
    (void)ignored;
    ::_exit(127);
  }
  Child child(pid);
  errors.w.reset();
  int e = 0;
  ssize_t n;
  do n = ::read(errors.r.get(), &e, sizeof e);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    ADD_FAILURE() << "setting up or exec'ing " << path << ": " << strerror(e);
    return Child();
  }
  std::string want = joined_with_nuls(argv);
  if (!wait_for([&] { return read_file(proc_path(pid, "cmdline")) == want; })) {
    ADD_FAILURE() << "pid " << pid << " never showed the cmdline of " << path;
    return Child();
  }
  return child;
}

// Forks a child that runs `body` (which should not return; the child
// exits 0 if it does). No exec. With own_group, the child leads a new
// process group (set on both sides of the fork, so it exists at once).
inline Child fork_child(const std::function<void()>& body, bool own_group = false) {
  pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << strerror(errno);
    return Child();
  }
  if (pid == 0) {
    if (own_group) ::setpgid(0, 0);
    body();
    ::_exit(0);
  }
  if (own_group) ::setpgid(pid, pid);
  return Child(pid);
}

// SIGKILLs the process group that `leader` (a child of the test) leads,
// reaps the leader and then every member that was reparented to the test
// (see Subreaper).
inline void kill_group(Child& leader) {
  pid_t pgid = leader.pid();
  if (pgid <= 0) return;
  ::kill(-pgid, SIGKILL);
  leader.wait();  // its children are reparented before it can be reaped
  for (;;) {
    int status;
    if (::waitpid(-pgid, &status, 0) < 0 && errno != EINTR) break;
  }
}

// The test process is a child subreaper while this lives: orphans of the
// processes it starts come back to it, instead of to PID 1 (which reaps
// them late here), and kill_group reaps them.
class Subreaper {
 public:
  Subreaper() {
    ::prctl(PR_GET_CHILD_SUBREAPER, &was_);
    ok_ = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
  }
  ~Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, was_); }
  Subreaper(const Subreaper&) = delete;
  Subreaper& operator=(const Subreaper&) = delete;
  bool ok() const { return ok_; }

 private:
  int was_ = 0;
  bool ok_ = false;
};

// Kills and reaps a process group when it goes out of scope.
class GroupGuard {
 public:
  explicit GroupGuard(Child& leader) : leader_(leader) {}
  ~GroupGuard() { kill_group(leader_); }
  GroupGuard(const GroupGuard&) = delete;
  GroupGuard& operator=(const GroupGuard&) = delete;

 private:
  Child& leader_;
};

// Blocks forever (for forked children that only have to exist).
[[noreturn]] inline void pause_forever() {
  for (;;) ::pause();
}

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/vigil-proc-test.XXXXXX";
    if (::mkdtemp(tmpl)) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Copies `src` to DIR/name as an executable; its path.
  std::string copy_executable(const std::string& src, const std::string& name) const {
    std::string dst = path_ + "/" + name;
    std::filesystem::copy_file(src, dst, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(dst, std::filesystem::perms(0755));
    return dst;
  }

 private:
  std::string path_;
};

// /bin/sleep with symlinks resolved: what /proc/PID/exe shows for it.
inline std::string sleep_binary() {
  return std::filesystem::canonical("/bin/sleep").string();
}

}  // namespace vigil::proc_test

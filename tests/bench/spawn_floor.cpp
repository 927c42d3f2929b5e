// vigil_spawn_floor: what N spawns cost this machine with no supervisor
// work at all (issue 13), the two ways vigil can spawn: one child after
// the other, each waited for until it has exec'd (clone with CLONE_VM |
// CLONE_VFORK), or all of them without waiting (CLONE_VM, the exec
// awaited on the word the kernel clears, CLONE_CHILD_CLEARTID; vigil's
// flights). The time is from the first clone until every child has
// exec'd. Run it by hand:
//
//   build/tests/bench/vigil_spawn_floor PROGRAM [N=1000] [ROUNDS=3]
//
// PROGRAM is run with one argument and killed afterwards (the peer
// harness's bin/bchild, or /bin/sleep).
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

extern char** environ;

namespace {

struct Child {
  alignas(64) char stack[16384];
  int word = 0;
  char* argv[3] = {nullptr, nullptr, nullptr};
};

const char* g_program = nullptr;

// Raw calls only: the child shares the caller's memory and TLS.
int child_main(void* arg) {
  auto* c = static_cast<Child*>(arg);
  syscall(SYS_execve, g_program, c->argv, environ);
  syscall(SYS_exit_group, 127);
  return 0;
}

double now_ms() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

double round_ms(int n, bool wait_each) {
  std::vector<std::unique_ptr<Child>> kids;
  std::vector<pid_t> pids;
  static char arg1[] = "floor";
  double t0 = now_ms();
  for (int i = 0; i < n; ++i) {
    auto c = std::make_unique<Child>();
    c->argv[0] = const_cast<char*>(g_program);
    c->argv[1] = arg1;
    c->word = 1;
    int flags = CLONE_VM | SIGCHLD | (wait_each ? CLONE_VFORK : CLONE_CHILD_CLEARTID);
    pid_t pid = clone(child_main, c->stack + sizeof c->stack, flags, c.get(), nullptr, nullptr,
                      &c->word);
    if (pid < 0) {
      perror("clone");
      exit(1);
    }
    pids.push_back(pid);
    kids.push_back(std::move(c));
  }
  if (!wait_each)
    for (auto& c : kids)
      while (__atomic_load_n(&c->word, __ATOMIC_ACQUIRE) != 0)
        syscall(SYS_futex, &c->word, FUTEX_WAIT, 1, nullptr, nullptr, 0);
  double ms = now_ms() - t0;
  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROGRAM [N=1000] [ROUNDS=3]\n", argv[0]);
    return 2;
  }
  g_program = argv[1];
  int n = argc > 2 ? atoi(argv[2]) : 1000;
  int rounds = argc > 3 ? atoi(argv[3]) : 3;
  for (int r = 0; r < rounds; ++r) {
    double serial = round_ms(n, true);
    double parallel = round_ms(n, false);
    printf("N=%d  each waited for (CLONE_VFORK): %.1f ms   none waited for (flights): %.1f ms\n", n,
           serial, parallel);
  }
  return 0;
}

// ProcEvents on the kernel's proc connector, with processes the test
// starts. The connector reports every process on the machine; the tests
// look only at their own pids. Needs root in the initial network
// namespace, which is where these tests run.
#include "host/proc/proc_events.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "host/core/exit_status.hpp"
#include "tests/unit/proc_test_support.hpp"

using namespace vigil;
using namespace vigil::proc_test;
using Kind = ProcEvent::Kind;

namespace {

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

class ProcEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    ASSERT_TRUE(events.open(error)) << error;
    ASSERT_TRUE(events.available());
    events.set_handler([this](const ProcEvent& e) { log.push_back(e); });
  }

  // Runs the loop until `cond` holds, for at most `timeout`.
  bool run_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 10s) {
    auto deadline = MonoClock::now() + timeout;
    while (!cond()) {
      auto now = MonoClock::now();
      if (now >= deadline) return false;
      loop.run_once(std::min<Duration>(deadline - now, 100ms));
    }
    return true;
  }

  // Index in the log of the first event of this kind for pid, or -1.
  int index_of(Kind kind, pid_t pid) const {
    for (size_t i = 0; i < log.size(); ++i)
      if (log[i].kind == kind && log[i].pid == pid) return static_cast<int>(i);
    return -1;
  }
  bool seen(Kind kind, pid_t pid) const { return index_of(kind, pid) >= 0; }
  size_t count(Kind kind, pid_t pid) const {
    return static_cast<size_t>(std::count_if(log.begin(), log.end(), [&](const ProcEvent& e) {
      return e.kind == kind && e.pid == pid;
    }));
  }
  bool mentions(pid_t id) const {
    return std::any_of(log.begin(), log.end(),
                       [&](const ProcEvent& e) { return e.pid == id || e.parent == id; });
  }

  EventLoop loop;
  ProcEvents events{loop};
  std::vector<ProcEvent> log;
};

}  // namespace

TEST_F(ProcEventsTest, ForkExecExitWithExitCode) {
  uint64_t t0 = monotonic_ns();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", "exit 7", static_cast<char*>(nullptr));
    _exit(127);
  }
  Child child(pid);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Exit, pid); })) << "no exit event for " << pid;
  uint64_t t1 = monotonic_ns();

  int fork_at = index_of(Kind::Fork, pid), exec_at = index_of(Kind::Exec, pid),
      exit_at = index_of(Kind::Exit, pid);
  ASSERT_GE(fork_at, 0);
  ASSERT_GE(exec_at, 0);
  EXPECT_LT(fork_at, exec_at);
  EXPECT_LT(exec_at, exit_at);
  EXPECT_EQ(count(Kind::Fork, pid), 1u);
  EXPECT_EQ(count(Kind::Exec, pid), 1u);
  EXPECT_EQ(count(Kind::Exit, pid), 1u);

  const ProcEvent& f = log[static_cast<size_t>(fork_at)];
  const ProcEvent& x = log[static_cast<size_t>(exec_at)];
  const ProcEvent& e = log[static_cast<size_t>(exit_at)];
  EXPECT_EQ(f.parent, getpid());
  ExitStatus st = ExitStatus::from_wait(e.status);
  EXPECT_EQ(st.code, 7);
  EXPECT_EQ(st.signal, 0);
  // Kernel timestamps on CLOCK_MONOTONIC, in order, within the test's window.
  EXPECT_LE(t0, f.time_ns);
  EXPECT_LE(f.time_ns, x.time_ns);
  EXPECT_LE(x.time_ns, e.time_ns);
  EXPECT_LE(e.time_ns, t1);

  int status = child.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7) << status;
  EXPECT_EQ(events.events(), log.size()) << "every dispatched event is counted";
  EXPECT_EQ(events.overruns(), 0u);
}

TEST_F(ProcEventsTest, ExitBySignal) {
  Child child = spawn({"/bin/sleep", "1000"});
  ASSERT_TRUE(child);
  pid_t pid = child.pid();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Exit, pid); }));
  ExitStatus st = ExitStatus::from_wait(log[static_cast<size_t>(index_of(Kind::Exit, pid))].status);
  EXPECT_EQ(st.signal, SIGKILL);
  EXPECT_EQ(st.code, -1);
  EXPECT_FALSE(st.core);
  int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST_F(ProcEventsTest, CommChange) {
  Pipe ready;
  Child child = fork_child([&] {
    prctl(PR_SET_NAME, "vigil-renamed");
    if (write(ready.w.get(), "r", 1) != 1) _exit(1);
    pause_forever();
  });
  ASSERT_TRUE(child);
  ready.w.reset();
  char c;
  ASSERT_EQ(read(ready.r.get(), &c, 1), 1);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Comm, child.pid()); }));
  EXPECT_EQ(count(Kind::Comm, child.pid()), 1u);
  EXPECT_LT(index_of(Kind::Fork, child.pid()), index_of(Kind::Comm, child.pid()));
  EXPECT_EQ(read_file(proc_path(child.pid(), "comm")), "vigil-renamed\n");
}

TEST_F(ProcEventsTest, ThreadsAreNotProcesses) {
  // A child starts a thread that renames itself and exits, renames itself,
  // then reports the thread's id. Had thread events not been dropped, they
  // would show up as a second Fork, Comm or Exit of the child's pid (the
  // handler sees thread group ids), before the child's own exit.
  Pipe report;
  Child child = fork_child([&] {
    pid_t tid = 0;
    std::thread t([&] {
      tid = gettid();
      prctl(PR_SET_NAME, "vigil-thread");
    });
    t.join();
    // Gone from /proc: its exit has been through exit_notify.
    std::string task = "/proc/self/task/" + std::to_string(tid);
    wait_for([&] { return access(task.c_str(), F_OK) != 0; });
    prctl(PR_SET_NAME, "vigil-leader");
    if (write(report.w.get(), &tid, sizeof tid) != sizeof tid) _exit(1);
    pause_forever();
  });
  ASSERT_TRUE(child);
  report.w.reset();
  pid_t tid = 0;
  ASSERT_EQ(read(report.r.get(), &tid, sizeof tid), static_cast<ssize_t>(sizeof tid));
  ASSERT_NE(tid, child.pid());
  // The leader's rename comes after everything the thread did.
  ASSERT_TRUE(run_until([&] { return seen(Kind::Comm, child.pid()); }));
  EXPECT_EQ(count(Kind::Fork, child.pid()), 1u) << "the thread's creation counted as a fork";
  EXPECT_EQ(count(Kind::Comm, child.pid()), 1u) << "the thread's rename was reported";
  EXPECT_EQ(count(Kind::Exit, child.pid()), 0u) << "the thread's exit was reported";
  EXPECT_FALSE(mentions(tid));

  ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Exit, child.pid()); }));
  EXPECT_EQ(count(Kind::Exit, child.pid()), 1u);
  EXPECT_FALSE(mentions(tid));
}

TEST_F(ProcEventsTest, ForkFromAThreadNamesTheProcessAsParent) {
  pid_t tid = 0, forked = 0;
  std::thread t([&] {
    tid = gettid();
    forked = fork();
    if (forked == 0) _exit(0);
  });
  t.join();
  ASSERT_GT(forked, 0);
  Child reap(forked);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Exit, forked); }));
  int fork_at = index_of(Kind::Fork, forked);
  ASSERT_GE(fork_at, 0);
  EXPECT_EQ(log[static_cast<size_t>(fork_at)].parent, getpid()) << "not the thread id " << tid;
}

TEST(ProcEventsNetns, OpenFailsOutsideTheInitialNetworkNamespace) {
  // In a child, so the test process stays in the initial namespace.
  Pipe result;
  Child child = fork_child([&] {
    std::string report;
    if (unshare(CLONE_NEWNET) != 0) {
      report = "unshare: " + std::string(strerror(errno));
    } else {
      EventLoop loop;
      ProcEvents events(loop);
      std::string error;
      bool ok = events.open(error);
      report = (ok ? "opened" : "refused") + std::string(events.available() ? "+available" : "") +
               ": " + error;
    }
    if (write(result.w.get(), report.data(), report.size()) < 0) _exit(1);
    _exit(0);
  });
  ASSERT_TRUE(child);
  result.w.reset();
  std::string report;
  char buf[512];
  for (ssize_t n; (n = read(result.r.get(), buf, sizeof buf)) > 0;)
    report.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(child.wait(), 0);
  ASSERT_TRUE(report.starts_with("refused: ")) << report;
  EXPECT_GT(report.size(), std::string("refused: ").size()) << "no reason given";
  std::cout << "  in a new network namespace: " << report << "\n";
}

// Nothing wanted: the socket is closed (no event reaches vigil at all);
// wanted again: a new subscription, filtered to what is wanted.
TEST_F(ProcEventsTest, ClosedWhileNothingIsWantedAndFilteredToWhatIs) {
  if (!events.filtering()) GTEST_SKIP() << "this kernel does not filter per listener (< 6.6)";
  uint64_t epoch = events.epoch();
  events.set_events(0);
  EXPECT_FALSE(events.subscribed());
  EXPECT_TRUE(events.available());
  auto exit_with = [&](int code) {
    pid_t pid = fork();
    if (pid == 0) _exit(code);
    Child child(pid);
    child.wait();
    return pid;
  };
  pid_t unheard = exit_with(3);

  events.set_events(ProcEvents::NonzeroExits);
  EXPECT_TRUE(events.subscribed());
  EXPECT_GT(events.epoch(), epoch);
  pid_t zero = exit_with(0), three = exit_with(3);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Exit, three); }));
  EXPECT_FALSE(mentions(unheard)) << "heard while closed";
  EXPECT_FALSE(seen(Kind::Exit, zero)) << "an exit 0 passed the non-zero filter";
  EXPECT_FALSE(seen(Kind::Fork, three)) << "a fork passed the exits-only filter";

  events.set_events(ProcEvents::Exits | ProcEvents::Forks);
  pid_t zero2 = exit_with(0);
  ASSERT_TRUE(run_until([&] { return seen(Kind::Exit, zero2); }));
  EXPECT_TRUE(seen(Kind::Fork, zero2));
  EXPECT_EQ(ProcEvents::names(events.events_wanted()),
            (std::vector<std::string>{"exits", "forks"}));
}

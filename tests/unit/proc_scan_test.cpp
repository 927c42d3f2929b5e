// PidIterator against what /proc shows through readdir(3).
#include "host/proc/proc_scan.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "tests/unit/proc_test_support.hpp"

using namespace vigil;
using namespace vigil::proc_test;

namespace {

// The numeric entries of /proc, through libc's readdir.
std::set<pid_t> readdir_pids() {
  std::set<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long v = strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && v > 0) out.insert(static_cast<pid_t>(v));
  }
  closedir(d);
  return out;
}

struct Scan {
  std::vector<pid_t> pids;
  std::set<pid_t> gone_at_once;  // yielded, but no /proc/PID right after
};

Scan scan() {
  Scan s;
  PidIterator it;
  while (auto pid = it.next()) {
    s.pids.push_back(*pid);
    if (!proc_exists(*pid)) s.gone_at_once.insert(*pid);
  }
  return s;
}

}  // namespace

TEST(ProcPidIterator, FindsEveryProcessOnceAndOnlyProcesses) {
  // Enough processes that /proc does not fit in one 16 KiB getdents64
  // buffer (about 500 entries of 32 bytes each).
  constexpr int kChildren = 600;
  std::vector<Child> children;
  for (int i = 0; i < kChildren; ++i) {
    children.push_back(fork_child(pause_forever));
    ASSERT_TRUE(children.back());
  }
  Child exec_child = spawn({"/bin/sleep", "1000"});
  ASSERT_TRUE(exec_child);

  auto pid_max = read_file("/proc/sys/kernel/pid_max");
  ASSERT_TRUE(pid_max);
  const pid_t limit = std::stoi(*pid_max);

  std::set<pid_t> before = readdir_pids();
  Scan s = scan();
  std::set<pid_t> after = readdir_pids();

  std::set<pid_t> yielded(s.pids.begin(), s.pids.end());
  EXPECT_EQ(yielded.size(), s.pids.size()) << "a pid came twice";
  EXPECT_TRUE(yielded.contains(getpid()));
  EXPECT_TRUE(yielded.contains(1));
  EXPECT_TRUE(yielded.contains(2));
  EXPECT_TRUE(yielded.contains(exec_child.pid()));
  for (const Child& c : children) EXPECT_TRUE(yielded.contains(c.pid())) << c.pid();
  for (pid_t pid : s.pids) {
    EXPECT_GT(pid, 0);
    EXPECT_LT(pid, limit);
    // It existed: in /proc before or after the scan, or right when yielded.
    EXPECT_TRUE(before.contains(pid) || after.contains(pid) || !s.gone_at_once.contains(pid))
        << pid << " never was in /proc";
  }
  // Whatever was there all along was found.
  for (pid_t pid : before) {
    EXPECT_TRUE(!after.contains(pid) || yielded.contains(pid)) << pid << " was missed";
  }
}

TEST(ProcPidIterator, YieldsNoThreadIds) {
  // /proc/TID exists for a thread (it is hidden from the listing, but can be
  // opened); the iterator must not turn it into a process.
  std::mutex m;
  std::condition_variable cv;
  pid_t tid = 0;
  bool done = false;
  std::thread thread([&] {
    std::unique_lock lock(m);
    tid = gettid();
    cv.notify_all();
    cv.wait(lock, [&] { return done; });
  });
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return tid != 0; });
  }
  ASSERT_NE(tid, getpid());
  EXPECT_TRUE(proc_exists(tid)) << "/proc/TID of a live thread can be opened";
  Scan s = scan();
  {
    std::lock_guard lock(m);
    done = true;
  }
  cv.notify_all();
  thread.join();
  std::set<pid_t> yielded(s.pids.begin(), s.pids.end());
  EXPECT_TRUE(yielded.contains(getpid()));
  EXPECT_FALSE(yielded.contains(tid)) << "thread id " << tid << " was yielded as a process";
}

TEST(ProcPidIterator, EndsAndStaysEnded) {
  PidIterator it;
  size_t n = 0;
  while (it.next()) ++n;
  EXPECT_GT(n, 2u);
  EXPECT_FALSE(it.next());
  EXPECT_FALSE(it.next());
}

// DiscoverWindow (identities over a window of scans, and those only an
// exec between two scans showed) and DiscoverScanner's one() and cancel.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>

#include "host/proc/discover_scan.hpp"

namespace vigil {
namespace {

DiscoveredProcess proc(pid_t pid, uint64_t start) {
  DiscoveredProcess p;
  p.pid = pid;
  p.start_time = start;
  p.exe = "/x";
  return p;
}

nlohmann::json by_pid(const DiscoverWindow& w, pid_t pid, uint64_t start) {
  for (const auto& p : w.processes())
    if (p["pid"] == pid && p["start_time"] == start) return p;
  return nullptr;
}

TEST(DiscoverWindow, FirstLastAndSeenByIdentityNotByPid) {
  DiscoverWindow w;
  w.add({proc(10, 100), proc(11, 110)}, 1);
  w.add({proc(10, 100), proc(11, 555)}, 2);  // pid 11 is another process now
  w.add({proc(10, 100)}, 3);
  EXPECT_EQ(w.size(), 3u);
  auto a = by_pid(w, 10, 100);
  EXPECT_EQ(a["first"], 1);
  EXPECT_EQ(a["last"], 3);
  EXPECT_EQ(a["seen"], 3);
  EXPECT_EQ(by_pid(w, 11, 110)["last"], 1);
  EXPECT_EQ(by_pid(w, 11, 555)["first"], 2);
}

TEST(DiscoverWindow, AnIdentityOnlyAnExecShowedIsSeenZeroTimesAndAScanWins) {
  DiscoverWindow w;
  w.add({proc(10, 100)}, 1);
  EXPECT_TRUE(w.add_between(proc(20, 200), 1));   // lived between scans 1 and 2
  EXPECT_FALSE(w.add_between(proc(10, 100), 1));  // a scan saw it already
  EXPECT_FALSE(w.add_between(proc(20, 200), 1));  // known
  EXPECT_TRUE(w.add_between(proc(30, 300), 1));
  w.add({proc(10, 100), proc(30, 300)}, 2);       // the next scan sees 30 too
  auto brief = by_pid(w, 20, 200);
  EXPECT_EQ(brief["first"], 1);
  EXPECT_EQ(brief["last"], 1);
  EXPECT_EQ(brief["seen"], 0);
  auto seen = by_pid(w, 30, 300);
  EXPECT_EQ(seen["first"], 2);
  EXPECT_EQ(seen["last"], 2);
  EXPECT_EQ(seen["seen"], 1);
}

TEST(DiscoverScanner, OneProcessAndACancelledScan) {
  DiscoverScanner s;
  auto me = s.one(getpid());
  ASSERT_TRUE(me);
  EXPECT_EQ(me->pid, getpid());
  EXPECT_FALSE(me->exe.empty());
  EXPECT_TRUE(me->listening.empty()) << "one() reads no socket tables";
  std::atomic<bool> cancel = true;
  ScanOptions o;
  o.cancel = &cancel;
  EXPECT_TRUE(s.scan(o).empty());
  cancel = false;
  EXPECT_FALSE(s.scan(o).empty());
}

}  // namespace
}  // namespace vigil

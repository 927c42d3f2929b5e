#include "host/loop/event_loop.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

using namespace vigil;
using namespace std::chrono_literals;

TEST(EventLoop, TimersFireInDeadlineOrderAndCancelWorks) {
  EventLoop loop;
  std::vector<int> order;
  loop.after(30ms, [&] { order.push_back(3); });
  loop.after(10ms, [&] { order.push_back(1); });
  TimerId cancelled = loop.after(15ms, [&] { order.push_back(99); });
  loop.after(20ms, [&] {
    order.push_back(2);
    loop.stop(7);
  });
  loop.cancel(cancelled);
  EXPECT_EQ(loop.run(), 7);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_FALSE(loop.pending(cancelled));
}

TEST(EventLoop, PostedTasksRunAfterTheCurrentCallback) {
  EventLoop loop;
  std::vector<int> order;
  loop.after(0ms, [&] {
    loop.post([&] { order.push_back(2); });
    order.push_back(1);
  });
  loop.run_once(100ms);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(EventLoop, FdCallbacksAndRemovalInsideCallback) {
  EventLoop loop;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Fd r(p[0]), w(p[1]);
  int calls = 0;
  WatchId id = 0;
  id = loop.add(r.get(), EPOLLIN, [&](uint32_t ev) {
    EXPECT_TRUE(ev & EPOLLIN);
    ++calls;
    loop.remove(id);  // removing itself is allowed
  });
  ASSERT_EQ(write(w.get(), "x", 1), 1);
  loop.run_once(1s);
  loop.run_once(10ms);  // still readable, but no longer watched
  EXPECT_EQ(calls, 1);
}

TEST(EventLoop, IdleLoopWaitsForTheNextTimer) {
  EventLoop loop;
  bool fired = false;
  auto start = MonoClock::now();
  loop.after(50ms, [&] { fired = true; });
  while (!fired) loop.run_once(5s);
  EXPECT_GE(MonoClock::now() - start, 50ms);
}

namespace {
// Work that takes at least a whole slice (the loop's budget per iteration).
void spin_a_slice(EventLoop& loop) {
  MonoTime until = loop.now() + EventLoop::kSlice;
  while (loop.now() < until) {
  }
}
}  // namespace

// The bound on one iteration's work: deferred tasks that do not fit in a
// slice wait for the next iteration, and what became readable meanwhile
// (the control socket, say) is served before them.
TEST(EventLoop, DeferredWorkIsCutIntoSlicesWithTheFdsServedBetween) {
  EventLoop loop;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Fd r(p[0]), w(p[1]);
  std::vector<std::string> order;
  loop.add(r.get(), EPOLLIN, [&](uint32_t) {
    char c;
    ASSERT_EQ(read(r.get(), &c, 1), 1);
    order.push_back("fd");
  });
  loop.defer([&] {
    order.push_back("a");
    loop.post([&] { order.push_back("a posted"); });  // inside a's slice
    ASSERT_EQ(write(w.get(), "x", 1), 1);
    spin_a_slice(loop);
  });
  loop.defer([&] { order.push_back("b"); });
  EXPECT_EQ(loop.deferred(), 2u);
  loop.run_once(0ms);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "a posted"}));
  EXPECT_EQ(loop.stats().slices_cut, 1u);
  EXPECT_EQ(loop.deferred(), 1u);
  // Queued work: the loop does not sleep, even with a long max wait.
  loop.run_once(24h);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "a posted", "fd", "b"}));
  EXPECT_EQ(loop.stats().deferred_run, 2u);
  EXPECT_EQ(loop.stats().deferred_peak, 2u);
  EXPECT_EQ(loop.deferred(), 0u);
}

// A task that defers more does not keep its slice going: the new work is
// for a later iteration.
TEST(EventLoop, WorkDeferredBySliceRunsInALaterIteration) {
  EventLoop loop;
  int runs = 0;
  std::function<void()> again = [&] {
    if (++runs < 3) loop.defer(again);
  };
  loop.defer(again);
  loop.run_once(0ms);
  EXPECT_EQ(runs, 1);
  loop.run_once(0ms);
  loop.run_once(0ms);
  EXPECT_EQ(runs, 3);
}

TEST(EventLoop, DueTimersAreCutIntoSlicesToo) {
  EventLoop loop;
  std::vector<int> fired;
  loop.after(0ms, [&] {
    fired.push_back(1);
    spin_a_slice(loop);
  });
  loop.after(0ms, [&] { fired.push_back(2); });
  loop.run_once(0ms);
  EXPECT_EQ(fired, (std::vector<int>{1}));
  EXPECT_EQ(loop.stats().timers_cut, 1u);
  loop.run_once(24h);  // due already: no wait
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

// Lagging work waits while an fd is ready or work is deferred, then runs
// one task per idle iteration; once its oldest has waited kLag it runs
// even during a storm (it is not starved).
TEST(EventLoop, LaggingWorkWaitsOutABurstButIsNotStarved) {
  EventLoop loop;
  std::vector<std::string> order;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(write(p[1], "x", 1), 1);  // stays readable: a storm that never ends
  loop.add(p[0], EPOLLIN, [&](uint32_t) { order.push_back("fd"); });
  MonoTime start = MonoClock::now();  // before the tasks: they are younger
  loop.lag([&] { order.push_back("lag1"); });
  loop.lag([&] { order.push_back("lag2"); });
  loop.defer([&] { order.push_back("deferred"); });
  loop.run_once(0ms);
  EXPECT_EQ(order, (std::vector<std::string>{"fd", "deferred"}));
  // Still ready: nothing lagged runs before kLag.
  while (MonoClock::now() - start < EventLoop::kLag / 2) loop.run_once(0ms);
  EXPECT_EQ(std::count(order.begin(), order.end(), "lag1"), 0);
  while (MonoClock::now() - start < EventLoop::kLag * 2 &&
         std::count(order.begin(), order.end(), "lag2") == 0)
    loop.run_once(0ms);
  EXPECT_EQ(std::count(order.begin(), order.end(), "lag1"), 1);
  EXPECT_EQ(std::count(order.begin(), order.end(), "lag2"), 1);
  close(p[0]);
  close(p[1]);
}

// Idle (no fd ready, nothing deferred): one lagged task per iteration.
TEST(EventLoop, LaggingWorkRunsOneTaskPerIdleIteration) {
  EventLoop loop;
  int ran = 0;
  loop.lag([&] { ++ran; });
  loop.lag([&] { ++ran; });
  loop.run_once(0ms);
  EXPECT_EQ(ran, 1);
  loop.run_once(0ms);
  EXPECT_EQ(ran, 2);
}

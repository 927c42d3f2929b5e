#include "host/loop/event_loop.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

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

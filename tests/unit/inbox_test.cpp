// LoopInbox: tasks pushed from other threads run on the loop's thread;
// a sender that outlives the inbox is told so and drops its task.
#include "host/loop/inbox.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace vigil {
namespace {

TEST(LoopInbox, TasksFromThreadsRunOnTheLoopThread) {
  EventLoop loop;
  LoopInbox inbox(loop);
  const auto loop_thread = std::this_thread::get_id();
  int ran = 0;
  bool wrong_thread = false;
  constexpr int kThreads = 4, kEach = 250;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([sender = inbox.sender(), &ran, &wrong_thread, loop_thread] {
      for (int i = 0; i < kEach; ++i)
        EXPECT_TRUE(sender.push([&ran, &wrong_thread, loop_thread] {
          ++ran;  // the loop's thread only: no lock
          if (std::this_thread::get_id() != loop_thread) wrong_thread = true;
        }));
    });
  auto deadline = MonoClock::now() + std::chrono::seconds(10);
  while (ran < kThreads * kEach && MonoClock::now() < deadline)
    loop.run_once(std::chrono::milliseconds(100));
  for (auto& t : threads) t.join();
  loop.run_once(std::chrono::milliseconds(0));
  EXPECT_EQ(ran, kThreads * kEach);
  EXPECT_FALSE(wrong_thread);
}

TEST(LoopInbox, ASenderThatOutlivesTheInboxDropsItsTask) {
  EventLoop loop;
  auto inbox = std::make_unique<LoopInbox>(loop);
  LoopInbox::Sender sender = inbox->sender();
  auto carried = std::make_shared<int>(1);
  EXPECT_TRUE(sender.push([carried] {}));  // queued, never run: dropped with the inbox
  inbox.reset();
  EXPECT_EQ(carried.use_count(), 1) << "the inbox's queue was freed with it";
  EXPECT_FALSE(sender.push([carried] {}));
  EXPECT_EQ(carried.use_count(), 1) << "a refused task is dropped at once";
  loop.run_once(std::chrono::milliseconds(0));  // nothing registered any more
}

}  // namespace
}  // namespace vigil

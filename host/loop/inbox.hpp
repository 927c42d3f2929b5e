// LoopInbox: work handed to an EventLoop from other threads. A worker
// thread (the daemon's discovery scans /proc on one: a scan of 10,000
// processes is over a second of CPU) keeps a Sender and push()es tasks;
// they run on the loop's thread, from the callback of one eventfd (owned
// by an Fd) that the loop watches. (The Resolver predates it and keeps
// an eventfd of its own.)
//
// Lifetime: the inbox belongs to the loop's side; a Sender may outlive it
// (a worker still running when the daemon stops or the owner goes). Once
// the inbox is gone, push() answers false and drops the task on the
// pushing thread, so a task must own what it carries (no references into
// the inbox's owner). Nothing ever waits for a worker.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "host/loop/event_loop.hpp"

namespace vigil {

class LoopInbox {
 public:
  using Task = std::function<void()>;
  struct Channel;  // the eventfd and the queue, shared with the senders

  // Throws std::runtime_error when no eventfd can be made.
  explicit LoopInbox(EventLoop& loop);
  ~LoopInbox();
  LoopInbox(const LoopInbox&) = delete;
  LoopInbox& operator=(const LoopInbox&) = delete;

  class Sender {
   public:
    explicit Sender(std::shared_ptr<Channel> c) : channel_(std::move(c)) {}
    // Any thread. False (and `task` dropped here) once the inbox is gone.
    bool push(Task task) const;

   private:
    std::shared_ptr<Channel> channel_;
  };
  Sender sender() const { return Sender(channel_); }

 private:
  void drain();
  EventLoop& loop_;
  std::shared_ptr<Channel> channel_;
  WatchId watch_ = 0;
};

}  // namespace vigil

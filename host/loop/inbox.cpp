#include "host/loop/inbox.hpp"

#include <sys/eventfd.h>

#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "host/core/fd.hpp"
#include "host/core/strings.hpp"

namespace vigil {

struct LoopInbox::Channel {
  std::mutex mutex;
  std::vector<Task> tasks;  // under mutex
  bool closed = false;      // under mutex: the inbox is gone
  Fd efd;                   // written once per push; read by the loop
};

LoopInbox::LoopInbox(EventLoop& loop) : loop_(loop), channel_(std::make_shared<Channel>()) {
  channel_->efd = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!channel_->efd) throw std::runtime_error("eventfd: " + errno_text(errno));
  watch_ = loop_.add(channel_->efd.get(), EPOLLIN, [this](uint32_t) { drain(); });
}

LoopInbox::~LoopInbox() {
  loop_.remove(watch_);
  std::vector<Task> left;
  {
    std::lock_guard lock(channel_->mutex);
    channel_->closed = true;
    left.swap(channel_->tasks);
  }
  // `left` is destroyed here, on the loop's thread, outside the lock.
}

bool LoopInbox::Sender::push(Task task) const {
  {
    std::lock_guard lock(channel_->mutex);
    if (channel_->closed) return false;
    channel_->tasks.push_back(std::move(task));
  }
  uint64_t one = 1;
  // EAGAIN only when the counter is at its maximum: a wakeup is pending.
  [[maybe_unused]] ssize_t n = ::write(channel_->efd.get(), &one, sizeof one);
  return true;
}

void LoopInbox::drain() {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = ::read(channel_->efd.get(), &count, sizeof count);
  std::vector<Task> tasks;
  {
    std::lock_guard lock(channel_->mutex);
    tasks.swap(channel_->tasks);
  }
  for (auto& t : tasks) t();
}

}  // namespace vigil

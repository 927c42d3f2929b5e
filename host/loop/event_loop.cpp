#include "host/loop/event_loop.hpp"

#include <errno.h>
#include <time.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>

namespace vigil {

EventLoop::EventLoop() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (!epfd_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

WatchId EventLoop::add(int fd, uint32_t events, IoCallback cb) {
  WatchId id = next_watch_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl ADD");
  watches_.emplace(id, Watch{fd, std::move(cb)});
  return id;
}

void EventLoop::modify(WatchId id, uint32_t events) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, it->second.fd, &ev);
}

void EventLoop::remove(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  // Events already fetched for this id are dropped by dispatch_io's lookup.
  watches_.erase(it);
}

TimerId EventLoop::after(Duration delay, Task task) {
  return at(now() + delay, std::move(task));
}

TimerId EventLoop::at(MonoTime deadline, Task task) {
  TimerId id = next_timer_++;
  timers_.emplace(id, std::move(task));
  heap_.push({deadline, id});
  return id;
}

void EventLoop::cancel(TimerId id) {
  timers_.erase(id);
}

void EventLoop::post(Task task) {
  posted_.push_back(std::move(task));
}

void EventLoop::defer(Task task) {
  deferred_.push_back(std::move(task));
  stats_.deferred_peak = std::max(stats_.deferred_peak, deferred_.size());
}

void EventLoop::lag(Task task) {
  lagging_.emplace_back(now(), std::move(task));
}

void EventLoop::stop(int code) {
  stopping_ = true;
  exit_code_ = code;
}

int EventLoop::run() {
  while (!stopping_) run_once(std::chrono::hours(24));
  return exit_code_;
}

void EventLoop::run_once(Duration max_wait) {
  // Drop cancelled timers from the top so they don't shorten the wait.
  while (!heap_.empty() && !timers_.contains(heap_.top().id)) heap_.pop();
  Duration wait = max_wait;
  if (!posted_.empty() || !deferred_.empty() || !lagging_.empty()) {
    wait = Duration::zero();
  } else if (!heap_.empty()) {
    wait = std::max(Duration::zero(), std::min(wait, heap_.top().deadline - now()));
  }
  timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000),
              static_cast<long>(wait.count() % 1'000'000'000)};
  epoll_event events[64];
  int n = epoll_pwait2(epfd_.get(), events, 64, &ts, nullptr);
  if (n < 0 && errno != EINTR)
    throw std::system_error(errno, std::generic_category(), "epoll_pwait2");
  MonoTime start = now();
  ++stats_.iterations;
  if (n > 0) dispatch_io(events, n);
  run_timers();
  run_posted();
  run_deferred();
  run_lagging(n == 0);
  worst_iteration_ = std::max(worst_iteration_, Duration(now() - start));
}

void EventLoop::dispatch_io(const epoll_event* events, int n) {
  for (int i = 0; i < n; ++i) {
    // A copy: epoll_event is packed on x86-64, so data.u64 is misaligned
    // and find(const uint64_t&) must not bind to it (UBSan's finding).
    const uint64_t id = events[i].data.u64;
    auto it = watches_.find(id);
    if (it == watches_.end()) continue;
    // Copy: the callback may remove its own watch.
    IoCallback cb = it->second.cb;
    cb(events[i].events);
    run_posted();
  }
}

void EventLoop::run_timers() {
  MonoTime t = now();
  MonoTime until = t + kSlice;
  bool first = true;
  while (!heap_.empty() && heap_.top().deadline <= t) {
    if (!first && now() >= until) {
      // The rest are due too: the next iteration runs them, after the
      // fds (its wait is zero, their deadlines have passed).
      if (timers_.contains(heap_.top().id)) ++stats_.timers_cut;
      return;
    }
    TimerEntry top = heap_.top();
    heap_.pop();
    auto it = timers_.find(top.id);
    if (it == timers_.end()) continue;
    Task task = std::move(it->second);
    timers_.erase(it);
    first = false;
    task();
    run_posted();
  }
}

void EventLoop::run_deferred() {
  if (deferred_.empty()) return;
  MonoTime until = now() + kSlice;
  // Only what was queued before this slice: a task that defers more
  // does not keep the loop from its fds.
  size_t n = deferred_.size();
  for (size_t i = 0; i < n && !deferred_.empty(); ++i) {
    if (i > 0 && now() >= until) break;
    Task task = std::move(deferred_.front());
    deferred_.pop_front();
    ++stats_.deferred_run;
    task();
    run_posted();
  }
  if (!deferred_.empty()) ++stats_.slices_cut;
}

void EventLoop::run_lagging(bool idle) {
  if (lagging_.empty()) return;
  // Idle: one task, then a look at the fds again (a burst of exits is
  // still arriving while its first ones are written up). Overdue: a slice.
  bool overdue = now() - lagging_.front().first >= kLag;
  if (!overdue && !(idle && deferred_.empty())) return;
  // While fds are ready or deferred work waits (a storm of exits), a
  // fifth of a slice: the restarts go first, the write-ups are not starved.
  MonoTime until = now() + (idle && deferred_.empty() ? kSlice : kSlice / 5);
  size_t n = overdue ? lagging_.size() : 1;
  for (size_t i = 0; i < n && !lagging_.empty(); ++i) {
    if (i > 0 && now() >= until) break;
    Task task = std::move(lagging_.front().second);
    lagging_.pop_front();
    task();
    run_posted();
  }
}

void EventLoop::run_posted() {
  while (!posted_.empty()) {
    std::vector<Task> batch;
    batch.swap(posted_);
    for (auto& task : batch) task();
  }
}

}  // namespace vigil

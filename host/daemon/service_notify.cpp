#include "host/daemon/service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "host/core/clock.hpp"
#include "host/core/strings.hpp"

namespace vigil {

namespace {
std::string take_env(const char* name) {
  const char* v = getenv(name);
  std::string s = v ? v : "";
  unsetenv(name);
  return s;
}

// "/path" or "@abstract" into a sockaddr; false when it is neither (e.g.
// systemd's "vsock:" addresses) or too long.
bool notify_address(const std::string& a, sockaddr_un& sa, socklen_t& len) {
  sa = {};
  sa.sun_family = AF_UNIX;
  if (a.size() < 2 || a.size() > sizeof(sa.sun_path) - 1 || (a[0] != '/' && a[0] != '@'))
    return false;
  memcpy(sa.sun_path, a.data(), a.size());
  if (a[0] == '@') sa.sun_path[0] = '\0';
  // An abstract name is exactly its bytes, a path ends at its NUL.
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.size() + (a[0] == '/'));
  return true;
}
}  // namespace

std::unique_ptr<ServiceNotifier> ServiceNotifier::from_environment(EventLoop& loop,
                                                                   std::string& error) {
  std::string address = take_env("NOTIFY_SOCKET");
  std::string usec = take_env("WATCHDOG_USEC");
  std::string wpid = take_env("WATCHDOG_PID");
  if (address.empty()) return nullptr;
  sockaddr_un sa;
  socklen_t len;
  if (!notify_address(address, sa, len)) {
    error = "NOTIFY_SOCKET=" + address + ": not a path or an @abstract socket name";
    return nullptr;
  }
  // The watchdog is ours when WATCHDOG_PID is unset or names us (it is
  // meant for the main process only: a forked child must not ping).
  double watchdog = 0;
  char* end = nullptr;
  unsigned long long us = usec.empty() ? 0 : strtoull(usec.c_str(), &end, 10);
  bool ours = wpid.empty() || wpid == std::to_string(getpid());
  if (us > 0 && end && *end == '\0' && ours) watchdog = static_cast<double>(us) / 2e6;
  return std::make_unique<ServiceNotifier>(loop, address, watchdog);
}

ServiceNotifier::ServiceNotifier(EventLoop& loop, std::string address, double watchdog_seconds)
    : loop_(loop), address_(std::move(address)), watchdog_(watchdog_seconds) {
  sock_ = Fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sock_) socket_error_ = "socket: " + errno_text(errno);
}

ServiceNotifier::~ServiceNotifier() {
  if (watchdog_timer_) loop_.cancel(watchdog_timer_);
  if (status_timer_) loop_.cancel(status_timer_);
}

void ServiceNotifier::send(const std::string& datagram) {
  auto fail = [this](const std::string& e) {
    if (failure_logged_) return;
    failure_logged_ = true;
    if (failure_log_) failure_log_(e);
  };
  sockaddr_un sa;
  socklen_t len;
  if (!sock_) return fail(socket_error_);
  if (!notify_address(address_, sa, len)) return fail("bad address");
  // Not connected: a service manager that re-executed itself (systemctl
  // daemon-reexec) binds the address again, and the next datagram finds it.
  if (::sendto(sock_.get(), datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
               reinterpret_cast<sockaddr*>(&sa), len) < 0)
    fail(errno_text(errno));
}

void ServiceNotifier::ready() {
  if (ready_ || stopping_) return;
  ready_ = true;
  last_status_ = summary_ ? summary_() : "";
  last_status_sent_ = loop_.now();
  send("READY=1\nSTATUS=" + last_status_);
  if (watchdog_ > 0) {
    send("WATCHDOG=1");
    watchdog_timer_ = loop_.after(from_seconds(watchdog_), [this] { ping(); });
  }
}

// From the event loop itself: a loop that is stuck pings no more, and the
// service manager restarts vigil after WatchdogSec.
void ServiceNotifier::ping() {
  watchdog_timer_ = 0;
  if (stopping_) return;
  send("WATCHDOG=1");
  watchdog_timer_ = loop_.after(from_seconds(watchdog_), [this] { ping(); });
}

void ServiceNotifier::reloading() {
  if (!ready_ || stopping_) return;
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec =
      static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void ServiceNotifier::reloaded() {
  if (!ready_ || stopping_) return;
  last_status_ = summary_ ? summary_() : "";
  last_status_sent_ = loop_.now();
  send("READY=1\nSTATUS=" + last_status_);
}

void ServiceNotifier::stopping() {
  if (stopping_) return;
  stopping_ = true;
  if (watchdog_timer_) loop_.cancel(watchdog_timer_);
  if (status_timer_) loop_.cancel(status_timer_);
  watchdog_timer_ = status_timer_ = 0;
  send("STOPPING=1\nSTATUS=stopping");
}

void ServiceNotifier::changed() {
  if (!ready_ || stopping_ || status_timer_ || !summary_) return;
  // Not from inside the caller (an event being emitted): from a timer, at
  // most once per interval, so a storm of restarts costs one line a second.
  MonoTime due = last_status_sent_ + kStatusInterval;
  status_timer_ = loop_.at(std::max(due, loop_.now()), [this] {
    status_timer_ = 0;
    send_status();
  });
}

void ServiceNotifier::send_status() {
  std::string s = summary_();
  if (s == last_status_) return;
  last_status_ = std::move(s);
  last_status_sent_ = loop_.now();
  send("STATUS=" + last_status_);
}

}  // namespace vigil

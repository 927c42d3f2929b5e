// ServiceNotifier: the sending end of the sd_notify protocol, for vigil
// itself run by systemd (Type=notify). host/probe/notify.hpp is the
// receiving end, for the programs vigil supervises.
//
// The protocol (systemd's sd_notify(3), documented as stable and meant to
// be reimplemented): one datagram of newline-separated KEY=VALUE lines to
// the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for an
// abstract address). It is sent with a plain sendto() rather than through
// libsystemd: linking libsystemd costs ~0.9 MB of PSS (it and the six
// libraries it pulls in), a sixth of the daemon's 5.8 MB at 1000 watches,
// for about a hundred lines.
//
// Never in the daemon's way: the socket is nonblocking, a datagram that
// cannot be sent is dropped, and only the first failure is logged.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

class ServiceNotifier {
 public:
  // Told once, the first time a datagram cannot be sent.
  using FailureLog = std::function<void(const std::string& error)>;
  // The one-line STATUS= text ("12 watches: 11 running, 1 backoff").
  using Summary = std::function<std::string()>;

  // From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, which are then
  // removed from the environment: the programs vigil starts must not talk
  // to vigil's service manager. nullptr when NOTIFY_SOCKET is not set.
  // `error` says why an address is set but cannot be used (then nullptr).
  static std::unique_ptr<ServiceNotifier> from_environment(EventLoop& loop, std::string& error);

  ServiceNotifier(EventLoop& loop, std::string address, double watchdog_seconds);
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  void set_failure_log(FailureLog f) { failure_log_ = std::move(f); }
  void set_summary(Summary s) { summary_ = std::move(s); }

  // READY=1 with the first STATUS=; starts the watchdog pings.
  void ready();
  // RELOADING=1 (with MONOTONIC_USEC=, as Type=notify-reload wants), then
  // READY=1 once the reload is over, whatever its outcome: a rejected
  // reload leaves the old rules running. Both only once ready() was sent.
  void reloading();
  void reloaded();
  // STOPPING=1; no more STATUS= or WATCHDOG=1 after it.
  void stopping();
  // Something a STATUS= line shows may have changed: a new line is sent
  // when it differs, at most once per kStatusInterval.
  void changed();

  const std::string& address() const { return address_; }
  double watchdog_interval() const { return watchdog_; }  // seconds between pings; 0: none

  static constexpr Duration kStatusInterval = std::chrono::seconds(1);

 private:
  void send(const std::string& datagram);
  void ping();
  void send_status();

  EventLoop& loop_;
  std::string address_;
  double watchdog_ = 0;
  Fd sock_;
  std::string socket_error_;
  FailureLog failure_log_;
  Summary summary_;
  bool ready_ = false;
  bool stopping_ = false;
  bool failure_logged_ = false;
  std::string last_status_;
  TimerId watchdog_timer_ = 0;
  TimerId status_timer_ = 0;
  MonoTime last_status_sent_{};
};

}  // namespace vigil

// NotifySocket: the receiving end of the sd_notify protocol. Processes
// vigil starts find its address in NOTIFY_SOCKET and send datagrams of
// newline-separated KEY=VALUE lines (READY=1, WATCHDOG=1, STATUS=...,
// WATCHDOG_USEC=..., STOPPING=1, ...). The kernel attaches the sender's
// credentials (SO_PASSCRED), so a message is attributed by pid and cannot
// be forged for another process.
//
// File descriptors that come with a message (sd_notify's BARRIER=1 pipe)
// are closed only after the handler ran: a sender that waits for the
// barrier (systemd-notify without --no-block) is still there while its
// message is attributed.
//
// The address is abstract (no file, no permissions in the way of a child
// that dropped privileges) and derived from the state directory, so a
// vigil restarted on the same state directory hears the processes the
// previous one started.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

struct NotifyMessage {
  pid_t pid = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // in order
  // The sender's pidfd (SCM_PIDFD, Linux 6.5+), -1 without: it names the
  // very process that sent, even once that process is gone. Borrowed:
  // valid during the handler only.
  int pidfd = -1;
  // Not empty: the datagram cannot be used (no credentials, too long);
  // the handler gets it to say so.
  std::string problem;
  const std::string* get(std::string_view key) const;
};

// Parses one datagram; lines without '=' are ignored.
NotifyMessage parse_notify(pid_t pid, std::string_view datagram);

class NotifySocket {
 public:
  using Handler = std::function<void(const NotifyMessage&)>;

  explicit NotifySocket(EventLoop& loop);
  ~NotifySocket();
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  // Binds "@vigil-notify<state_dir>" (hashed when too long). false and
  // `error` when it cannot.
  bool open(const std::string& state_dir, std::string& error);
  bool available() const { return sock_.valid(); }
  // The value for NOTIFY_SOCKET ("@..." for an abstract address).
  const std::string& address() const { return address_; }
  void set_handler(Handler h) { handler_ = std::move(h); }

  uint64_t received() const { return received_; }

 private:
  void read_all();

  EventLoop& loop_;
  Fd sock_;
  WatchId watch_ = 0;
  std::string address_;
  Handler handler_;
  uint64_t received_ = 0;
};

}  // namespace vigil

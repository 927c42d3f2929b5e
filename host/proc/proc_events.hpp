// Kernel process events through the netlink proc connector (CN_PROC):
// fork, exec, exit (with the exit status) and comm changes of every
// process on the machine, as they happen. Vigil uses them to see a count
// go over its limit at fork time, to find a process that a restart script
// started the moment it execs, and to learn the exit status of processes
// it did not start (a pidfd only says that they died).
//
// The connector exists only in the initial network namespace, and before
// Linux 6.6 needs CAP_NET_ADMIN; open() says why when it cannot be used
// and vigil falls back to scanning /proc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

struct ProcEvent {
  enum class Kind { Fork, Exec, Exit, Comm };
  Kind kind = Kind::Exec;
  pid_t pid = 0;         // the process (thread group id)
  pid_t parent = 0;      // Fork: the parent process
  int status = 0;        // Exit: wait status (code << 8 | signal, 0x80 core)
  uint64_t time_ns = 0;  // kernel timestamp (CLOCK_MONOTONIC)
};

class ProcEvents {
 public:
  using Handler = std::function<void(const ProcEvent&)>;

  explicit ProcEvents(EventLoop& loop) : loop_(loop) {}
  ~ProcEvents();
  ProcEvents(const ProcEvents&) = delete;
  ProcEvents& operator=(const ProcEvents&) = delete;

  // Subscribes and waits (briefly) for the kernel's acknowledgement.
  // false and `error` when the connector cannot be used here.
  bool open(std::string& error);
  bool available() const { return sock_.valid(); }

  // What vigil needs to hear. Since Linux 6.6 the kernel filters per
  // listener, so an idle vigil is not woken by every fork and exec on a
  // busy machine: with NonzeroExits it hears only exits with a non-zero
  // status (a process whose exit it does not hear exited 0). Older
  // kernels deliver everything whatever is asked (filtering() is false).
  enum class Interest { NonzeroExits, All };
  void set_interest(Interest i);
  Interest interest() const { return interest_; }
  bool filtering() const { return filtering_; }

  // Thread-level events are dropped: handlers see processes only.
  void set_handler(Handler h) { handler_ = std::move(h); }
  // Events were lost (the receive buffer overran): whoever relies on them
  // must rescan /proc.
  void set_overrun_handler(std::function<void()> h) { overrun_ = std::move(h); }

  // Reads and dispatches whatever the kernel has queued. The exit event of
  // a process is queued before its pidfd turns readable, so draining first
  // makes its exit status known to a pidfd callback.
  void drain();

  uint64_t events() const { return events_; }
  uint64_t overruns() const { return overruns_; }

 private:
  bool send_op(int op, std::string& error, int filter = -1);
  bool wait_ack(std::string& error, int timeout_ms);

  EventLoop& loop_;
  Fd sock_;
  WatchId watch_ = 0;
  Handler handler_;
  std::function<void()> overrun_;
  uint64_t events_ = 0;
  uint64_t overruns_ = 0;
  bool draining_ = false;
  bool filtering_ = false;
  Interest interest_ = Interest::All;
};

}  // namespace vigil

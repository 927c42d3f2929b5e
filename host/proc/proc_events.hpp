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
#include <vector>

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

  // Finds out whether the connector can be used here: subscribes and
  // waits (briefly) for the kernel's acknowledgement, and learns whether
  // the kernel filters per listener. false and `error` when it cannot be
  // used. The socket stays open, hearing everything, until set_events()
  // says what is needed (0 closes it).
  bool open(std::string& error);
  // The connector works here (open() succeeded), subscribed or not.
  bool available() const { return usable_; }
  // A socket is open and subscribed now.
  bool subscribed() const { return sock_.valid(); }

  // What vigil needs to hear, as a set of these bits. Since Linux 6.6 the
  // kernel filters per listener, so vigil is woken only by the events it
  // asked for: with NonzeroExits alone it hears only exits with a
  // non-zero status (a process whose exit it does not hear exited 0).
  // Older kernels deliver everything whatever is asked (filtering() is
  // false). 0: nothing is needed, and the socket is closed, so that an
  // idle vigil is not woken by what other software on the machine does;
  // a later non-zero set opens a new one.
  enum : unsigned { NonzeroExits = 1, Exits = 2, Forks = 4, Execs = 8 /* and comm changes */ };
  void set_events(unsigned events);
  unsigned events_wanted() const { return wanted_; }
  bool filtering() const { return filtering_; }
  // Counts subscriptions: a process adopted under one subscription whose
  // exit came after it was closed was not heard, whatever it was.
  uint64_t epoch() const { return epoch_; }
  // The names of the bits in `events`, for status.
  static std::vector<std::string> names(unsigned events);

  // Thread-level events are dropped: handlers see processes only.
  void set_handler(Handler h) { handler_ = std::move(h); }
  // Events were lost (the receive buffer overran): whoever relies on them
  // must rescan /proc.
  void set_overrun_handler(std::function<void()> h) { overrun_ = std::move(h); }

  // Reads and dispatches whatever the kernel has queued. The exit event of
  // a process is queued before its pidfd turns readable, so draining first
  // makes its exit status known to a pidfd callback.
  void drain();

  uint64_t events() const { return events_; }  // dispatched, since the start
  uint64_t overruns() const { return overruns_; }

 private:
  bool send_op(int op, std::string& error, int filter = -1);
  bool wait_ack(std::string& error, int timeout_ms);
  bool subscribe(std::string& error);
  void close_now();
  uint32_t kernel_mask() const;

  EventLoop& loop_;
  Fd sock_;
  WatchId watch_ = 0;
  Handler handler_;
  std::function<void()> overrun_;
  uint64_t events_ = 0;
  uint64_t overruns_ = 0;
  uint64_t epoch_ = 0;
  bool draining_ = false;
  bool close_after_drain_ = false;
  bool usable_ = false;
  bool filtering_ = false;
  unsigned wanted_ = NonzeroExits | Exits | Forks | Execs;
};

}  // namespace vigil

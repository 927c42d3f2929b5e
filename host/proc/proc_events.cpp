#include "host/proc/proc_events.hpp"

#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "host/core/strings.hpp"

namespace vigil {

ProcEvents::~ProcEvents() {
  close_now();
}

// Tells the kernel this listener is gone (it counts listeners, and sends
// no events at all while there are none), then closes the socket.
void ProcEvents::close_now() {
  if (watch_) loop_.remove(watch_);
  watch_ = 0;
  if (sock_) {
    std::string ignored;
    send_op(PROC_CN_MCAST_IGNORE, ignored);
  }
  sock_.reset();
  close_after_drain_ = false;
}

namespace {

// The kernel's filtered subscription (Linux 6.6, <linux/cn_proc.h> of
// newer headers): the operation and a mask of events to deliver.
struct ProcInput {
  uint32_t mcast_op;
  uint32_t event_type;
};
constexpr uint32_t kEventNonzeroExit = 0x20000000;  // PROC_EVENT_NONZERO_EXIT
constexpr uint32_t kEventAll = 0x1 | 0x2 | 0x4 | 0x40 | 0x80 | 0x100 | 0x200 | kEventNonzeroExit |
                               0x40000000 | 0x80000000;  // PROC_EVENT_ALL

}  // namespace

bool ProcEvents::send_op(int op, std::string& error, int filter) {
  alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(cn_msg) + sizeof(ProcInput))] = {};
  auto* nh = reinterpret_cast<nlmsghdr*>(buf);
  auto* cn = reinterpret_cast<cn_msg*>(NLMSG_DATA(nh));
  cn->id.idx = CN_IDX_PROC;
  cn->id.val = CN_VAL_PROC;
  if (filter >= 0) {
    ProcInput in{static_cast<uint32_t>(op), static_cast<uint32_t>(filter)};
    cn->len = sizeof in;
    memcpy(cn->data, &in, sizeof in);
  } else {
    auto mop = static_cast<proc_cn_mcast_op>(op);
    cn->len = sizeof mop;
    memcpy(cn->data, &mop, sizeof mop);
  }
  nh->nlmsg_len = NLMSG_LENGTH(sizeof(cn_msg) + cn->len);
  nh->nlmsg_type = NLMSG_DONE;
  if (::send(sock_.get(), buf, nh->nlmsg_len, 0) < 0) {
    error = "sending the subscription: " + errno_text(errno);
    return false;
  }
  return true;
}

namespace {

// The event of one netlink message, copied out: it sits at offset 36
// (nlmsghdr 16 + cn_msg 20), misaligned for its 64-bit timestamp, so it
// must not be read in place (UBSan's finding); and a message shorter than
// an event is not read past its end. False when it holds no event.
bool event_of(const nlmsghdr* nh, proc_event& ev) {
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(cn_msg))) return false;
  const auto* cn = reinterpret_cast<const cn_msg*>(NLMSG_DATA(nh));
  size_t avail = std::min<size_t>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(cn_msg)), cn->len);
  if (avail < offsetof(proc_event, event_data)) return false;
  ev = proc_event{};
  memcpy(&ev, cn->data, std::min(avail, sizeof ev));
  return true;
}

}  // namespace

// Waits for the kernel's PROC_EVENT_NONE acknowledgement; other events
// that arrive meanwhile are dropped (nobody listens yet).
bool ProcEvents::wait_ack(std::string& error, int timeout_ms) {
  alignas(nlmsghdr) char buf[8192];
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    pollfd p{sock_.get(), POLLIN, 0};
    if (::poll(&p, 1, 10) <= 0) continue;
    ssize_t n = ::recv(sock_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS) continue;
      error = "netlink receive: " + errno_text(errno);
      return false;
    }
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
      proc_event event;
      if (!event_of(nh, event)) continue;
      const proc_event* ev = &event;
      if (ev->what != proc_event::PROC_EVENT_NONE) continue;
      if (ev->event_data.ack.err != 0) {
        error = "subscription refused: " + errno_text(static_cast<int>(ev->event_data.ack.err));
        return false;
      }
      return true;
    }
  }
  error = "no acknowledgement from the kernel (not in the initial network namespace?)";
  return false;
}

// A bound socket with a large receive buffer, subscribed: with the
// kernel's filter when it has one (then only the events wanted), else to
// everything. No acknowledgement is waited for here: the kernel counts
// the listener before send() returns, and drain() skips the
// acknowledgement when it comes.
bool ProcEvents::subscribe(std::string& error) {
  Fd s(::socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR));
  if (!s) {
    error = "netlink socket: " + errno_text(errno);
    return false;
  }
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = CN_IDX_PROC;
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    error = "netlink bind: " + errno_text(errno);
    return false;
  }
  // Bursts (a fork bomb, a mass restart) must not overrun: 4 MiB as root,
  // whatever the kernel allows otherwise.
  int rcv = 4 << 20;
  if (::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) != 0)
    ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  sock_ = std::move(s);
  bool sent = filtering_ ? send_op(PROC_CN_MCAST_LISTEN, error, static_cast<int>(kernel_mask()))
                         : send_op(PROC_CN_MCAST_LISTEN, error);
  if (!sent) {
    sock_.reset();
    return false;
  }
  ++epoch_;
  watch_ = loop_.add(sock_.get(), EPOLLIN, [this](uint32_t) { drain(); });
  return true;
}

bool ProcEvents::open(std::string& error) {
  close_now();
  wanted_ = NonzeroExits | Exits | Forks | Execs;
  // A filtered subscription first: a kernel without filtering ignores it
  // (no acknowledgement), and gets the plain one.
  filtering_ = true;
  std::string ignored;
  if (!subscribe(error)) return false;
  loop_.remove(watch_);  // the acknowledgement is waited for here, once
  watch_ = 0;
  if (!wait_ack(ignored, 200)) {
    filtering_ = false;
    if (!send_op(PROC_CN_MCAST_LISTEN, error) || !wait_ack(error, 1000)) {
      sock_.reset();
      return false;
    }
  }
  usable_ = true;
  watch_ = loop_.add(sock_.get(), EPOLLIN, [this](uint32_t) { drain(); });
  return true;
}

// The kernel's filter for what is wanted: exits, with every status or
// only non-zero ones; forks; execs and comm changes.
uint32_t ProcEvents::kernel_mask() const {
  uint32_t m = 0;
  if (wanted_ & Exits)
    m |= proc_event::PROC_EVENT_EXIT;
  else if (wanted_ & NonzeroExits)
    m |= kEventNonzeroExit;
  if (wanted_ & Forks) m |= proc_event::PROC_EVENT_FORK;
  if (wanted_ & Execs) m |= proc_event::PROC_EVENT_EXEC | proc_event::PROC_EVENT_COMM;
  return m ? m : kEventAll;
}

void ProcEvents::set_events(unsigned events) {
  if (!usable_ || events == wanted_) return;
  // Before narrowing, take what the wider filter already let through.
  if ((wanted_ & ~events) != 0) drain();
  wanted_ = events;
  if (events == 0) {
    // Not in the middle of a drain: its loop reads this socket.
    if (draining_)
      close_after_drain_ = true;
    else
      close_now();
    return;
  }
  close_after_drain_ = false;
  std::string ignored;
  if (!sock_) {
    subscribe(ignored);
  } else if (filtering_) {
    send_op(PROC_CN_MCAST_LISTEN, ignored, static_cast<int>(kernel_mask()));
  }
}

std::vector<std::string> ProcEvents::names(unsigned events) {
  std::vector<std::string> out;
  if (events & Exits)
    out.push_back("exits");
  else if (events & NonzeroExits)
    out.push_back("nonzero_exits");
  if (events & Forks) out.push_back("forks");
  if (events & Execs) out.push_back("execs");
  return out;
}

void ProcEvents::drain() {
  if (!sock_ || draining_) return;
  draining_ = true;
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = ::recv(sock_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        ++overruns_;
        if (overrun_) overrun_();
        continue;
      }
      break;  // EAGAIN: nothing more now
    }
    if (n == 0) break;
    if (close_after_drain_) break;  // nobody wants them any more
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
      if (nh->nlmsg_type != NLMSG_DONE) continue;
      proc_event event;
      if (!event_of(nh, event)) continue;
      auto* cn = reinterpret_cast<cn_msg*>(NLMSG_DATA(nh));
      if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC) continue;
      const proc_event* ev = &event;
      ProcEvent out;
      out.time_ns = ev->timestamp_ns;
      switch (ev->what) {
        case proc_event::PROC_EVENT_FORK:
          if (ev->event_data.fork.child_pid != ev->event_data.fork.child_tgid) continue;  // thread
          out.kind = ProcEvent::Kind::Fork;
          out.pid = ev->event_data.fork.child_tgid;
          out.parent = ev->event_data.fork.parent_tgid;
          break;
        case proc_event::PROC_EVENT_EXEC:
          out.kind = ProcEvent::Kind::Exec;
          out.pid = ev->event_data.exec.process_tgid;
          break;
        case proc_event::PROC_EVENT_EXIT:
          if (ev->event_data.exit.process_pid != ev->event_data.exit.process_tgid) continue;
          out.kind = ProcEvent::Kind::Exit;
          out.pid = ev->event_data.exit.process_tgid;
          out.status = static_cast<int>(ev->event_data.exit.exit_code);
          break;
        case proc_event::PROC_EVENT_COMM:
          if (ev->event_data.comm.process_pid != ev->event_data.comm.process_tgid) continue;
          out.kind = ProcEvent::Kind::Comm;
          out.pid = ev->event_data.comm.process_tgid;
          break;
        default: continue;
      }
      ++events_;
      if (handler_) handler_(out);
      if (close_after_drain_) break;
    }
    if (close_after_drain_) break;
  }
  draining_ = false;
  if (close_after_drain_) close_now();
}

}  // namespace vigil

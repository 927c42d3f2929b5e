#include "host/proc/proc_events.hpp"

#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "host/core/strings.hpp"

namespace vigil {

ProcEvents::~ProcEvents() {
  if (watch_) loop_.remove(watch_);
  if (sock_) {
    std::string ignored;
    send_op(PROC_CN_MCAST_IGNORE, ignored);
  }
}

bool ProcEvents::send_op(int op, std::string& error) {
  alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(cn_msg) + sizeof(proc_cn_mcast_op))] = {};
  auto* nh = reinterpret_cast<nlmsghdr*>(buf);
  nh->nlmsg_len = NLMSG_LENGTH(sizeof(cn_msg) + sizeof(proc_cn_mcast_op));
  nh->nlmsg_type = NLMSG_DONE;
  auto* cn = reinterpret_cast<cn_msg*>(NLMSG_DATA(nh));
  cn->id.idx = CN_IDX_PROC;
  cn->id.val = CN_VAL_PROC;
  cn->len = sizeof(proc_cn_mcast_op);
  auto mop = static_cast<proc_cn_mcast_op>(op);
  memcpy(cn->data, &mop, sizeof mop);
  if (::send(sock_.get(), buf, nh->nlmsg_len, 0) < 0) {
    error = "sending the subscription: " + errno_text(errno);
    return false;
  }
  return true;
}

bool ProcEvents::open(std::string& error) {
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
  if (!send_op(PROC_CN_MCAST_LISTEN, error)) {
    sock_.reset();
    return false;
  }
  // The kernel acknowledges with a PROC_EVENT_NONE; in another network
  // namespace nothing comes (or the send fails).
  alignas(nlmsghdr) char buf[8192];
  for (int tries = 0; tries < 50; ++tries) {
    pollfd p{sock_.get(), POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    ssize_t n = ::recv(sock_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      error = "netlink receive: " + errno_text(errno);
      sock_.reset();
      return false;
    }
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
      auto* cn = reinterpret_cast<cn_msg*>(NLMSG_DATA(nh));
      auto* ev = reinterpret_cast<proc_event*>(cn->data);
      if (ev->what == proc_event::PROC_EVENT_NONE) {
        if (ev->event_data.ack.err != 0) {
          error = "subscription refused: " + errno_text(static_cast<int>(ev->event_data.ack.err));
          sock_.reset();
          return false;
        }
        watch_ = loop_.add(sock_.get(), EPOLLIN, [this](uint32_t) { drain(); });
        return true;
      }
    }
  }
  error = "no acknowledgement from the kernel (not in the initial network namespace?)";
  sock_.reset();
  return false;
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
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, n); nh = NLMSG_NEXT(nh, n)) {
      if (nh->nlmsg_type != NLMSG_DONE) continue;
      auto* cn = reinterpret_cast<cn_msg*>(NLMSG_DATA(nh));
      if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC) continue;
      auto* ev = reinterpret_cast<proc_event*>(cn->data);
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
    }
  }
  draining_ = false;
}

}  // namespace vigil

#include "host/probe/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "host/core/strings.hpp"

namespace vigil {

namespace {
// Not in every libc's headers yet (Linux 6.5 uapi values).
constexpr int kSoPassPidfd = 76;
constexpr int kScmPidfd = 0x04;
}  // namespace

const std::string* NotifyMessage::get(std::string_view key) const {
  for (auto it = fields.rbegin(); it != fields.rend(); ++it)
    if (it->first == key) return &it->second;
  return nullptr;
}

NotifyMessage parse_notify(pid_t pid, std::string_view d) {
  NotifyMessage m;
  m.pid = pid;
  while (!d.empty()) {
    size_t nl = d.find('\n');
    std::string_view line = d.substr(0, nl);
    d = nl == std::string_view::npos ? std::string_view() : d.substr(nl + 1);
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    m.fields.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return m;
}

NotifySocket::NotifySocket(EventLoop& loop) : loop_(loop) {}

NotifySocket::~NotifySocket() {
  if (watch_) loop_.remove(watch_);
}

bool NotifySocket::open(const std::string& state_dir, std::string& error) {
  std::string name = "vigil-notify" + state_dir;
  sockaddr_un sa{};
  if (name.size() > sizeof(sa.sun_path) - 2)
    name = "vigil-notify-" + std::to_string(std::hash<std::string>{}(state_dir));
  Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) {
    error = "socket: " + errno_text(errno);
    return false;
  }
  int one = 1;
  if (setsockopt(s.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
    error = "SO_PASSCRED: " + errno_text(errno);
    return false;
  }
  // The sender's pidfd too, where the kernel has it (6.5+); without it,
  // messages are attributed by pid alone.
  setsockopt(s.get(), SOL_SOCKET, kSoPassPidfd, &one, sizeof one);
  // Room for bursts of pings from many processes.
  int buf = 1 << 20;
  setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0) {
    error = "bind @" + name + ": " + errno_text(errno);
    return false;
  }
  sock_ = std::move(s);
  address_ = "@" + name;
  watch_ = loop_.add(sock_.get(), EPOLLIN, [this](uint32_t) { read_all(); });
  return true;
}

void NotifySocket::read_all() {
  char data[4096];
  alignas(cmsghdr) char
      control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(int) * 16)];
  // A bounded number per wakeup: a flood cannot starve the loop.
  for (int i = 0; i < 256; ++i) {
    iovec iov{data, sizeof data};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = recvmsg(sock_.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) return;
    pid_t pid = 0;
    Fd pidfd;
    std::vector<Fd> passed;  // closed after the handler (a barrier is released then)
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS) {
        ucred cr;
        memcpy(&cr, CMSG_DATA(c), sizeof cr);
        pid = cr.pid;
      } else if (c->cmsg_type == kScmPidfd && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        pidfd = Fd(fd);
      } else if (c->cmsg_type == SCM_RIGHTS) {
        // File descriptors (FDSTORE=1, BARRIER=1) are not kept.
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < count; ++k) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof fd);
          passed.emplace_back(fd);
        }
      }
    }
    ++received_;
    NotifyMessage m;
    if (pid <= 0) {
      m.problem = "it came without the sender's credentials";
    } else if (n > static_cast<ssize_t>(sizeof data) || (mh.msg_flags & MSG_TRUNC)) {
      m.problem = "it is longer than " + std::to_string(sizeof data) + " bytes";
      m.pid = pid;
    } else {
      m = parse_notify(pid, std::string_view(data, static_cast<size_t>(n)));
    }
    m.pidfd = pidfd.get();
    if (handler_) handler_(m);
  }
}

}  // namespace vigil

#include "host/control/server.hpp"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "host/control/protocol.hpp"
#include "host/core/strings.hpp"

namespace vigil {

ControlServer::ControlServer(EventLoop& loop, Handler handler, Rejected on_reject)
    : loop_(loop), handler_(std::move(handler)), on_reject_(std::move(on_reject)) {}

ControlServer::~ControlServer() {
  for (auto& [id, c] : conns_) loop_.remove(c.watch);
  if (accept_timer_) loop_.cancel(accept_timer_);
  if (listen_watch_) loop_.remove(listen_watch_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

bool ControlServer::listen(const std::string& path, std::string& error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    error = "socket path too long: " + path;
    return false;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // Someone answering there? Then another daemon owns it.
  {
    Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      error = "another vigil is already listening on " + path;
      return false;
    }
  }
  ::unlink(path.c_str());
  listen_fd_ = Fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  mode_t old = umask(0177);
  int rc = bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  umask(old);
  if (rc != 0 || ::listen(listen_fd_.get(), 64) != 0) {
    error = "cannot listen on " + path + ": " + errno_text(rc != 0 ? err : errno);
    return false;
  }
  chmod(path.c_str(), 0600);
  path_ = path;
  listen_watch_ = loop_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  return true;
}

void ControlServer::on_accept() {
  // A bounded number per wake-up (the listening fd stays readable for the
  // rest): a client that reconnects as fast as it is answered must not
  // keep the loop here, away from the supervised processes.
  for (int n = 0; n < kAcceptsPerWakeup; ++n) {
    Fd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        pause_accepting(errno_text(errno));
      return;  // else EAGAIN, or an error of that one connection
    }
    if (conns_.size() >= kMaxConnections) {
      // Closed at once: the slots are for clients that finish their request.
      std::string line = error_reply("too many control connections (limit " +
                                     std::to_string(kMaxConnections) + ")")
                             .dump() +
                         "\n";
      ::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
      on_reject_("peer uid " + std::to_string(cred.uid) + " is not allowed");
      continue;  // closes
    }
    uint64_t id = next_id_++;
    Conn& c = conns_[id];
    c.watch = loop_.add(fd.get(), EPOLLIN | EPOLLRDHUP, [this, id](uint32_t ev) {
      if (ev & (EPOLLHUP | EPOLLERR)) {
        close_conn(id);  // gone entirely: a late reply has nobody to go to
        return;
      }
      if (ev & EPOLLOUT) on_writable(id);
      if (ev & (EPOLLIN | EPOLLRDHUP)) on_readable(id);
    });
    c.fd = std::move(fd);
    // A client that never finishes its request does not hold a slot forever.
    c.idle_timer = loop_.after(kRequestTimeout, [this, id] {
      auto it = conns_.find(id);
      if (it == conns_.end()) return;
      it->second.idle_timer = 0;
      if (!it->second.taken) close_conn(id);
    });
    // A client sends its line right after connecting: it is usually here
    // already. Served now, not one loop iteration (a slice of a storm's
    // work) later, when epoll first reports the new fd.
    on_readable(id);
  }
}

// Out of file descriptors: the pending connection stays in the backlog and
// the listening socket stays readable, so retrying at once would spin the
// loop. Stop listening for a moment; the connections open now end by their
// own deadlines and free their fds.
void ControlServer::pause_accepting(const std::string& why) {
  if (accept_timer_) return;
  on_reject_("cannot accept a control connection: " + why + " (retrying in 100 ms)");
  loop_.modify(listen_watch_, 0);
  accept_timer_ = loop_.after(std::chrono::milliseconds(100), [this] {
    accept_timer_ = 0;
    loop_.modify(listen_watch_, EPOLLIN);
  });
}

void ControlServer::on_readable(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.taken) return;
  char buf[8192];
  bool eof = false;
  for (;;) {
    ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > kMaxRequestBytes) {
        on_reject_("request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
        send(id, error_reply("request too large (limit " + std::to_string(kMaxRequestBytes) +
                             " bytes)"));
        return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    eof = n == 0 || errno != EAGAIN;
    break;
  }
  size_t nl = c.in.find('\n');
  if (nl == std::string::npos) {
    if (!eof) return;  // wait for the rest of the line
    if (c.in.empty()) {
      close_conn(id);
      return;
    }
    nl = c.in.size();  // a last line without newline counts
  }
  std::string line = c.in.substr(0, nl);
  // One request per connection: stop reading (a half-closed client would
  // otherwise keep the fd readable while a slow reply, e.g. stop, is due).
  c.taken = true;
  loop_.modify(c.watch, 0);
  std::string error;
  auto req = parse_request(line, error);
  if (!req) {
    on_reject_(error);
    send(id, error_reply(error));
    return;
  }
  // Only a string cmd can name a text handler; anything else goes to the
  // handler, which checks every field's type.
  auto cmd = req->find("cmd");
  if (auto th = cmd != req->end() && cmd->is_string()
                    ? text_handlers_.find(cmd->get_ref<const std::string&>())
                    : text_handlers_.end();
      th != text_handlers_.end())
    return send_text(id, th->second(*req));
  current_ = c.token;
  handler_(*req, [this, id](const nlohmann::json& reply) { send(id, reply); });
  current_.reset();
  heartbeat(id);
}

void ControlServer::heartbeat(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end() || !it->second.out.empty()) return;  // answered already
  it->second.beat_timer = loop_.after(kHeartbeat, [this, id] {
    auto c = conns_.find(id);
    if (c == conns_.end()) return;
    c->second.beat_timer = 0;
    if (!c->second.out.empty()) return;
    // Nothing of the reply is out yet, so a space cannot land inside it;
    // a full socket buffer just skips a beat.
    ::send(c->second.fd.get(), " ", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    heartbeat(id);
  });
}

void ControlServer::answer_with_text(std::string cmd, TextHandler make) {
  text_handlers_[std::move(cmd)] = std::move(make);
}

void ControlServer::send(uint64_t id, const nlohmann::json& reply) {
  send_text(id, reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void ControlServer::send_text(uint64_t id, std::string text) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  c.taken = true;
  if (c.beat_timer) loop_.cancel(c.beat_timer);
  c.beat_timer = 0;
  c.out = std::move(text);
  c.out += '\n';
  c.out_off = 0;
  on_writable(id);
}

void ControlServer::on_writable(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  while (c.out_off < c.out.size()) {
    ssize_t n =
        ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      loop_.modify(c.watch, EPOLLOUT);
      return;
    }
    close_conn(id);
    return;
  }
  if (!c.out.empty()) close_conn(id);
}

void ControlServer::close_conn(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  loop_.remove(it->second.watch);
  if (it->second.idle_timer) loop_.cancel(it->second.idle_timer);
  if (it->second.beat_timer) loop_.cancel(it->second.beat_timer);
  conns_.erase(it);
}

}  // namespace vigil

#include "host/metrics/http_endpoint.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

#include "host/core/strings.hpp"

namespace vigil {

HttpEndpoint::HttpEndpoint(EventLoop& loop, Render render)
    : loop_(loop), render_(std::move(render)) {}

HttpEndpoint::~HttpEndpoint() {
  for (auto& [id, c] : conns_) {
    loop_.remove(c.watch);
    loop_.cancel(c.timer);
  }
  if (listen_watch_) loop_.remove(listen_watch_);
}

bool HttpEndpoint::listen(const ListenAddress& a, std::string& error) {
  int family = a.v6 ? AF_INET6 : AF_INET;
  listen_fd_ = Fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listen_fd_) {
    error = "socket: " + errno_text(errno);
    return false;
  }
  int one = 1;
  setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len;
  if (a.v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(static_cast<uint16_t>(a.port));
    inet_pton(AF_INET6, a.host.c_str(), &s6->sin6_addr);
    len = sizeof *s6;
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(static_cast<uint16_t>(a.port));
    inet_pton(AF_INET, a.host.c_str(), &s4->sin_addr);
    len = sizeof *s4;
  }
  if (bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    error = "bind: " + errno_text(errno);
    listen_fd_.reset();
    return false;
  }
  if (::listen(listen_fd_.get(), 64) != 0) {
    error = "listen: " + errno_text(errno);
    listen_fd_.reset();
    return false;
  }
  len = sizeof ss;
  getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(a.v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                     : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  listen_watch_ = loop_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  return true;
}

void HttpEndpoint::on_accept() {
  for (;;) {
    Fd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;                                 // EAGAIN, or an error of that one connection
    if (conns_.size() >= kMaxConnections) continue;  // closed at once: too many scrapers
    uint64_t id = next_id_++;
    Conn& c = conns_[id];
    c.fd = std::move(fd);
    c.watch = loop_.add(c.fd.get(), EPOLLIN | EPOLLRDHUP,
                        [this, id](uint32_t events) { on_io(id, events); });
    c.timer = loop_.after(kTimeout, [this, id] {
      if (auto it = conns_.find(id); it != conns_.end()) it->second.timer = 0;
      close_conn(id);
    });
  }
}

void HttpEndpoint::on_io(uint64_t id, uint32_t events) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.out.empty()) {
    char buf[2048];
    for (;;) {
      ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
      if (n > 0) {
        c.in.append(buf, static_cast<size_t>(n));
        if (c.in.size() > kMaxRequestBytes) return close_conn(id);
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        if (c.in.find("\r\n\r\n") == std::string::npos) return close_conn(id);
      }
      break;
    }
    if (c.in.find("\r\n\r\n") == std::string::npos) return;  // more to come
    respond(c);
    loop_.modify(c.watch, EPOLLOUT);
  } else if (events & (EPOLLERR | EPOLLHUP)) {
    return close_conn(id);
  }
  while (c.out_off < c.out.size()) {
    ssize_t n =
        ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // wait for EPOLLOUT
    return close_conn(id);
  }
  close_conn(id);
}

void HttpEndpoint::respond(Conn& c) {
  std::string_view line(c.in);
  line = line.substr(0, line.find("\r\n"));
  std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
  bool head = line.starts_with("HEAD ");
  std::string_view target;
  if (line.starts_with("GET ") || head) {
    target = line.substr(line.find(' ') + 1);
    target = target.substr(0, target.find(' '));
  }
  if (target.empty()) {
    status = "405 Method Not Allowed";
    type = "text/plain";
    body = "only GET\n";
  } else if (target == "/metrics" || target.starts_with("/metrics?")) {
    body = render_();
  } else if (target == "/") {
    type = "text/html";
    body = "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n";
  } else {
    status = "404 Not Found";
    type = "text/plain";
    body = "not found: try /metrics\n";
  }
  c.out = "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
          "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (!head) c.out += body;
  c.in.clear();
}

void HttpEndpoint::close_conn(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  loop_.remove(it->second.watch);
  if (it->second.timer) loop_.cancel(it->second.timer);
  conns_.erase(it);
}

}  // namespace vigil

#include "host/control/client.hpp"

#include <errno.h>
#include <http_parser.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "host/control/routes.hpp"
#include "host/core/fd.hpp"
#include "host/core/strings.hpp"

namespace vigil {

namespace {

using Clock = std::chrono::steady_clock;

// Waits until fd is ready for `events` or `deadline` passes (false).
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::clamp<long long>(left, 0, 1 << 30)));
    if (r > 0) return true;  // ready, or an error/hangup the next call reports
    if (r == 0) return false;
    if (errno != EINTR) return true;
  }
}

// The reply as http_parser reads it: status and the (de-chunked) body.
struct Response {
  int status = 0;
  std::string body;
  bool complete = false;
  static int on_body(http_parser* p, const char* at, size_t n) {
    auto* r = static_cast<Response*>(p->data);
    // The heartbeats of a held reply are single spaces: kept out, so a
    // long wait does not grow the body.
    if (!(n == 1 && *at == ' ' && r->body.find_first_not_of(' ') == std::string::npos))
      r->body.append(at, n);
    return 0;
  }
  static int on_complete(http_parser* p) {
    auto* r = static_cast<Response*>(p->data);
    r->status = static_cast<int>(p->status_code);
    r->complete = true;
    return 0;
  }
};

}  // namespace

std::optional<nlohmann::json> control_request_over(Transport& t, const std::string& where,
                                                   const nlohmann::json& request,
                                                   std::string& error, ControlCall* call) {
  ControlCall local;
  if (!call) call = &local;
  call->timed_out = false;
  auto window =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(call->timeout));
  auto timeout = [&](const char* what) {
    call->timed_out = true;
    error = where + " did not answer within " + fmt_seconds(call->timeout) + "s (" + what +
            "); is the daemon wedged? (--timeout / VIGIL_TIMEOUT)";
    return std::nullopt;
  };
  // Waits for what the transport asked for; false on the deadline.
  auto wait_io = [&](Transport::Io io, Clock::time_point deadline) {
    return wait_fd(t.fd(), io == Transport::Io::WantWrite ? POLLOUT : POLLIN, deadline);
  };
  auto deadline = Clock::now() + window;
  for (;;) {
    auto io = t.handshake();
    if (io == Transport::Io::Ok) break;
    if (io == Transport::Io::WantRead || io == Transport::Io::WantWrite) {
      if (!wait_io(io, deadline)) return timeout("handshake not finished");
      continue;
    }
    error = where + ": " + t.error();
    return std::nullopt;
  }
  auto http = control_http_call(request, error);
  if (!http) return std::nullopt;
  std::string out = http->method + " " + http->target + " HTTP/1.1\r\nHost: vigil\r\n";
  if (!http->body.empty())
    out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(http->body.size()) +
           "\r\n";
  else if (http->method == "POST")
    out += "Content-Length: 0\r\n";
  out += "Connection: close\r\n\r\n" + http->body;
  size_t off = 0;
  deadline = Clock::now() + window;
  while (off < out.size()) {
    size_t put = 0;
    auto io = t.write(out.data() + off, out.size() - off, put);
    if (io == Transport::Io::Ok) {
      off += put;
      deadline = Clock::now() + window;
      continue;
    }
    if (io == Transport::Io::WantRead || io == Transport::Io::WantWrite) {
      if (!wait_io(io, deadline)) return timeout("request not taken");
      continue;
    }
    error = io == Transport::Io::Closed ? where + " closed the connection" : "send: " + t.error();
    return std::nullopt;
  }
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_body = &Response::on_body;
  settings.on_message_complete = &Response::on_complete;
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  Response response;
  parser.data = &response;
  char buf[65536];
  bool any = false;
  deadline = Clock::now() + window;
  while (!response.complete) {
    size_t got = 0;
    auto io = t.read(buf, sizeof buf, got);
    if (io == Transport::Io::Ok) {
      any = true;
      deadline = Clock::now() + window;
      size_t used = http_parser_execute(&parser, &settings, buf, got);
      if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || used != got) break;
      continue;
    }
    if (io == Transport::Io::WantRead || io == Transport::Io::WantWrite) {
      if (t.buffered()) continue;
      if (!wait_io(io, deadline)) return timeout("no reply");
      continue;
    }
    // The end (or a reset): a reply without a length ends here.
    http_parser_execute(&parser, &settings, nullptr, 0);
    break;
  }
  if (!response.complete) {
    if (!any) {
      error = "vigil closed the connection without a reply";
    } else if (HTTP_PARSER_ERRNO(&parser) != HPE_OK && parser.type == HTTP_RESPONSE &&
               parser.status_code == 0) {
      error = "unexpected reply from " + where + ": not HTTP (is it a vigil of another version?)";
    } else {
      error = "the reply from " + where + " was cut short";
    }
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(response.body, nullptr, false);
  if (j.is_discarded()) {
    bool nothing = response.body.find_first_not_of(" \r\n") == std::string::npos;
    error = nothing ? "vigil closed the connection without a reply"
                    : "unexpected reply from " + where + " (HTTP " +
                          std::to_string(response.status) + "): not JSON";
    return std::nullopt;
  }
  return j;
}

std::optional<nlohmann::json> control_request(const std::string& socket_path,
                                              const nlohmann::json& request, std::string& error,
                                              ControlCall* call) {
  ControlCall local;
  if (!call) call = &local;
  call->timed_out = false;
  auto window =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(call->timeout));
  std::string where = "vigil at " + socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    error = "socket path too long: " + socket_path;
    return std::nullopt;
  }
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    error = "socket: " + errno_text(errno);
    return std::nullopt;
  }
  auto deadline = Clock::now() + window;
  auto not_accepted = [&] {
    call->timed_out = true;
    error = where + " did not answer within " + fmt_seconds(call->timeout) +
            "s (connection not accepted); is the daemon wedged? (--timeout / VIGIL_TIMEOUT)";
    return std::nullopt;
  };
  for (;;) {
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      // Its backlog is full: the daemon does not accept. Try again a bit later.
      if (Clock::now() >= deadline) return not_accepted();
      ::poll(nullptr, 0, 10);
      continue;
    }
    if (errno == EINPROGRESS) {
      if (!wait_fd(fd.get(), POLLOUT, deadline)) return not_accepted();
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) break;
      errno = err;
    }
    error = "cannot reach vigil at " + socket_path + ": " + errno_text(errno) +
            " (is the daemon running? see --socket / VIGIL_SOCKET)";
    return std::nullopt;
  }
  auto t = plain_transport(std::move(fd));
  return control_request_over(*t, where, request, error, call);
}

}  // namespace vigil

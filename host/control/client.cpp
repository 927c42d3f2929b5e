#include "host/control/client.hpp"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

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

}  // namespace

std::optional<nlohmann::json> control_request(const std::string& socket_path,
                                              const nlohmann::json& request, std::string& error,
                                              ControlCall* call) {
  ControlCall local;
  if (!call) call = &local;
  call->timed_out = false;
  auto window =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(call->timeout));
  auto timeout = [&](const char* what) {
    call->timed_out = true;
    error = "vigil at " + socket_path + " did not answer within " + fmt_seconds(call->timeout) +
            "s (" + what + "); is the daemon wedged? (--timeout / VIGIL_TIMEOUT)";
    return std::nullopt;
  };
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
  for (;;) {
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      // Its backlog is full: the daemon does not accept. Try again a bit later.
      if (Clock::now() >= deadline) return timeout("connection not accepted");
      ::poll(nullptr, 0, 10);
      continue;
    }
    if (errno == EINPROGRESS) {
      if (!wait_fd(fd.get(), POLLOUT, deadline)) return timeout("connection not accepted");
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
  // Text that is not UTF-8 (a name from the command line) is sent as U+FFFD.
  std::string out = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  size_t off = 0;
  deadline = Clock::now() + window;
  while (off < out.size()) {
    ssize_t n = ::send(fd.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      deadline = Clock::now() + window;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!wait_fd(fd.get(), POLLOUT, deadline)) return timeout("request not taken");
      continue;
    }
    error = "send: " + errno_text(errno);
    return std::nullopt;
  }
  std::string in;
  char buf[65536];
  deadline = Clock::now() + window;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      deadline = Clock::now() + window;
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (!wait_fd(fd.get(), POLLIN, deadline)) return timeout("no reply");
      continue;
    }
    break;  // reset: what came so far is judged below
  }
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) {
    bool nothing = in.find_first_not_of(" \n") == std::string::npos;
    error = nothing ? "vigil closed the connection without a reply" : "reply is not JSON";
    return std::nullopt;
  }
  return j;
}

}  // namespace vigil

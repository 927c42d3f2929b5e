#include "host/net/transport.hpp"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host/core/strings.hpp"

namespace vigil {

namespace {

Transport::Io failed(std::string& error, int err) {
  if (err == ECONNRESET || err == EPIPE) return Transport::Io::Closed;
  error = errno_text(err);
  return Transport::Io::Error;
}

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(Fd fd) : Transport(std::move(fd)) {}

  Io read(char* buf, size_t n, size_t& got) override {
    got = 0;
    for (;;) {
      ssize_t r = ::read(fd_.get(), buf, n);
      if (r > 0) {
        got = static_cast<size_t>(r);
        return Io::Ok;
      }
      if (r == 0) return Io::Closed;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::WantRead;
      return failed(error_, errno);
    }
  }

  Io write(const char* buf, size_t n, size_t& put) override {
    put = 0;
    for (;;) {
      ssize_t r = ::send(fd_.get(), buf, n, MSG_NOSIGNAL);
      if (r >= 0) {
        put = static_cast<size_t>(r);
        return Io::Ok;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::WantWrite;
      return failed(error_, errno);
    }
  }

  Identity peer() const override {
    Identity id;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
        ss.ss_family != AF_UNIX)
      return id;
    ucred cred{};
    socklen_t cl = sizeof cred;
    if (getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) return id;
    id.kind = Identity::Kind::Local;
    id.uid = cred.uid;
    id.name = "uid:" + std::to_string(cred.uid);
    return id;
  }
};

}  // namespace

std::unique_ptr<Transport> plain_transport(Fd fd) {
  return std::make_unique<PlainTransport>(std::move(fd));
}

}  // namespace vigil

// ListenAddress: where a TCP listener binds ("127.0.0.1:9464",
// "[::1]:8443", "0.0.0.0:8443", "localhost:9464"). Any numeric address is
// accepted here; which addresses a listener may use without TLS is policy
// (stdlib/vigil/api.lua), not this parser's.
#pragma once

#include <sys/socket.h>

#include <string>

namespace vigil {

struct ListenAddress {
  std::string host;  // numeric, as given ("localhost" becomes 127.0.0.1)
  int port = 0;      // 0: the kernel picks one (HttpServer::port tells which)
  bool v6 = false;
  std::string text() const {
    return v6 ? "[" + host + "]:" + std::to_string(port) : host + ":" + std::to_string(port);
  }
  // 127.0.0.0/8 or ::1.
  bool loopback() const;
  // The socket address; false when host is not a numeric address.
  bool to_sockaddr(sockaddr_storage& out, socklen_t& len) const;
};

// An error text naming the value when it is not HOST:PORT with a numeric
// host (IPv6 in brackets) or `localhost`, and a port 0-65535.
bool parse_listen_address(const std::string& value, ListenAddress& out, std::string& error);

}  // namespace vigil

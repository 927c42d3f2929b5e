#include "host/net/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>

namespace vigil {

bool parse_listen_address(const std::string& value, ListenAddress& out, std::string& error) {
  auto bad = [&](const std::string& why) {
    error = "'" + value + "': " + why + " (expected HOST:PORT, e.g. 127.0.0.1:9464)";
    return false;
  };
  std::string host, port;
  if (value.starts_with("[")) {
    size_t close = value.find("]:");
    if (close == std::string::npos) return bad("an IPv6 address needs [ADDR]:PORT");
    host = value.substr(1, close - 1);
    port = value.substr(close + 2);
    out.v6 = true;
  } else {
    size_t colon = value.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
    out.v6 = false;
  }
  if (host == "localhost") host = "127.0.0.1";
  char* end = nullptr;
  long p = strtol(port.c_str(), &end, 10);
  if (port.empty() || !end || *end || p < 0 || p > 65535) return bad("bad port '" + port + "'");
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(out.v6 ? AF_INET6 : AF_INET, host.c_str(), buf) != 1)
    return bad("'" + host + "' is not a numeric " + (out.v6 ? "IPv6" : "IPv4") + " address");
  out.host = host;
  out.port = static_cast<int>(p);
  return true;
}

bool ListenAddress::loopback() const {
  if (v6) return host == "::1";
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

bool ListenAddress::to_sockaddr(sockaddr_storage& out, socklen_t& len) const {
  out = {};
  auto port_n = htons(static_cast<uint16_t>(port));
  if (v6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&out);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = port_n;
    len = sizeof *s6;
    return inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) == 1;
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(&out);
  s4->sin_family = AF_INET;
  s4->sin_port = port_n;
  len = sizeof *s4;
  return inet_pton(AF_INET, host.c_str(), &s4->sin_addr) == 1;
}

}  // namespace vigil

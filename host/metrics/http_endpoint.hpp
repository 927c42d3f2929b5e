// HttpEndpoint: the Prometheus scrape endpoint. A listening TCP socket on
// the event loop; every connection is nonblocking, answers one GET and is
// closed. A slow or silent client never blocks the loop: reads and writes
// happen only when epoll says they can, each connection has a deadline,
// and there is a cap on how many are open.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/address.hpp"

namespace vigil {

class HttpEndpoint {
 public:
  static constexpr size_t kMaxConnections = 32;
  static constexpr size_t kMaxRequestBytes = 8192;
  static constexpr std::chrono::seconds kTimeout{10};
  // The body of GET /metrics.
  using Render = std::function<std::string()>;

  HttpEndpoint(EventLoop& loop, Render render);
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  bool listen(const ListenAddress& address, std::string& error);
  int port() const { return port_; }  // the bound port (useful with port 0)

 private:
  struct Conn {
    Fd fd;
    WatchId watch = 0;
    std::string in;
    std::string out;
    size_t out_off = 0;
    TimerId timer = 0;
  };
  void on_accept();
  void on_io(uint64_t id, uint32_t events);
  void respond(Conn& c);
  void close_conn(uint64_t id);

  EventLoop& loop_;
  Render render_;
  Fd listen_fd_;
  WatchId listen_watch_ = 0;
  int port_ = 0;
  std::map<uint64_t, Conn> conns_;
  uint64_t next_id_ = 1;
};

}  // namespace vigil

// HttpEndpoint: the Prometheus scrape endpoint, GET /metrics on its own TCP
// listener (host/net's HttpServer: non-blocking on the loop, deadlines, a
// connection cap, keep-alive). The route is also available to mount on
// another server (the remote API serves /metrics when metrics are on).
#pragma once

#include <functional>
#include <string>

#include "host/loop/event_loop.hpp"
#include "host/net/address.hpp"
#include "host/net/http_server.hpp"

namespace vigil {

class HttpEndpoint {
 public:
  static constexpr size_t kMaxConnections = 32;
  static constexpr size_t kMaxRequestBytes = 8192;
  static constexpr std::chrono::seconds kTimeout{10};
  // The body of GET /metrics.
  using Render = std::function<std::string()>;

  HttpEndpoint(EventLoop& loop, Render render);
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  bool listen(const ListenAddress& address, std::string& error);
  int port() const { return port_; }  // the bound port (useful with port 0)

 private:
  HttpServer http_;
  int port_ = 0;
};

// GET /metrics (the Prometheus text format, from render) on router.
void add_metrics_route(HttpRouter& router, HttpEndpoint::Render render);

}  // namespace vigil

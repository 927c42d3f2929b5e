#include "host/metrics/http_endpoint.hpp"

namespace vigil {

void add_metrics_route(HttpRouter& router, HttpEndpoint::Render render) {
  router.add("GET", "/metrics", [render = std::move(render)](HttpRequest&, HttpReply reply) {
    reply.send(200, "text/plain; version=0.0.4; charset=utf-8", render());
  });
}

HttpEndpoint::HttpEndpoint(EventLoop& loop, Render render) : http_(loop) {
  add_metrics_route(http_.router(), std::move(render));
  http_.router().add("GET", "/", [](HttpRequest&, HttpReply reply) {
    reply.send(200, "text/html", "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n");
  });
}

bool HttpEndpoint::listen(const ListenAddress& address, std::string& error) {
  HttpListenerOptions o;
  o.name = "metrics";
  o.keep_alive = false;  // one GET per connection, as scrapers and scripts expect
  o.limits.max_connections = kMaxConnections;
  o.limits.max_head_bytes = kMaxRequestBytes;
  o.limits.max_body_bytes = 0;
  o.limits.request_timeout = kTimeout;
  o.limits.idle_timeout = kTimeout;
  o.limits.send_timeout = kTimeout;
  auto id = http_.listen(address, std::move(o), error);
  if (!id) return false;
  port_ = http_.port(id);
  return true;
}

}  // namespace vigil

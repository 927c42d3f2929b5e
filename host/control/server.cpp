#include "host/control/server.hpp"

#include "host/control/protocol.hpp"
#include "host/control/routes.hpp"

namespace vigil {

ControlServer::ControlServer(EventLoop& loop, Handler handler, Rejected on_reject, ControlTextHandlers text)
    : handler_(std::move(handler)), on_reject_(std::move(on_reject)), http_(loop) {
  add_control_routes(
      http_.router(), [this](const nlohmann::json& req, HttpReply reply) { serve(req, std::move(reply)); },
      std::move(text));
}

ControlServer::~ControlServer() = default;

bool ControlServer::listen(const std::string& path, std::string& error) {
  HttpListenerOptions o;
  o.name = "control";
  o.limits.max_connections = kMaxConnections;
  o.limits.request_timeout = kRequestTimeout;
  o.limits.idle_timeout = kRequestTimeout;
  o.limits.max_body_bytes = kMaxRequestBytes;
  o.accepts_per_wakeup = kAcceptsPerWakeup;
  o.unix_mode = 0600;
  o.same_user_only = true;
  o.on_error = [this](const std::string& what) { on_reject_(what); };
  // The CLI prints the error of any reply, the server's own ones too.
  o.error_body = control_error_body;
  return http_.listen_unix(path, std::move(o), error) != 0;
}

void ControlServer::serve(const nlohmann::json& request, HttpReply reply) {
  current_ = reply.token();
  reply.heartbeat(kHeartbeat, "application/json");
  handler_(request, [reply](const nlohmann::json& r) mutable { send_control_reply(reply, r); });
  current_.reset();
}

}  // namespace vigil

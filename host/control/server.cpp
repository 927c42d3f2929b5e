#include "host/control/server.hpp"

#include "host/control/protocol.hpp"
#include "host/control/routes.hpp"

namespace vigil {

ControlServer::ControlServer(EventLoop& loop, Handler handler, Rejected on_reject)
    : handler_(std::move(handler)), on_reject_(std::move(on_reject)), http_(loop) {
  add_control_routes(http_.router(),
                     [this](const nlohmann::json& req, HttpReply reply) { serve(req, std::move(reply)); });
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

void ControlServer::answer_with_text(std::string cmd, TextHandler make) {
  text_handlers_[std::move(cmd)] = std::move(make);
}

void ControlServer::serve(const nlohmann::json& request, HttpReply reply) {
  // Only a string cmd can name a text handler; anything else goes to the
  // handler, which checks every field's type.
  auto cmd = request.is_object() ? request.find("cmd") : request.end();
  if (request.is_object() && cmd != request.end() && cmd->is_string())
    if (auto th = text_handlers_.find(cmd->get_ref<const std::string&>()); th != text_handlers_.end()) {
      std::string text = th->second(request);
      text += '\n';
      reply.send(200, "application/json", std::move(text));
      return;
    }
  current_ = reply.token();
  reply.heartbeat(kHeartbeat, "application/json");
  handler_(request, [reply](const nlohmann::json& r) mutable { send_control_reply(reply, r); });
  current_.reset();
}

}  // namespace vigil

#include "host/api/api_server.hpp"

#include <strings.h>

#include <set>

#include "host/api/event_stream.hpp"
#include "host/net/tls.hpp"

namespace vigil {
namespace {

// What the remote API serves of the control commands: reads, the actions
// on watches and groups (a clustered group's failover too), the cluster's
// view, reload. Not quit, set, signal, wait or logs: they
// stay on the local socket (a process's output may hold secrets; a held
// wait is a local tool).
const std::set<std::string_view> kApiCommands = {
    "ping",  "status", "inspect", "events", "explain", "dumps", "metrics", "start",
    "stop",  "restart", "pause",  "resume", "reload", "failover", "cluster", "discover"};

std::string who(const Identity& id) {
  switch (id.kind) {
    case Identity::Kind::Certificate: return "certificate " + id.name;
    case Identity::Kind::Token: return "token " + id.name;
    case Identity::Kind::Local: return "local " + id.name;
    case Identity::Kind::Anonymous: break;
  }
  return "anonymous";
}


}  // namespace

std::optional<ApiSpec> ApiSpec::from_json(const nlohmann::json& j, std::string& error) {
  if (!j.is_object()) return error = "api: not a table", std::nullopt;
  ApiSpec s;
  auto str = [&](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  s.listen = str("listen");
  s.cert = str("cert");
  s.key = str("key");
  s.client_ca = str("client_ca");
  s.tokens = str("tokens");
  s.where = str("where");
  if (auto it = j.find("max_connections"); it != j.end() && it->is_number_integer())
    s.max_connections = it->get<size_t>();
  std::string e;
  if (!parse_listen_address(s.listen, s.address, e))
    return error = (s.where.empty() ? "" : s.where + ": ") + "api: listen: " + e, std::nullopt;
  if (!s.tls() && !s.address.loopback())
    return error = (s.where.empty() ? "" : s.where + ": ") + "api: listen '" + s.listen +
                   "' is not a loopback address: plain HTTP is refused there (give cert and key)",
           std::nullopt;
  if (!s.tls() && (!s.tokens.empty() || !s.client_ca.empty()))
    return error = (s.where.empty() ? "" : s.where + ": ") +
                   "api: tokens and client_ca need TLS (cert and key)",
           std::nullopt;
  return s;
}

nlohmann::json identity_json(const Identity& id) {
  const char* kind = "anonymous";
  switch (id.kind) {
    case Identity::Kind::Certificate: kind = "certificate"; break;
    case Identity::Kind::Token: kind = "token"; break;
    case Identity::Kind::Local: kind = "local"; break;
    case Identity::Kind::Anonymous: break;
  }
  nlohmann::json j = {{"kind", kind}, {"name", id.name}, {"tls", id.tls}};
  if (!id.subject.empty()) j["subject"] = id.subject;
  j["sans"] = id.sans;
  return j;
}

ApiServer::ApiServer(EventLoop& loop, EventLog& log, ApiHooks hooks)
    : loop_(loop), log_(log), hooks_(std::move(hooks)), server_(loop) {
  build_routes();
}

ApiServer::~ApiServer() {
  if (rebind_timer_) loop_.cancel(rebind_timer_);
  if (refusals_.timer) loop_.cancel(refusals_.timer);
}

void ApiServer::build_routes() {
  HttpRouter& r = server_.router();
  add_control_routes(
      r,
      [this](const nlohmann::json& req, HttpReply reply) {
        // A stop answers when its process is down: spaces meanwhile, as on the socket.
        reply.heartbeat(kHeartbeat, "application/json");
        hooks_.handle(req, std::move(reply));
      },
      hooks_.text, [](const ControlRoute& route) { return kApiCommands.contains(route.cmd); });
  if (hooks_.streams)
    r.add("GET", "/v1/events/stream", [this](HttpRequest& req, HttpReply reply) {
      hooks_.streams->serve(req, std::move(reply));
    });
  add_dashboard_routes(r, hooks_.dashboard);
  r.add("GET", "/metrics", [this](HttpRequest&, HttpReply reply) {
    std::string text = hooks_.metrics ? hooks_.metrics() : std::string();
    if (text.empty()) return reply.error(404, "metrics are off (vigil run --metrics)");
    reply.send(200, "text/plain; version=0.0.4", std::move(text));
  });
}

std::optional<ApiServer::Prepared> ApiServer::prepare(const ApiSpec& spec,
                                                      std::vector<std::string>& errors) {
  Prepared p;
  p.spec = spec;
  std::string at = spec.where.empty() ? std::string() : spec.where + ": ";
  if (spec.tls()) {
    std::string e;
    // With tokens too, a client may come without a certificate and bring
    // a token instead (people); a certificate it brings is still verified.
    p.tls = TlsServerContext::load({spec.cert, spec.key, spec.client_ca, !spec.tokens.empty()}, e);
    if (!p.tls) errors.push_back(at + "api: " + e);
  }
  if (!spec.tokens.empty()) {
    auto t = std::make_shared<TokenFile>();
    std::string e;
    if (!t->load(spec.tokens, e)) errors.push_back(at + "api: tokens: " + e);
    p.tokens = std::move(t);
  }
  if (!errors.empty()) return std::nullopt;
  return p;
}

void ApiServer::apply(std::optional<Prepared> p) {
  current_ = std::move(p);
  if (!current_) {
    if (listener_) server_.close(listener_);
    listener_ = 0;
    bound_.clear();
    if (rebind_timer_) loop_.cancel(rebind_timer_);
    rebind_timer_ = 0;
    return;
  }
  if (listener_ && bound_ == current_->spec.address.text() &&
      (current_->tls != nullptr) == tls_now_) {
    // Same address: the new certificate and tokens, open connections kept.
    server_.set_tls(listener_, current_->tls);
    HttpLimits limits;
    limits.max_connections = current_->spec.max_connections;
    server_.set_limits(listener_, limits);
    return;
  }
  if (listener_) server_.close(listener_);
  listener_ = 0;
  bound_.clear();
  last_bind_error_.clear();
  bind();
}

void ApiServer::bind() {
  if (rebind_timer_) loop_.cancel(rebind_timer_);
  rebind_timer_ = 0;
  if (!current_ || listener_) return;
  const ApiSpec& s = current_->spec;
  HttpListenerOptions o;
  o.name = "api";
  o.limits.max_connections = s.max_connections;
  o.tls = current_->tls;
  o.error_body = control_error_body;
  o.before = [this](HttpRequest& req, HttpReply& reply) { return before(req, reply); };
  o.on_error = [this](const std::string& what) {
    refused(0, "anonymous", "", "", what);
  };
  std::string e;
  listener_ = server_.listen(s.address, std::move(o), e);
  if (!listener_) {
    // Said once per distinct error, tried again until it works.
    if (e != last_bind_error_) log_.emit(Msg::ApiFailed, "", {{"listen", s.listen}, {"error", e}});
    last_bind_error_ = e;
    rebind_timer_ = loop_.after(kRebind, [this] {
      rebind_timer_ = 0;
      bind();
    });
    return;
  }
  bound_ = s.address.text();
  tls_now_ = current_->tls != nullptr;
  last_bind_error_.clear();
  log_.emit(Msg::ApiListening, "",
            {{"listen", s.listen},
             {"port", server_.port(listener_)},
             {"tls", s.tls() ? "on" : "off"},
             {"client_certificates", s.client_ca.empty() ? "not asked" : "required"},
             {"tokens", current_->tokens ? current_->tokens->size() : 0}});
}

int ApiServer::port() const { return listener_ ? server_.port(listener_) : 0; }

nlohmann::json ApiServer::status() const {
  if (!current_) return nullptr;
  const ApiSpec& s = current_->spec;
  return {{"listen", s.listen},
          {"port", port()},
          {"listening", listener_ != 0},
          {"tls", s.tls()},
          {"client_certificates", !s.client_ca.empty()},
          {"tokens", current_->tokens ? current_->tokens->size() : 0},
          {"connections", listener_ ? server_.connections(listener_) : 0},
          {"refused", refused_total_}};
}

bool ApiServer::before(HttpRequest& request, HttpReply& reply) {
  // The dashboard's page, script and style hold no data: a browser loads
  // them before its user has given a token (every request they make then
  // carries it).
  if (dashboard_public(request.method, request.path)) return true;
  Identity& id = request.identity;
  std::string auth = request.header("authorization");
  if (!auth.empty()) {
    if (auth.size() < 7 || strncasecmp(auth.c_str(), "Bearer ", 7) != 0) {
      refuse(request, reply, 401, "only Bearer tokens are accepted in Authorization", who(id));
      return false;
    }
    if (!id.tls) {
      refuse(request, reply, 401, "bearer tokens are accepted only over TLS", who(id));
      return false;
    }
    std::string token = auth.substr(7);
    while (!token.empty() && token.front() == ' ') token.erase(0, 1);
    std::string name = current_ && current_->tokens ? current_->tokens->verify(token) : "";
    if (name.empty()) {
      refuse(request, reply, 401,
             current_ && current_->tokens ? "unknown token" : "this node accepts no tokens",
             who(id));
      return false;
    }
    id.kind = Identity::Kind::Token;
    id.name = name;
  }
  auto [allowed, reason] = hooks_.authorize
                               ? hooks_.authorize(identity_json(id), request.method, request.path)
                               : std::pair<bool, std::string>{false, "no authorization hook"};
  if (allowed) return true;
  if (reason.empty()) reason = "not allowed";
  refuse(request, reply, id.kind == Identity::Kind::Anonymous ? 401 : 403, reason, who(id));
  return false;
}

void ApiServer::refuse(HttpRequest& request, HttpReply& reply, int status,
                       const std::string& reason, const std::string& whom) {
  HttpHeaders extra;
  if (status == 401) extra.push_back({"WWW-Authenticate", "Bearer realm=\"vigil\""});
  reply.error(status, reason, extra);  // the listener's JSON error body
  refused(status, whom, request.method, request.path, reason);
}

void ApiServer::refused(int status, const std::string& whom, const std::string& method,
                        const std::string& path, const std::string& reason) {
  ++refused_total_;
  ++refusals_.count;
  refusals_.last = {{"status", status}, {"who", whom},       {"method", method.empty() ? "-" : method},
                    {"path", path.empty() ? "-" : path},     {"reason", reason}};
  if (refusals_.timer) return;
  MonoTime now = loop_.now();
  if (refusals_.last_emit == MonoTime{} || now - refusals_.last_emit >= kRefusalWindow) {
    flush_refusals();
    return;
  }
  refusals_.timer = loop_.at(refusals_.last_emit + kRefusalWindow, [this] {
    refusals_.timer = 0;
    flush_refusals();
  });
}

void ApiServer::flush_refusals() {
  if (refusals_.count == 0) return;
  nlohmann::json f = refusals_.last;
  f["count"] = refusals_.count;
  refusals_.count = 0;
  refusals_.last_emit = loop_.now();
  log_.emit(Msg::ApiRefused, "", std::move(f));
}

}  // namespace vigil

// ApiServer: the remote API (issue 15), HTTPS JSON with the control
// socket's resource model (host/control/routes.hpp) on its own listener.
//
// Every request is authenticated, then authorized, before it is routed:
//   1. the transport's identity: a client certificate verified against
//      client_ca (its subject CN and SANs), else anonymous;
//   2. "Authorization: Bearer TOKEN": a token of the token file (hashed,
//      compared in constant time), accepted only over TLS; an unknown
//      token is 401, whatever the certificate;
//   3. vigil.api.authorize(identity, method, path), the rules' hook
//      (default: reads for authenticated clients, actions for
//      api.operators, nothing for anonymous): no is 401 for an anonymous
//      client (WWW-Authenticate), 403 for a known one.
// Refusals are events (VGL0229), at most one per 10 s with a count. No
// cookies, no sessions: every request carries its credentials.
//
// The listener comes from the rules (api { }) or the command line
// (vigil run --api-listen). prepare() loads the certificate and the token
// file, so that a reload with a bad one is rejected with the file named
// and the running API goes on; apply() swaps them in without dropping open
// connections, or moves the listener when the address changed. A port that
// is taken is an event (VGL0228) and is tried again every 10 s;
// supervision is never affected.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "host/api/dashboard.hpp"
#include "host/api/tokens.hpp"
#include "host/control/routes.hpp"
#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/http_server.hpp"

namespace vigil {

class TlsServerContext;
class EventStreams;

struct ApiSpec {
  std::string listen;  // "10.1.0.2:8443"
  ListenAddress address;
  std::string cert, key, client_ca, tokens;
  size_t max_connections = 64;
  std::string where;  // "rules/api.lua:3" or "--api-listen"

  // From RuleRuntime::api() (vigil.api's normalized table); nullopt with
  // error when it is not one.
  static std::optional<ApiSpec> from_json(const nlohmann::json& j, std::string& error);
  bool tls() const { return !cert.empty(); }
};

// The identity as the Lua hook and the logs see it:
// {kind: certificate|token|anonymous|local, name, subject, sans, tls}.
nlohmann::json identity_json(const Identity& id);

struct ApiHooks {
  // The daemon's control handler (the same as the control socket's).
  ControlHandle handle;
  // Commands written as text (the socket's: no JSON tree of every watch).
  ControlTextHandlers text;
  // vigil.api.authorize; allowed, or the reason.
  std::function<std::pair<bool, std::string>(const nlohmann::json& identity,
                                             const std::string& method, const std::string& path)>
      authorize;
  // GET /metrics (the Prometheus text), or empty when metrics are off.
  std::function<std::string()> metrics;
  // GET /v1/events/stream.
  EventStreams* streams = nullptr;
  // The web dashboard's files and routes (host/api/dashboard.hpp).
  DashboardHooks dashboard;
};

class ApiServer {
 public:
  static constexpr Duration kRebind = std::chrono::seconds(10);
  static constexpr Duration kRefusalWindow = std::chrono::seconds(10);
  static constexpr Duration kHeartbeat = std::chrono::milliseconds(250);  // as the socket's

  ApiServer(EventLoop& loop, EventLog& log, ApiHooks hooks);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // The spec's files loaded: what a reload checks before it commits.
  struct Prepared {
    ApiSpec spec;
    std::shared_ptr<TlsServerContext> tls;
    std::shared_ptr<const TokenFile> tokens;
  };
  // nullopt with the errors ("rules/api.lua:3: api: cert /etc/vigil/api.pem:
  // No such file or directory") when a file does not load.
  static std::optional<Prepared> prepare(const ApiSpec& spec, std::vector<std::string>& errors);

  // The API from now on: nullopt closes it.
  void apply(std::optional<Prepared> p);

  int port() const;  // the bound port (0: not listening)
  bool listening() const { return listener_ != 0; }
  // For `vigil status`: {listen, port, tls, client_certificates, tokens, connections, refused}.
  nlohmann::json status() const;

 private:
  bool before(HttpRequest& request, HttpReply& reply);
  void refuse(HttpRequest& request, HttpReply& reply, int status, const std::string& reason,
              const std::string& who);
  void refused(int status, const std::string& who, const std::string& method,
               const std::string& path, const std::string& reason);
  void flush_refusals();
  void bind();
  void build_routes();

  EventLoop& loop_;
  EventLog& log_;
  ApiHooks hooks_;
  HttpServer server_;
  std::optional<Prepared> current_;
  HttpServer::ListenerId listener_ = 0;
  std::string bound_;  // the address listener_ is bound to
  bool tls_now_ = false;  // listener_ is TLS
  std::string last_bind_error_;
  TimerId rebind_timer_ = 0;
  // Refusals since the last VGL0229.
  struct Refusals {
    uint64_t count = 0;
    nlohmann::json last;  // the fields of the newest
    TimerId timer = 0;
    MonoTime last_emit{};
  } refusals_;
  uint64_t refused_total_ = 0;
};

}  // namespace vigil

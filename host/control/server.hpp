// ControlServer: the daemon end of the control socket, HTTP/1.1 on a unix
// socket (host/net's HttpServer; routes in host/control/routes.hpp), so
// `curl --unix-socket /run/vigil/control.sock http://x/v1/status` works.
// Replies may come later (a `stop` answers when the process is down). The
// socket is mode 0600 and only root or vigil's own user may talk to it
// (SO_PEERCRED).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "host/loop/event_loop.hpp"
#include "host/control/routes.hpp"
#include "host/net/http_server.hpp"

namespace vigil {

class ControlServer {
 public:
  // A client that does not finish its request in this long is closed; so
  // is one that stays idle this long between two requests.
  static constexpr std::chrono::seconds kRequestTimeout{10};
  // Connections open at once; more are refused with an error reply (503),
  // so clients alone can never take the fds the supervised processes need.
  static constexpr size_t kMaxConnections = 256;
  // While a reply is pending (a stop waiting for its process), the reply's
  // head and then a chunk of one space go to the client this often: JSON
  // ignores it, and the client can tell a long command from a daemon that
  // does not run any more (well within the CLI's --timeout, which is 10 s
  // by default).
  static constexpr std::chrono::milliseconds kHeartbeat{250};
  // Connections accepted (and, when their request is already there,
  // served) per wake-up of the listening socket.
  static constexpr int kAcceptsPerWakeup = 8;
  using Reply = std::function<void(const nlohmann::json&)>;
  using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;
  using Rejected = std::function<void(const std::string& error)>;

  // `text`: commands answered with JSON text their maker writes itself
  // (add_control_routes): `status` of a thousand watches, without a tree.
  ControlServer(EventLoop& loop, Handler handler, Rejected on_reject, ControlTextHandlers text = {});
  ~ControlServer();

  // Binds path; fails if another daemon answers there.
  bool listen(const std::string& path, std::string& error);

  // While the handler runs: a token of that request's connection, which
  // expires when the connection closes (the client went away), so that a
  // reply held for long (`vigil wait`) can be dropped early.
  std::weak_ptr<void> connection() const { return current_; }

  // The HTTP server under the socket (its counters, for tests).
  const HttpServer& http() const { return http_; }
  // Its routes, for the daemon's own (GET /v1/events/stream).
  HttpRouter& router() { return http_.router(); }

 private:
  void serve(const nlohmann::json& request, HttpReply reply);

  Handler handler_;
  Rejected on_reject_;
  HttpServer http_;
  std::weak_ptr<void> current_;
};

}  // namespace vigil

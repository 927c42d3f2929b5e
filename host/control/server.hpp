// ControlServer: the daemon end of the control socket. Non-blocking, on the
// event loop; one request per connection; replies may come later (a `stop`
// answers when the process is down). The socket is mode 0600 and only root
// or vigil's own user may talk to it (SO_PEERCRED).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace vigil {

class ControlServer {
 public:
  static constexpr std::chrono::seconds kRequestTimeout{10};
  // Connections open at once; more are refused with an error reply, so
  // clients alone can never take the fds the supervised processes need.
  static constexpr size_t kMaxConnections = 256;
  // While a reply is pending (a stop waiting for its process), a space
  // goes to the client this often: JSON ignores it, and the client can
  // tell a long command from a daemon that does not run any more (well
  // within the CLI's --timeout, which is 10 s by default).
  static constexpr std::chrono::milliseconds kHeartbeat{250};
  // Connections accepted (and, when their line is already there, served)
  // per wake-up of the listening socket.
  static constexpr int kAcceptsPerWakeup = 8;
  using Reply = std::function<void(const nlohmann::json&)>;
  using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;
  using Rejected = std::function<void(const std::string& error)>;

  ControlServer(EventLoop& loop, Handler handler, Rejected on_reject);
  ~ControlServer();

  // Binds path; fails if another daemon answers there.
  bool listen(const std::string& path, std::string& error);

  // Requests with this `cmd` are answered with the JSON text `make`
  // returns, written as it is (non-blocking, like every reply) instead of
  // through the handler: a reply the daemon serializes itself, without a
  // JSON tree (`status` of a thousand watches).
  using TextHandler = std::function<std::string(const nlohmann::json& request)>;
  void answer_with_text(std::string cmd, TextHandler make);

  // While the handler runs: a token of that request's connection, which
  // expires when the connection closes (the client went away), so that a
  // reply held for long (`vigil wait`) can be dropped early.
  std::weak_ptr<void> connection() const { return current_; }

 private:
  struct Conn {
    Fd fd;
    WatchId watch = 0;
    std::string in;
    std::string out;
    size_t out_off = 0;
    bool taken = false;  // the request was read; only the reply is left
    TimerId idle_timer = 0;
    TimerId beat_timer = 0;  // heartbeats while the reply is pending
    std::shared_ptr<void> token = std::make_shared<int>(0);  // see connection()
  };
  void on_accept();
  void on_readable(uint64_t id);
  void on_writable(uint64_t id);
  void send(uint64_t id, const nlohmann::json& reply);
  void send_text(uint64_t id, std::string text);
  void close_conn(uint64_t id);
  void heartbeat(uint64_t id);
  void pause_accepting(const std::string& why);

  EventLoop& loop_;
  Handler handler_;
  Rejected on_reject_;
  Fd listen_fd_;
  WatchId listen_watch_ = 0;
  TimerId accept_timer_ = 0;  // accepting paused: out of fds
  std::string path_;
  std::map<uint64_t, Conn> conns_;
  std::map<std::string, TextHandler, std::less<>> text_handlers_;
  uint64_t next_id_ = 1;
  std::weak_ptr<void> current_;
};

}  // namespace vigil

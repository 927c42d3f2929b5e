// ProbeEngine: HTTP(S) and TCP checks run concurrently on the event loop,
// never blocking it. HTTP goes through libcurl's multi *socket* interface
// (its sockets and timers are the loop's); TCP is a nonblocking connect,
// with an optional exchange. Name resolution never blocks the loop.
//
// A check reports exactly once, through its callback, always later than
// the call that started it (never from inside http()/tcp()), unless it
// was cancelled first. This is the mechanism; the probe policy (every,
// fails, success, startup, what a failure means) is the supervisor's and
// the rules'.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "host/loop/event_loop.hpp"
#include "host/net/http_client.hpp"  // validate_http_url

namespace vigil {

struct HttpCheck {
  std::string url;             // http:// or https://
  std::string method = "GET";  // GET or HEAD
  int status_min = 200;        // accepted status range
  int status_max = 399;
  std::string body;  // a substring the body must contain ("": any)
  // Response headers that must be present: name (any case) -> a substring
  // of the value ("": any value).
  std::vector<std::pair<std::string, std::string>> expect_headers;
  std::vector<std::pair<std::string, std::string>> send_headers;
  double timeout = 5;          // seconds for the whole request
  double connect_timeout = 0;  // 0: the same as timeout
  bool tls_verify = true;
  std::string unix_socket;  // connect through this unix socket instead
  bool operator==(const HttpCheck&) const = default;
};

struct TcpCheck {
  std::string host = "127.0.0.1";  // an address, or a name (resolved without blocking)
  int port = 0;
  std::string send;    // written once connected ("": nothing)
  std::string expect;  // a substring the first bytes received must contain ("": none)
  double timeout = 5;
  bool operator==(const TcpCheck&) const = default;
};

struct ProbeResult {
  bool ok = false;
  std::string reason;   // failure: one line, e.g. "status 500, expected 200-399"
  double elapsed = 0;   // seconds from start to result
  int status = 0;       // HTTP status (0: no response)
  std::string excerpt;  // evidence: the first bytes of the body or reply (at most 512)
  std::string body;     // for rules that read it: HTTP, the body's first 64 KB;
                        // TCP, the reply's first 4 KB (never cut to the excerpt)
};

using ProbeId = uint64_t;

class ProbeEngine {
 public:
  using Done = std::function<void(const ProbeResult&)>;

  explicit ProbeEngine(EventLoop& loop);
  ~ProbeEngine();  // cancels everything; no callback runs
  ProbeEngine(const ProbeEngine&) = delete;
  ProbeEngine& operator=(const ProbeEngine&) = delete;

  ProbeId http(const HttpCheck& check, Done done);
  ProbeId tcp(const TcpCheck& check, Done done);
  // Safe at any time, also from inside a callback; the check's callback
  // will not run.
  void cancel(ProbeId id);
  size_t in_flight() const;

  struct Impl;  // opaque: the implementation's own

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vigil

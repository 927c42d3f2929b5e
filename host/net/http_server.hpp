// HttpServer: HTTP/1.1 on the event loop, the one owner of serving network
// I/O (control socket, Prometheus endpoint, remote API). Listeners on a
// unix path or TCP, plain or TLS (host/net/tls.hpp), connections read and
// written only when epoll says so; requests parsed with http_parser
// (libhttp-parser), routed by an HttpRouter, answered through an HttpReply
// that may answer at once or later, stream chunks, or stream Server-Sent
// Events.
//
// Limits (per listener, HttpLimits): request line + headers (431), body
// (413, Content-Length only: a chunked request body is 411), a deadline to
// send the headers and body (slow clients are closed), an idle keep-alive
// timeout, a TLS handshake deadline, a send deadline (a client that does
// not read its reply), a connection cap (503 and close). Keep-alive and
// pipelining: replies go out in request order. No byte sequence crashes it
// or leaks an fd; nothing blocks the loop.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/core/clock.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/address.hpp"
#include "host/net/transport.hpp"

namespace vigil {

class TlsServerContext;

// Name → value, looked up with string_view.
using HttpFields = std::map<std::string, std::string, std::less<>>;
// Headers of a reply, in order (a name may repeat).
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ... as sent
  std::string target;  // as sent: "/v1/events?since=3"
  std::string path;    // percent-decoded, without the query: "/v1/events"
  HttpFields query;    // percent-decoded ('+' is a space); a repeated key keeps the last value
  HttpFields headers;  // names lower-case; a repeated header's values joined with ", "
  std::string body;
  HttpFields params;   // the route's {name} segments, decoded
  Identity identity;   // the transport's peer(); a `before` hook may refine it (a token)
  std::string remote;  // "10.1.0.3:51234", "[::1]:40000" or "unix" (for log lines)
  int http_minor = 1;  // HTTP/1.x
  // "" when absent.
  std::string header(std::string_view lower_name) const;
  std::string param(std::string_view name) const;
  // The query value of key, or nullptr.
  const std::string* query_value(std::string_view key) const;
};

// The answer to one request: a small copyable handle, valid after the
// handler returned (answer later) and harmless after the client went away
// (every call is then a no-op that returns false). Exactly one of send(),
// begin_chunked() or begin_events() starts the answer; later calls to start
// another are ignored. Replies on one connection go out in request order:
// what a later request answers first waits for the earlier ones.
class HttpReply {
 public:
  HttpReply() = default;  // answers nothing (tests, a dropped request)

  // A whole reply: Content-Length, then body. Content-Type omitted when
  // content_type is empty.
  void send(int status, std::string_view content_type, std::string body,
            const HttpHeaders& extra = {});

  // An error answer in the listener's error format (error_body; plain
  // text by default), as the server's own 404/405/413... are.
  void error(int status, const std::string& message, const HttpHeaders& extra = {});

  // A chunked reply: headers now, then any number of chunks, then end().
  bool begin_chunked(int status, std::string_view content_type, const HttpHeaders& extra = {});
  bool chunk(std::string_view data);  // an empty chunk is skipped, not the end
  void end();

  // Server-Sent Events: 200, text/event-stream, Cache-Control: no-cache,
  // chunked. The stream lasts until end() or the client goes away; the
  // listener's idle timeout does not apply to it (send comments as
  // keep-alives).
  bool begin_events(const HttpHeaders& extra = {});
  // "id: ID\nevent: TYPE\ndata: ...\n\n": one data line per line of data;
  // id and type are left out when empty.
  bool event(std::string_view id, std::string_view type, std::string_view data);
  bool comment(std::string_view text = {});  // ": text\n\n", a keep-alive

  // A reply that may be held long (a stop waiting for its process): when
  // it is not answered within `every`, the status line and headers go out
  // (200, content_type, chunked) and then one space chunk every `every`
  // until send() writes its body as the last chunk; send()'s status is
  // then not the one the client sees (the body says how it ended). JSON
  // ignores the spaces; a client's per-byte timeout keeps working.
  void heartbeat(Duration every, std::string_view content_type);

  // Closes the connection once this reply is out (no keep-alive).
  void close_after();

  // The client is still connected and this reply not finished.
  bool open() const;
  bool answered() const;  // the answer has started
  // Bytes queued for the client and not written yet (a slow SSE reader).
  size_t queued() const;
  // Runs once when the connection closes before this reply finished (the
  // client went away, a deadline, the listener closed). Not run after a
  // reply that finished, nor when the server is destroyed.
  void on_close(std::function<void()> callback);
  // Expires when the connection closes (for holders that only need to
  // know, such as `vigil wait`).
  std::weak_ptr<void> token() const;

  struct Exchange;  // the server's side; opaque
  explicit HttpReply(std::shared_ptr<Exchange> exchange) : x_(std::move(exchange)) {}

 private:
  std::shared_ptr<Exchange> x_;
};

using HttpHandler = std::function<void(HttpRequest& request, HttpReply reply)>;

// Method + path pattern → handler. A pattern is literal segments and
// {name} segments (one segment, percent-decoded into request.params);
// a last segment {name...} takes the rest of the path. A literal segment
// wins over a {name} at the same place. No match: 404; the path matches
// with another method: 405 with Allow.
class HttpRouter {
 public:
  // Replaces a handler added before for the same method and pattern.
  void add(std::string method, std::string pattern, HttpHandler handler);
  // Every route of other (added after, so other's win on equal patterns).
  void mount(const HttpRouter& other);

  // Finds the handler for request (filling request.params) and runs it;
  // answers 404/405 itself when there is none. false when it answered so.
  bool dispatch(HttpRequest& request, HttpReply reply) const;

  struct Route {
    std::string method;
    std::string pattern;
  };
  std::vector<Route> routes() const;

 private:
  struct Entry {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    HttpHandler handler;
  };
  const Entry* match(HttpRequest& request, std::string& allow) const;
  std::vector<Entry> entries_;
};

struct HttpLimits {
  size_t max_head_bytes = 16 * 1024;     // request line + headers: 431 beyond
  size_t max_body_bytes = 1024 * 1024;   // Content-Length: 413 beyond
  Duration request_timeout = std::chrono::seconds(10);    // first byte to whole request
  Duration idle_timeout = std::chrono::seconds(30);       // keep-alive wait for the next request
  Duration handshake_timeout = std::chrono::seconds(10);  // TLS
  Duration send_timeout = std::chrono::seconds(30);       // queued output not moving
  size_t max_connections = 256;          // more: 503 and close
  size_t max_pipelined = 16;             // requests read ahead of their replies
  size_t max_queued_bytes = 8 * 1024 * 1024;  // output queued for one client: closed beyond
};

struct HttpListenerOptions {
  std::string name = "http";  // names the listener in errors: "control", "metrics", "api"
  HttpLimits limits;
  // TLS: every connection is handshaken first; nullptr: plain.
  std::shared_ptr<TlsServerContext> tls;
  // false: every reply closes its connection (Connection: close), for
  // clients that read a reply to its end.
  bool keep_alive = true;
  // Unix listeners: the socket's mode, and whether only root or our own
  // uid may connect (SO_PEERCRED; others are closed at once).
  mode_t unix_mode = 0600;
  bool same_user_only = true;
  // Before routing, for every request: false when it answered itself
  // (401, 403); it may set request.identity (a bearer token's name).
  std::function<bool(HttpRequest& request, HttpReply& reply)> before;
  // What went wrong, for a log line: a peer refused, the cap reached,
  // a handshake failed, accepting paused (out of fds), a bad request.
  std::function<void(const std::string& what)> on_error;
  // The body of the answers the server makes itself (400, 404, 405, 411,
  // 413, 431, 503): plain text when unset. May set content_type.
  std::function<std::string(int status, const std::string& message, std::string& content_type)>
      error_body;
  // Connections accepted per wake-up of the listening socket (the loop
  // must get back to the supervised processes).
  int accepts_per_wakeup = 8;
};

class HttpServer {
 public:
  using ListenerId = uint64_t;

  explicit HttpServer(EventLoop& loop);
  ~HttpServer();  // closes every listener and connection (no on_close callbacks)
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The routes every listener serves (add before or after listening).
  HttpRouter& router() { return router_; }

  // 0 and error ("api 0.0.0.0:8443: Address already in use") on failure.
  ListenerId listen(const ListenAddress& address, HttpListenerOptions options, std::string& error);
  // Fails when another process answers on path; else replaces a stale socket.
  ListenerId listen_unix(const std::string& path, HttpListenerOptions options, std::string& error);

  // The bound TCP port (the kernel's pick when listening on port 0); 0 for none.
  int port(ListenerId id) const;
  // New connections use it; open ones keep theirs until they close (reload).
  void set_tls(ListenerId id, std::shared_ptr<TlsServerContext> tls);
  void set_limits(ListenerId id, const HttpLimits& limits);
  // Stops listening (a unix path is removed) and closes its connections;
  // their replies' on_close callbacks run.
  void close(ListenerId id);

  size_t connections() const;               // open now, all listeners
  size_t connections(ListenerId id) const;  // open now on one listener

  struct Stats {
    uint64_t accepted = 0;
    uint64_t requests = 0;
    uint64_t refused = 0;    // over the cap, or a peer uid not allowed
    uint64_t bad = 0;        // answered 4xx by the server itself (400, 411, 413, 431)
    uint64_t timed_out = 0;  // closed by a deadline
  };
  const Stats& stats() const { return stats_; }

  struct Impl;  // the connection table and the listeners (http_server.cpp)

 private:
  EventLoop& loop_;
  HttpRouter router_;
  Stats stats_;
  std::unique_ptr<Impl> impl_;
};

// The standard reason phrase ("Not Found"); "Unknown" for others.
std::string_view http_reason(int status);
// Percent-encoding of one path segment or query value (unreserved kept).
std::string percent_encode(std::string_view text);
// Percent-decoding; '+' becomes a space when plus_is_space (queries).
// false for a bad escape.
bool percent_decode(std::string_view text, std::string& out, bool plus_is_space);

}  // namespace vigil

// HttpClient: HTTP/1.1 (and HTTPS) requests on the EventLoop, through
// libcurl's multi *socket* interface: curl says which sockets to watch and
// when to wake it, the loop does the waiting. ONE curl multi handle per
// EventLoop serves every user (probes, remote peers, the etcd and Docker
// clients), so connections are kept alive and reused across users.
// libcurl is loaded (dlopen) at the first request, not at start: a daemon
// that never makes a request never maps curl or its TLS stack.
//
// Targets: http:// and https:// URLs over TCP, or any URL through a unix
// socket (HttpClientRequest::unix_socket; the URL then only names the path and
// the Host header, e.g. "http://localhost/v1.41/events"). Names are
// resolved by curl's threaded resolver, never on the loop.
//
// A request reports exactly once, through on_done, always later than the
// start() call (never from inside it), unless it was cancelled first.
// cancel() is safe at any time, also from inside the request's own
// callbacks (on_headers, on_line, on_done) and from another request's.
//
// Streaming (SSE, docker events, etcd watch): set on_line. For a 2xx
// response each body line is handed over as soon as its '\n' arrives,
// whatever the packet boundaries; the stream may last forever (set
// timeout to zero), but one line may not exceed max_line (the request then
// ends with an error). A non-2xx response's body is not streamed: it is
// collected into HttpResponse::body for on_done (an error's JSON).
//
// A peer's event stream, for example:
//
//   auto client = HttpClient::for_loop(loop);       // kept by the peer
//   HttpClientRequest q;
//   q.url = "https://10.1.0.2:8443/v1/events/stream";
//   q.tls = {.ca_file = ca, .cert_file = cert, .key_file = key};
//   q.headers = {{"Accept", "text/event-stream"}, {"Last-Event-ID", sse.last_id()}};
//   q.timeout = Duration::zero();                    // a stream has no end
//   q.idle_timeout = std::chrono::seconds(15);       // keep-alives come every 5 s
//   stream = client->start(q, {.on_headers = ..., .on_line = [&](auto l) { sse.line(l); },
//                              .on_done = [&](const HttpResponse& r) { reconnect_later(r); }});
//   ...
//   client->cancel(stream);                          // the peer is removed
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/loop/event_loop.hpp"

namespace vigil {

struct HttpTlsOptions {
  bool verify = true;       // the server's certificate chain and its host name
  std::string ca_file;      // PEM CA bundle; "": the system's
  std::string cert_file;    // PEM client certificate (mutual TLS); "": none
  std::string key_file;     // its PEM private key; "": in cert_file
  // "sha256//BASE64" (several joined by ';'): the server's public key must
  // be one of these (CURLOPT_PINNEDPUBLICKEY), checked also with verify on.
  std::string pinned_key;
  bool operator==(const HttpTlsOptions&) const = default;
};

struct HttpClientRequest {
  std::string method = "GET";  // GET, HEAD, POST, PUT, DELETE, PATCH
  std::string url;             // http://... or https://...
  std::string unix_socket;     // connect through this unix socket instead of TCP
  std::vector<std::pair<std::string, std::string>> headers;  // sent as given
  std::string body;            // sent for POST/PUT/PATCH (also when empty)
  std::string bearer_token;    // "": none; else "Authorization: Bearer <token>"
  Duration timeout = std::chrono::seconds(30);          // the whole request; zero: no limit
  Duration connect_timeout = std::chrono::seconds(10);  // zero: the same as timeout
  // Streams: fail when no byte arrived for this long (zero: never). An SSE
  // server's keep-alive comments keep it alive.
  Duration idle_timeout{0};
  HttpTlsOptions tls;
  size_t max_body = 1024 * 1024;  // kept in HttpResponse::body; the rest is read and dropped
  size_t max_line = 1024 * 1024;  // streaming: the longest line accepted
  bool operator==(const HttpClientRequest&) const = default;

  // Reads a bearer token from a file (its first line, trimmed) into
  // bearer_token. false with error naming the file ("token file
  // /etc/vigil/t: no such file", "... is readable by others (mode 0644):
  // chmod 600", "... is empty").
  bool load_bearer_token(const std::string& path, std::string& error);
};

// Seconds from the start of the request to each stage (0: not reached).
struct HttpTimings {
  double resolve = 0;     // name resolved
  double connect = 0;     // TCP (or unix) connected
  double tls = 0;         // TLS handshake done
  double first_byte = 0;  // the first response byte
  double total = 0;       // on_done
};

struct HttpResponse {
  int status = 0;  // 0: no response
  // In order of arrival, names as sent (the last response's, after a
  // 100 Continue). header() finds one by name in any case.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;        // the first max_body bytes (not the streamed lines)
  bool truncated = false;  // the body was longer than max_body
  // "": the exchange completed (whatever the status). Otherwise one line
  // in words: "connection refused", "cannot resolve host 'nodeb'", "timed
  // out after 5.0 s (connecting)", "timed out after 5.0 s (no answer)",
  // "no data for 30.0 s (idle timeout)", "TLS: SSL certificate problem:
  // unable to get local issuer certificate", "TLS: the server's public key
  // does not match the pin", "a line longer than 1048576 bytes".
  // "cancelled" is never reported (cancel means no callback).
  std::string error;
  enum class Failure { None, Resolve, Connect, Timeout, Tls, Pin, LineTooLong, Other };
  Failure failure = Failure::None;
  bool reused_connection = false;  // went over a kept-alive connection
  HttpTimings timings;

  bool ok() const { return error.empty(); }
  // nullptr when absent.
  const std::string* header(std::string_view name) const;
};

using RequestId = uint64_t;

struct HttpHandlers {
  // Optional: the status line and headers are in (before the first line
  // or body byte). Only status, headers and timings are set.
  std::function<void(const HttpResponse&)> on_headers;
  // Set: streaming mode. A line without its "\n" (and "\r"). A last line
  // without "\n" is handed over when the stream ends well (not when a
  // timeout or a reset cut it).
  std::function<void(std::string_view line)> on_line;
  // Exactly once unless cancelled; after it the request is gone.
  std::function<void(const HttpResponse&)> on_done;
};

class HttpClient {
 public:
  explicit HttpClient(EventLoop& loop);
  ~HttpClient();  // cancels everything; no callback runs
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // The loop's shared client (one curl multi handle per EventLoop), made
  // at the first call and kept alive by its users: hold the shared_ptr as
  // long as you make requests. Single-threaded, like the loop.
  static std::shared_ptr<HttpClient> for_loop(EventLoop& loop);

  // Starts a request. Problems found at once (a bad URL, libcurl missing)
  // are reported through on_done too, later.
  RequestId start(HttpClientRequest request, HttpHandlers handlers);
  // Safe at any time, also from inside any callback; no callback of the
  // request runs after it. Unknown or finished ids are ignored.
  void cancel(RequestId id);
  size_t in_flight() const;

  struct Impl;  // opaque

 private:
  std::unique_ptr<Impl> impl_;
};

// Runs one request to completion on a private EventLoop and returns its
// response (the CLI's `--node https://...`: a short program with no loop
// of its own). Blocks the calling thread: never call it on a running
// loop. on_line, when given, streams as HttpHandlers::on_line does.
HttpResponse http_run(HttpClientRequest request,
                      std::function<void(std::string_view line)> on_line = nullptr);

// Server-Sent Events from a stream's lines (feed it on_line's lines): a
// blank line ends an event; "id:", "event:", "data:" (joined by '\n'),
// "retry:" fields; comments (":...") are ignored. The last id seen stays
// for a reconnection's Last-Event-ID. One parser per connection: a new
// stream starts with a new parser (a cut event is not completed by it).
class SseParser {
 public:
  struct Event {
    std::string id;     // the event's id, or the last one seen before it
    std::string type;   // "event:", "message" when none
    std::string data;
    // The event had an "id:" line of its own (id is not inherited): a
    // user that drops ids it has seen must not drop an event without one
    // (vigil's `event: gap` carries none).
    bool own_id = false;
  };
  using OnEvent = std::function<void(const Event&)>;
  explicit SseParser(OnEvent on_event) : on_event_(std::move(on_event)) {}
  void line(std::string_view line);
  const std::string& last_id() const { return last_id_; }
  // "retry:" in milliseconds, -1 when the server sent none.
  long retry_ms() const { return retry_ms_; }

 private:
  OnEvent on_event_;
  std::string last_id_;
  bool own_id_ = false;  // an "id:" line in the event being read
  std::string type_;
  std::string data_;
  bool has_data_ = false;
  long retry_ms_ = -1;
};

// Check-time validation: nullopt, or an error naming the value, e.g.
// "'ftp://x' is not an http:// or https:// URL".
std::optional<std::string> validate_http_url(const std::string& url);

}  // namespace vigil

#include "host/net/http_server.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>
#include <deque>

#include "host/core/strings.hpp"
#include "host/net/tls.hpp"

namespace vigil {

// ---------------------------------------------------------------- helpers

std::string_view http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

std::string percent_encode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

bool percent_decode(std::string_view text, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(text.size());
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return false;
      int hi = nibble(text[i + 1]), lo = nibble(text[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return true;
}

std::string HttpRequest::header(std::string_view lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

std::string HttpRequest::param(std::string_view name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

const std::string* HttpRequest::query_value(std::string_view key) const {
  auto it = query.find(key);
  return it == query.end() ? nullptr : &it->second;
}

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool is_param(const std::string& seg) {
  return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
}
bool is_rest(const std::string& seg) { return is_param(seg) && seg.ends_with("...}"); }
std::string param_name(const std::string& seg) {
  std::string n = seg.substr(1, seg.size() - 2);
  if (n.ends_with("...")) n.resize(n.size() - 3);
  return n;
}

}  // namespace

// ---------------------------------------------------------------- router

void HttpRouter::add(std::string method, std::string pattern, HttpHandler handler) {
  for (auto& e : entries_)
    if (e.method == method && e.pattern == pattern) {
      e.handler = std::move(handler);
      return;
    }
  Entry e{std::move(method), std::move(pattern), {}, std::move(handler)};
  e.segments = split_path(e.pattern);
  entries_.push_back(std::move(e));
}

void HttpRouter::mount(const HttpRouter& other) {
  for (const auto& e : other.entries_) add(e.method, e.pattern, e.handler);
}

std::vector<HttpRouter::Route> HttpRouter::routes() const {
  std::vector<Route> out;
  for (const auto& e : entries_) out.push_back({e.method, e.pattern});
  return out;
}

// The request path is split on raw '/' before decoding, so an encoded
// slash (%2F) stays inside its segment (a name may hold one).
const HttpRouter::Entry* HttpRouter::match(HttpRequest& request, std::string& allow) const {
  std::string_view target = request.target;
  target = target.substr(0, target.find('?'));
  std::vector<std::string> raw = split_path(target);
  const Entry* best = nullptr;
  int best_score = -1;
  HttpFields best_params;
  for (const auto& e : entries_) {
    HttpFields params;
    int score = 0;  // literal segments matched, earlier ones weigh more
    bool ok = true;
    size_t i = 0;
    for (; i < e.segments.size(); ++i) {
      const std::string& seg = e.segments[i];
      if (is_rest(seg)) {
        std::string rest, part;
        for (size_t k = i; k < raw.size(); ++k) {
          if (!percent_decode(raw[k], part, false)) {
            ok = false;
            break;
          }
          rest += (k > i ? "/" : "") + part;
        }
        params[param_name(seg)] = rest;
        i = raw.size();
        break;
      }
      if (i >= raw.size()) {
        ok = false;
        break;
      }
      if (is_param(seg)) {
        std::string v;
        if (!percent_decode(raw[i], v, false) || v.empty()) {
          ok = false;
          break;
        }
        params[param_name(seg)] = std::move(v);
      } else {
        std::string v;
        if (!percent_decode(raw[i], v, false) || v != seg) {
          ok = false;
          break;
        }
        score += 1 << std::max(0, 16 - static_cast<int>(i));
      }
    }
    if (!ok || i != raw.size()) continue;
    if (e.method != request.method && !(request.method == "HEAD" && e.method == "GET")) {
      if (allow.find(e.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + e.method;
      continue;
    }
    if (score > best_score) {
      best = &e;
      best_score = score;
      best_params = std::move(params);
    }
  }
  if (best) request.params = std::move(best_params);
  return best;
}

bool HttpRouter::dispatch(HttpRequest& request, HttpReply reply) const {
  std::string allow;
  const Entry* e = match(request, allow);
  if (e) {
    e->handler(request, std::move(reply));
    return true;
  }
  if (!allow.empty())
    reply.error(405, request.method + " is not allowed on " + request.path + " (allowed: " + allow + ")",
                {{"Allow", allow}});
  else
    reply.error(404, "no resource " + request.path);
  return false;
}

// ---------------------------------------------------------------- server state

struct HttpReply::Exchange {
  HttpServer::Impl* impl = nullptr;
  std::weak_ptr<void> life;  // expires with the server
  uint64_t conn = 0;
  std::weak_ptr<void> token;  // the connection's
  bool head = false;          // HEAD: headers only
  bool keep_alive = true;
  bool started = false;
  bool finished = false;
  bool closed = false;  // the connection went away
  bool chunked = false;
  std::string out;  // written once this exchange is the connection's first
  std::function<void()> on_close;
  TimerId beat = 0;
  Duration beat_every{0};
  std::string beat_type;
  bool held = false;  // heartbeat headers went out
};

struct HttpServer::Impl {
  struct Listener {
    ListenerId id = 0;
    Fd fd;
    WatchId watch = 0;
    TimerId accept_timer = 0;
    HttpListenerOptions options;
    int port = 0;
    std::string path;  // unix
    std::string label;
    size_t open = 0;
  };

  struct Conn {
    Impl* impl = nullptr;
    uint64_t id = 0;
    ListenerId listener = 0;
    HttpLimits limits;
    std::shared_ptr<TlsServerContext> tls;  // kept for the connection's life (reload)
    std::unique_ptr<Transport> t;
    WatchId watch = 0;
    uint32_t events = 0;
    bool handshaking = false;
    bool closed = false;
    bool reading_done = false;  // no more requests: an error answered, or close asked
    bool peer_closed = false;   // the client's side is shut (half-close)
    bool close_when_flushed = false;
    bool draining = false;  // the last reply is out; reading what the client still sends
    std::string remote;
    Identity identity;
    http_parser parser{};
    bool in_message = false;
    bool headers_done = false;
    size_t head_bytes = 0;
    HttpRequest cur;
    std::string field, value;
    bool last_was_value = false;
    int error_status = 0;  // set by a callback: answer it, then close
    std::string error_text;
    std::string unparsed;  // read while the parser was paused
    std::deque<HttpRequest> ready;
    std::deque<std::shared_ptr<HttpReply::Exchange>> pipeline;
    std::string wbuf;
    size_t woff = 0;
    MonoTime since;          // the state below began
    MonoTime request_start;  // first byte of the request now being read
    MonoTime progress;       // output last moved
    TimerId timer = 0;
    MonoTime timer_at;
    std::shared_ptr<int> token = std::make_shared<int>(0);
  };

  Impl(HttpServer& s, EventLoop& l) : server(s), loop(l) {
    http_parser_settings_init(&settings);
    settings.on_message_begin = &Impl::on_message_begin;
    settings.on_url = &Impl::on_url;
    settings.on_header_field = &Impl::on_header_field;
    settings.on_header_value = &Impl::on_header_value;
    settings.on_headers_complete = &Impl::on_headers_complete;
    settings.on_body = &Impl::on_body;
    settings.on_message_complete = &Impl::on_message_complete;
  }

  ~Impl() {
    for (auto& [id, c] : conns) {
      for (auto& x : c->pipeline) {
        if (x->beat) loop.cancel(x->beat);
        x->closed = true;
      }
      if (c->watch) loop.remove(c->watch);
      if (c->timer) loop.cancel(c->timer);
    }
    for (auto& [id, l] : listeners) stop_listener(*l);
  }

  HttpServer& server;
  EventLoop& loop;
  http_parser_settings settings{};
  std::map<ListenerId, std::unique_ptr<Listener>> listeners;
  std::map<uint64_t, std::shared_ptr<Conn>> conns;
  ListenerId next_listener = 1;
  uint64_t next_conn = 1;
  std::shared_ptr<int> life = std::make_shared<int>(0);

  void report(const Listener& l, const std::string& what) {
    if (l.options.on_error) l.options.on_error(l.label + ": " + what);
  }
  Listener* listener(ListenerId id) {
    auto it = listeners.find(id);
    return it == listeners.end() ? nullptr : it->second.get();
  }
  std::shared_ptr<Conn> conn(uint64_t id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : it->second;
  }

  // A bound listening socket starts accepting: its id.
  ListenerId start(std::unique_ptr<Listener> l) {
    l->id = next_listener++;
    ListenerId id = l->id;
    l->watch = loop.add(l->fd.get(), EPOLLIN, [this, id](uint32_t) { on_accept(id); });
    listeners[id] = std::move(l);
    return id;
  }

  void stop_listener(Listener& l) {
    if (l.accept_timer) loop.cancel(l.accept_timer);
    if (l.watch) loop.remove(l.watch);
    l.accept_timer = 0;
    l.watch = 0;
    if (!l.path.empty()) ::unlink(l.path.c_str());
    l.fd.reset();
  }

  // ------------------------------------------------------------ accepting

  void on_accept(ListenerId lid) {
    for (int n = 0;; ++n) {
      Listener* l = listener(lid);
      if (!l || n >= l->options.accepts_per_wakeup) return;
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      Fd fd(accept4(l->fd.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                    SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          pause_accepting(*l, errno_text(errno));
        return;  // else EAGAIN, or an error of that one connection
      }
      if (l->open >= l->options.limits.max_connections) {
        ++server.stats_.refused;
        report(*l, "too many connections (limit " +
                       std::to_string(l->options.limits.max_connections) + "): refused");
        if (!l->options.tls) {
          std::string body = "too many connections (limit " +
                             std::to_string(l->options.limits.max_connections) + ")";
          std::string text = error_body(*l, 503, body);
          ::send(fd.get(), text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        continue;  // closes
      }
      std::string remote = "unix";
      if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        // A reply goes out in several writes (head, body, TLS records):
        // with Nagle, the last small one waits for the client's delayed
        // ACK, 40 ms per keep-alive request (measured: p50 44 ms -> below).
        int one = 1;
        setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      if (ss.ss_family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        char buf[INET_ADDRSTRLEN] = "";
        inet_ntop(AF_INET, &s4->sin_addr, buf, sizeof buf);
        remote = std::string(buf) + ":" + std::to_string(ntohs(s4->sin_port));
      } else if (ss.ss_family == AF_INET6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        char buf[INET6_ADDRSTRLEN] = "";
        inet_ntop(AF_INET6, &s6->sin6_addr, buf, sizeof buf);
        remote = "[" + std::string(buf) + "]:" + std::to_string(ntohs(s6->sin6_port));
      } else if (l->options.same_user_only) {
        ucred cred{};
        socklen_t cl = sizeof cred;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
            (cred.uid != 0 && cred.uid != geteuid())) {
          ++server.stats_.refused;
          report(*l, "peer uid " + std::to_string(cred.uid) + " is not allowed");
          continue;  // closes
        }
      }
      auto c = std::make_shared<Conn>();
      c->impl = this;
      c->id = next_conn++;
      c->listener = lid;
      c->limits = l->options.limits;
      c->remote = std::move(remote);
      if (l->options.tls) {
        c->tls = l->options.tls;
        std::string err;
        c->t = c->tls->accept(std::move(fd), err);
        if (!c->t) {
          report(*l, "TLS: " + err);
          continue;
        }
        c->handshaking = true;
      } else {
        c->t = plain_transport(std::move(fd));
      }
      ++server.stats_.accepted;
      ++l->open;
      http_parser_init(&c->parser, HTTP_REQUEST);
      c->parser.data = c.get();
      c->since = c->progress = loop.now();
      uint64_t id = c->id;
      c->events = EPOLLIN | EPOLLRDHUP;
      c->watch = loop.add(c->t->fd(), c->events, [this, id](uint32_t ev) { on_io(id, ev); });
      conns[id] = c;
      if (!c->handshaking) c->identity = c->t->peer();
      arm(*c);
      // A client sends its request right after connecting: it is usually
      // here already. Served now, not a loop iteration later.
      on_io(id, EPOLLIN);
    }
  }

  // Out of file descriptors: the pending connection stays in the backlog
  // and the listening socket stays readable, so retrying at once would spin
  // the loop. Stop listening for a moment; open connections end by their
  // own deadlines and free their fds.
  void pause_accepting(Listener& l, const std::string& why) {
    if (l.accept_timer) return;
    report(l, "cannot accept a connection: " + why + " (retrying in 100 ms)");
    loop.modify(l.watch, 0);
    ListenerId id = l.id;
    l.accept_timer = loop.after(std::chrono::milliseconds(100), [this, id] {
      Listener* ls = listener(id);
      if (!ls) return;
      ls->accept_timer = 0;
      loop.modify(ls->watch, EPOLLIN);
    });
  }

  std::string error_body(const Listener& l, int status, const std::string& message) {
    std::string type = "text/plain; charset=utf-8", body = message + "\n";
    if (l.options.error_body) body = l.options.error_body(status, message, type);
    std::string text = "HTTP/1.1 " + std::to_string(status) + " " + std::string(http_reason(status)) +
                       "\r\nContent-Type: " + type + "\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    return text;
  }

  // ------------------------------------------------------------ deadlines

  // The deadline that applies now: handshake, writing, reading a request,
  // or waiting idle for the next one; none while a reply is pending.
  std::optional<MonoTime> deadline(const Conn& c) const {
    if (c.draining) return c.since + kLinger;
    if (c.handshaking) return c.since + c.limits.handshake_timeout;
    if (c.woff < c.wbuf.size()) return c.progress + c.limits.send_timeout;
    if (c.in_message) return c.request_start + c.limits.request_timeout;
    if (c.pipeline.empty() && c.ready.empty()) return c.since + c.limits.idle_timeout;
    return std::nullopt;
  }

  void arm(Conn& c) {
    auto d = deadline(c);
    if (!d) return;  // the timer, if any, finds nothing due and stops
    if (c.timer && c.timer_at <= *d) return;
    if (c.timer) loop.cancel(c.timer);
    c.timer_at = *d;
    uint64_t id = c.id;
    c.timer = loop.at(*d, [this, id] {
      auto cp = conn(id);
      if (!cp) return;
      cp->timer = 0;
      auto due = deadline(*cp);
      if (!due) return;
      if (*due <= loop.now()) {
        if (!cp->draining) ++server.stats_.timed_out;
        close_conn(*cp, true);
        return;
      }
      arm(*cp);
    });
  }

  // ------------------------------------------------------------ I/O

  void watch_for(Conn& c, uint32_t events) {
    if (c.closed || events == c.events) return;
    c.events = events;
    loop.modify(c.watch, events);
  }

  void update_events(Conn& c) {
    uint32_t ev = 0;
    bool want_read = !c.reading_done && !c.peer_closed && c.ready.size() + c.pipeline.size() < c.limits.max_pipelined;
    if (c.handshaking) ev = c.events;  // set by the handshake
    else {
      if (want_read) ev |= EPOLLIN | EPOLLRDHUP;
      if (c.woff < c.wbuf.size()) ev |= EPOLLOUT;
    }
    watch_for(c, ev);
  }

  void on_io(uint64_t id, uint32_t events) {
    auto c = conn(id);
    if (!c) return;
    if (c->draining) return drain(*c);
    if (c->handshaking) {
      handshake(*c);
      if (c->closed || c->handshaking) return;
      events |= EPOLLIN;  // TLS data may have come with the handshake
    }
    if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) {
      // Gone entirely: a late reply has nobody to go to.
      close_conn(*c, false);
      return;
    }
    if (events & EPOLLOUT) flush(*c);
    if (c->closed) return;
    if (events & (EPOLLIN | EPOLLRDHUP)) read_some(*c);
  }

  void handshake(Conn& c) {
    auto io = c.t->handshake();
    if (io == Transport::Io::Ok) {
      c.handshaking = false;
      c.identity = c.t->peer();
      c.since = loop.now();
      update_events(c);
      arm(c);
      return;
    }
    if (io == Transport::Io::WantRead) return watch_for(c, EPOLLIN | EPOLLRDHUP);
    if (io == Transport::Io::WantWrite) return watch_for(c, EPOLLOUT);
    if (Listener* l = listener(c.listener)) report(*l, c.remote + ": " + c.t->error());
    close_conn(c, false);
  }

  void read_some(Conn& c) {
    char buf[16384];
    // A bounded amount per wake-up: one fast client cannot keep the loop.
    for (int round = 0;; ++round) {
      if (c.closed || c.reading_done) break;
      if (c.unparsed.empty() && c.peer_closed) break;
      if (round >= 16) {
        // TLS records already read are not announced by epoll again.
        if (c.t->buffered()) {
          uint64_t id = c.id;
          loop.post([this, id] {
            if (auto cp = conn(id)) read_some(*cp);
          });
        }
        break;
      }
      if (c.ready.size() + c.pipeline.size() >= c.limits.max_pipelined) break;
      if (!c.unparsed.empty()) {
        std::string left = std::move(c.unparsed);
        c.unparsed.clear();
        feed(c, left.data(), left.size());
        dispatch_ready(c);
        continue;
      }
      size_t got = 0;
      auto io = c.t->read(buf, sizeof buf, got);
      if (io == Transport::Io::Ok) {
        feed(c, buf, got);
        dispatch_ready(c);
        continue;
      }
      if (io == Transport::Io::WantRead) break;
      if (io == Transport::Io::WantWrite) break;
      // Closed (the client shut its side, maybe after its last request)
      // or a reset. Pending replies still go out on a half-closed socket.
      c.peer_closed = true;
      if (c.in_message && !c.closed && c.unparsed.empty()) {
        // http_parser ends a body without Content-Length at EOF.
        http_parser_execute(&c.parser, &settings, nullptr, 0);
        dispatch_ready(c);
      }
      if (c.closed) return;
      if (io == Transport::Io::Error || (c.pipeline.empty() && c.ready.empty())) {
        close_conn(c, false);
        return;
      }
      break;
    }
    if (c.closed) return;
    update_events(c);
    arm(c);
  }

  void feed(Conn& c, const char* data, size_t n) {
    if (c.reading_done) return;
    size_t used = http_parser_execute(&c.parser, &settings, data, n);
    auto err = HTTP_PARSER_ERRNO(&c.parser);
    if (err == HPE_PAUSED) {
      http_parser_pause(&c.parser, 0);
      // The byte that completed the message is consumed; keep the rest.
      c.unparsed.assign(data + used, n - used);
      return;
    }
    if (err != HPE_OK) {
      if (!c.error_status) {
        c.error_status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
        c.error_text = err == HPE_HEADER_OVERFLOW
                           ? "request head too large (limit " + std::to_string(c.limits.max_head_bytes) + " bytes)"
                           : std::string("bad request: ") + http_errno_description(err);
      }
      fail_request(c);
      return;
    }
    if (c.parser.upgrade) {
      c.error_status = 400;
      c.error_text = "bad request: protocol upgrades are not served";
      fail_request(c);
    }
  }

  // The request cannot be read on: answer the error (after the replies
  // before it) and close.
  void fail_request(Conn& c) {
    c.reading_done = true;
    c.in_message = false;
    ++server.stats_.bad;
    Listener* l = listener(c.listener);
    if (l) report(*l, c.remote + ": " + std::to_string(c.error_status) + " " + c.error_text);
    auto x = make_exchange(c, false);
    x->keep_alive = false;
    HttpReply r(x);
    // After the replies ready now (they were read before the bad bytes).
    dispatch_ready(c);
    if (c.closed) return;
    c.pipeline.push_back(x);
    r.error(c.error_status, c.error_text);
  }

  std::shared_ptr<HttpReply::Exchange> make_exchange(Conn& c, bool head) {
    auto x = std::make_shared<HttpReply::Exchange>();
    x->impl = this;
    x->life = life;
    x->conn = c.id;
    x->token = c.token;
    x->head = head;
    return x;
  }

  void dispatch_ready(Conn& c) {
    std::weak_ptr<void> alive = life;
    while (!c.ready.empty() && !c.closed) {
      HttpRequest req = std::move(c.ready.front());
      c.ready.pop_front();
      auto x = make_exchange(c, req.method == "HEAD");
      x->keep_alive = req.http_minor >= 1 ? req.header("connection").find("close") == std::string::npos
                                          : req.header("connection").find("keep-alive") != std::string::npos;
      Listener* l = listener(c.listener);
      if (l && !l->options.keep_alive) x->keep_alive = false;
      if (!x->keep_alive) c.reading_done = true;
      c.pipeline.push_back(x);
      ++server.stats_.requests;
      req.identity = c.identity;
      req.remote = c.remote;
      HttpReply reply(x);
      bool go = true;
      if (l && l->options.before) go = l->options.before(req, reply);
      if (alive.expired()) return;  // the handler ended the server (quit)
      if (go && !x->started) server.router_.dispatch(req, reply);
      if (alive.expired()) return;
    }
  }

  // Moves finished replies' bytes into the write buffer, in order, and
  // writes what the socket takes.
  void flush(Conn& c) {
    for (;;) {
      while (!c.pipeline.empty()) {
        auto& x = c.pipeline.front();
        if (!x->out.empty()) {
          if (c.woff == c.wbuf.size()) {
            c.wbuf.clear();
            c.woff = 0;
          }
          if (c.wbuf.empty()) c.wbuf = std::move(x->out);
          else c.wbuf += x->out;
          x->out.clear();
        }
        if (!x->finished) break;
        if (!x->keep_alive) {
          c.reading_done = true;
          c.close_when_flushed = true;
        }
        c.pipeline.pop_front();
        if (c.pipeline.empty()) c.since = loop.now();  // idle from now
      }
      if (c.woff >= c.wbuf.size()) break;
      size_t put = 0;
      auto io = c.t->write(c.wbuf.data() + c.woff, c.wbuf.size() - c.woff, put);
      if (io == Transport::Io::Ok) {
        c.woff += put;
        c.progress = loop.now();
        if (c.woff == c.wbuf.size()) {
          c.wbuf.clear();
          c.woff = 0;
        }
        continue;
      }
      if (io == Transport::Io::WantWrite || io == Transport::Io::WantRead) break;
      close_conn(c, false);
      return;
    }
    size_t queued = c.wbuf.size() - c.woff;
    for (auto& x : c.pipeline) queued += x->out.size();
    if (queued > c.limits.max_queued_bytes) {
      if (Listener* l = listener(c.listener))
        report(*l, c.remote + ": client does not read its reply (" + std::to_string(queued) +
                       " bytes queued): closed");
      close_conn(c, true);
      return;
    }
    if (c.woff >= c.wbuf.size() && c.close_when_flushed && !c.peer_closed) return linger(c);
    if (c.woff >= c.wbuf.size() &&
        (c.close_when_flushed ||
         (c.peer_closed && c.pipeline.empty() && c.ready.empty() && c.unparsed.empty()))) {
      close_conn(c, false);
      return;
    }
    update_events(c);
    arm(c);
    // Requests read ahead while the pipeline was full.
    if (!c.reading_done && !c.peer_closed && !c.unparsed.empty() &&
        c.ready.size() + c.pipeline.size() < c.limits.max_pipelined) {
      uint64_t id = c.id;
      loop.post([this, id] {
        if (auto cp = conn(id)) read_some(*cp);
      });
    }
  }

  // The last reply is out and the connection ends, but the client may
  // still be sending (a body we refused, pipelined requests): closing now
  // with unread bytes would make TCP reset the connection and the reply
  // could be lost before the client reads it. So: end our side, read and
  // drop what still comes, close at its end or after kLinger.
  static constexpr Duration kLinger = std::chrono::seconds(2);
  void linger(Conn& c) {
    if (c.draining) return;
    c.draining = true;
    c.since = loop.now();
    ::shutdown(c.t->fd(), SHUT_WR);
    watch_for(c, EPOLLIN | EPOLLRDHUP);
    arm(c);
  }
  void drain(Conn& c) {
    char buf[16384];
    for (int round = 0; round < 16; ++round) {  // the rest at the next wake-up
      size_t got = 0;
      auto io = c.t->read(buf, sizeof buf, got);
      if (io == Transport::Io::Ok) continue;
      if (io == Transport::Io::WantRead || io == Transport::Io::WantWrite) return;
      close_conn(c, false);  // the client's end: done
      return;
    }
  }

  void close_conn(Conn& c, bool /*timed_out*/) {
    if (c.closed) return;
    c.closed = true;
    auto keep = conn(c.id);  // alive until this returns
    loop.remove(c.watch);
    c.watch = 0;
    if (c.timer) loop.cancel(c.timer);
    c.timer = 0;
    if (Listener* l = listener(c.listener)) --l->open;
    conns.erase(c.id);
    c.token.reset();
    std::vector<std::function<void()>> callbacks;
    for (auto& x : c.pipeline) {
      x->closed = true;
      if (x->beat) loop.cancel(x->beat);
      x->beat = 0;
      if (!x->finished && x->on_close) callbacks.push_back(std::move(x->on_close));
      x->on_close = nullptr;
    }
    c.pipeline.clear();
    c.ready.clear();
    c.t.reset();  // closes the fd
    std::weak_ptr<void> alive = life;
    for (auto& cb : callbacks) {
      cb();
      if (alive.expired()) return;
    }
  }

  // ------------------------------------------------------------ parser callbacks

  static Conn& of(http_parser* p) { return *static_cast<Conn*>(p->data); }

  bool head_grew(Conn& c, size_t n) {
    c.head_bytes += n;
    if (c.head_bytes <= c.limits.max_head_bytes) return true;
    c.error_status = 431;
    c.error_text = "request head too large (limit " + std::to_string(c.limits.max_head_bytes) + " bytes)";
    return false;
  }

  static int on_message_begin(http_parser* p) {
    Conn& c = of(p);
    c.in_message = true;
    c.headers_done = false;
    c.head_bytes = 0;
    c.cur = HttpRequest();
    c.field.clear();
    c.value.clear();
    c.last_was_value = false;
    c.request_start = MonoClock::now();
    return 0;
  }
  static int on_url(http_parser* p, const char* at, size_t n) {
    Conn& c = of(p);
    c.cur.target.append(at, n);
    if (!c.impl->head_grew(c, n)) return 1;
    return 0;
  }
  static void end_header(Conn& c) {
    if (c.field.empty()) return;
    std::string name = c.field;
    for (char& ch : name) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
    auto [it, fresh] = c.cur.headers.try_emplace(name, c.value);
    if (!fresh) it->second += ", " + c.value;
    c.field.clear();
    c.value.clear();
  }
  static int on_header_field(http_parser* p, const char* at, size_t n) {
    Conn& c = of(p);
    if (c.last_was_value) end_header(c);
    c.last_was_value = false;
    c.field.append(at, n);
    return c.impl->head_grew(c, n + 4) ? 0 : 1;
  }
  static int on_header_value(http_parser* p, const char* at, size_t n) {
    Conn& c = of(p);
    c.last_was_value = true;
    c.value.append(at, n);
    return c.impl->head_grew(c, n) ? 0 : 1;
  }
  static int on_headers_complete(http_parser* p) {
    Conn& c = of(p);
    end_header(c);
    c.headers_done = true;
    c.cur.method = http_method_str(static_cast<http_method>(p->method));
    c.cur.http_minor = p->http_major == 1 ? p->http_minor : 0;
    if (p->http_major != 1) {
      c.error_status = 400;
      c.error_text = "bad request: only HTTP/1.x is served";
      return -1;
    }
    if (p->upgrade) {
      c.error_status = 400;
      c.error_text = "bad request: protocol upgrades are not served";
      return -1;
    }
    if (p->flags & F_CHUNKED) {
      c.error_status = 411;
      c.error_text = "a chunked request body is not accepted: send Content-Length";
      return -1;
    }
    if (p->content_length != ULLONG_MAX && p->content_length > c.limits.max_body_bytes) {
      c.error_status = 413;
      c.error_text = "request body too large (limit " + std::to_string(c.limits.max_body_bytes) + " bytes)";
      return -1;
    }
    // The target: origin form only ("/path?query").
    std::string_view target = c.cur.target;
    if (!target.starts_with("/")) {
      c.error_status = 400;
      c.error_text = "bad request target '" + std::string(target.substr(0, 200)) + "'";
      return -1;
    }
    size_t q = target.find('?');
    std::string_view path = target.substr(0, q);
    size_t hash = path.find('#');
    path = path.substr(0, hash);
    if (!percent_decode(path, c.cur.path, false)) {
      c.error_status = 400;
      c.error_text = "bad percent-encoding in the path '" + std::string(path.substr(0, 200)) + "'";
      return -1;
    }
    if (q != std::string_view::npos) {
      std::string_view query = target.substr(q + 1);
      query = query.substr(0, query.find('#'));
      while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) continue;
        size_t eq = pair.find('=');
        std::string k, v;
        if (!percent_decode(pair.substr(0, eq), k, true) ||
            !percent_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), v, true)) {
          c.error_status = 400;
          c.error_text = "bad percent-encoding in the query '" + std::string(pair.substr(0, 200)) + "'";
          return -1;
        }
        c.cur.query[std::move(k)] = std::move(v);
      }
    }
    // Expect: 100-continue (curl sends it before a body over 1 kB and
    // waits a second for it). Sent only when no earlier request is still
    // unanswered, so the interim reply cannot overtake theirs; otherwise
    // the client sends the body after its own wait.
    if (auto e = c.cur.headers.find("expect"); e != c.cur.headers.end()) {
      std::string v = e->second;
      for (char& ch : v) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
      if (v != "100-continue") {
        c.error_status = 417;
        c.error_text = "expectation '" + e->second.substr(0, 100) + "' cannot be met (only 100-continue)";
        return -1;
      }
      if (c.cur.http_minor >= 1 && p->content_length > 0 && p->content_length != ULLONG_MAX &&
          c.pipeline.empty() && c.ready.empty())
        c.wbuf += "HTTP/1.1 100 Continue\r\n\r\n";
    }
    return 0;
  }
  static int on_body(http_parser* p, const char* at, size_t n) {
    Conn& c = of(p);
    if (c.cur.body.size() + n > c.limits.max_body_bytes) {
      c.error_status = 413;
      c.error_text = "request body too large (limit " + std::to_string(c.limits.max_body_bytes) + " bytes)";
      return 1;
    }
    c.cur.body.append(at, n);
    return 0;
  }
  static int on_message_complete(http_parser* p) {
    Conn& c = of(p);
    c.in_message = false;
    c.ready.push_back(std::move(c.cur));
    c.cur = HttpRequest();
    // One request at a time out of the parser: the next is parsed when
    // this one is queued (so a bad one after it is answered after it).
    http_parser_pause(p, 1);
    return 0;
  }

  // ------------------------------------------------------------ replies

  // The exchange's connection, when it and the server are still there.
  static std::shared_ptr<Conn> live(HttpReply::Exchange& x) {
    if (x.closed || x.life.expired() || !x.impl) return nullptr;
    auto c = x.impl->conn(x.conn);
    return c && !c->closed ? c : nullptr;
  }

  void written(HttpReply::Exchange& x) {
    if (auto c = live(x)) flush(*c);
  }

  // While a reply is pending: the head, then a space chunk every beat.
  void schedule_beat(const std::shared_ptr<HttpReply::Exchange>& x) {
    std::weak_ptr<HttpReply::Exchange> weak = x;
    x->beat = loop.after(x->beat_every, [this, weak] {
      auto ex = weak.lock();
      if (!ex) return;
      ex->beat = 0;
      if (ex->finished || !live(*ex)) return;
      if (!ex->held) {
        ex->held = true;
        ex->started = true;
        ex->out += head_text(200, ex->beat_type, {}, ex->keep_alive);
        ex->out += "Transfer-Encoding: chunked\r\n\r\n";
        append_chunk(ex->out, " ");
      } else if (ex->out.empty()) {
        // A full socket buffer (or a reply before this one still going
        // out) just skips a beat.
        append_chunk(ex->out, " ");
      }
      written(*ex);
      if (!ex->closed && !ex->finished) schedule_beat(ex);
    });
  }

  static void append_chunk(std::string& out, std::string_view data) {
    char size[32];
    snprintf(size, sizeof size, "%zx\r\n", data.size());
    out += size;
    out += data;
    out += "\r\n";
  }

  static std::string head_text(int status, std::string_view type, const HttpHeaders& extra,
                               bool keep_alive) {
    std::string h = "HTTP/1.1 " + std::to_string(status) + " " + std::string(http_reason(status)) + "\r\n";
    if (!type.empty()) h += "Content-Type: " + std::string(type) + "\r\n";
    for (const auto& [k, v] : extra) h += k + ": " + v + "\r\n";
    if (!keep_alive) h += "Connection: close\r\n";
    return h;
  }
};

// ---------------------------------------------------------------- HttpReply

namespace {
void stop_beat(HttpReply::Exchange& x, EventLoop& loop) {
  if (x.beat) loop.cancel(x.beat);
  x.beat = 0;
}
void append_chunk(std::string& out, std::string_view data) {
  HttpServer::Impl::append_chunk(out, data);
}
}  // namespace

void HttpReply::send(int status, std::string_view content_type, std::string body,
                     const HttpHeaders& extra) {
  if (!x_ || x_->finished) return;
  auto c = HttpServer::Impl::live(*x_);
  if (!c) return;
  stop_beat(*x_, x_->impl->loop);
  if (x_->held) {
    // The status line went out with the first heartbeat: the body is the
    // last chunk.
    if (!x_->head) {
      append_chunk(x_->out, body);
      x_->out += "0\r\n\r\n";
    }
  } else if (x_->started) {
    return;
  } else {
    x_->out += HttpServer::Impl::head_text(status, content_type, extra, x_->keep_alive);
    x_->out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    if (!x_->head) x_->out += body;
  }
  x_->started = true;
  x_->finished = true;
  x_->impl->written(*x_);
}

void HttpReply::error(int status, const std::string& message, const HttpHeaders& extra) {
  auto c = x_ ? HttpServer::Impl::live(*x_) : nullptr;
  if (!c) return;
  std::string type = "text/plain; charset=utf-8", body = message + "\n";
  if (auto* l = x_->impl->listener(c->listener); l && l->options.error_body)
    body = l->options.error_body(status, message, type);
  send(status, type, std::move(body), extra);
}

bool HttpReply::begin_chunked(int status, std::string_view content_type, const HttpHeaders& extra) {
  if (!x_ || x_->started) return false;
  auto c = HttpServer::Impl::live(*x_);
  if (!c) return false;
  stop_beat(*x_, x_->impl->loop);
  x_->started = true;
  x_->chunked = true;
  x_->out += HttpServer::Impl::head_text(status, content_type, extra, x_->keep_alive);
  x_->out += "Transfer-Encoding: chunked\r\n\r\n";
  if (x_->head) {
    x_->finished = true;  // no body follows a HEAD
    x_->chunked = false;
  }
  x_->impl->written(*x_);
  return true;
}

bool HttpReply::chunk(std::string_view data) {
  if (!x_ || !x_->chunked || x_->finished || !HttpServer::Impl::live(*x_)) return false;
  if (data.empty()) return true;
  append_chunk(x_->out, data);
  x_->impl->written(*x_);
  return open();
}

void HttpReply::end() {
  if (!x_ || !x_->chunked || x_->finished || !HttpServer::Impl::live(*x_)) return;
  x_->out += "0\r\n\r\n";
  x_->finished = true;
  x_->impl->written(*x_);
}

bool HttpReply::begin_events(const HttpHeaders& extra) {
  HttpHeaders h = extra;
  h.emplace_back("Cache-Control", "no-cache");
  if (!begin_chunked(200, "text/event-stream; charset=utf-8", h)) return false;
  // The stream is a reply that never finishes: no idle timeout applies.
  return true;
}

bool HttpReply::event(std::string_view id, std::string_view type, std::string_view data) {
  std::string text;
  if (!id.empty()) text += "id: " + std::string(id) + "\n";
  if (!type.empty()) text += "event: " + std::string(type) + "\n";
  size_t i = 0;
  do {
    size_t nl = data.find('\n', i);
    std::string_view line = data.substr(i, nl == std::string_view::npos ? std::string_view::npos : nl - i);
    if (line.ends_with('\r')) line.remove_suffix(1);
    text += "data: ";
    text += line;
    text += "\n";
    i = nl == std::string_view::npos ? data.size() + 1 : nl + 1;
  } while (i <= data.size());
  text += "\n";
  return chunk(text);
}

bool HttpReply::comment(std::string_view text) {
  std::string line = ":";
  if (!text.empty()) line += " " + std::string(text.substr(0, text.find('\n')));
  line += "\n\n";
  return chunk(line);
}

void HttpReply::heartbeat(Duration every, std::string_view content_type) {
  if (!x_ || x_->started || !HttpServer::Impl::live(*x_)) return;
  stop_beat(*x_, x_->impl->loop);
  x_->beat_every = every;
  x_->beat_type = content_type;
  x_->impl->schedule_beat(x_);
}

void HttpReply::close_after() {
  if (x_) x_->keep_alive = false;
}

bool HttpReply::open() const { return x_ && !x_->finished && HttpServer::Impl::live(*x_); }
bool HttpReply::answered() const { return x_ && x_->started; }

size_t HttpReply::queued() const {
  if (!x_ || !x_->impl) return 0;
  auto c = HttpServer::Impl::live(*x_);
  if (!c) return 0;
  size_t n = x_->out.size();
  if (!c->pipeline.empty() && c->pipeline.front() == x_) n += c->wbuf.size() - c->woff;
  return n;
}

void HttpReply::on_close(std::function<void()> callback) {
  if (!x_) return;
  if (x_->closed || x_->life.expired()) {
    if (!x_->finished && callback) callback();
    return;
  }
  x_->on_close = std::move(callback);
}

std::weak_ptr<void> HttpReply::token() const { return x_ ? x_->token : std::weak_ptr<void>(); }

// ---------------------------------------------------------------- HttpServer

HttpServer::HttpServer(EventLoop& loop) : loop_(loop), impl_(std::make_unique<Impl>(*this, loop)) {}

HttpServer::~HttpServer() = default;

namespace {
bool tcp_socket(const ListenAddress& a, Fd& fd, int& port, std::string& error) {
  int family = a.v6 ? AF_INET6 : AF_INET;
  fd = Fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = "socket: " + errno_text(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!a.to_sockaddr(ss, len)) {
    error = "'" + a.host + "' is not a numeric " + (a.v6 ? "IPv6" : "IPv4") + " address";
    return false;
  }
  if (a.v6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd.get(), 128) != 0) {
    error = errno_text(errno);
    return false;
  }
  len = sizeof ss;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port = ntohs(a.v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return true;
}
}  // namespace

HttpServer::ListenerId HttpServer::listen(const ListenAddress& address, HttpListenerOptions options,
                                          std::string& error) {
  auto l = std::make_unique<Impl::Listener>();
  l->label = options.name + " " + address.text();
  if (!tcp_socket(address, l->fd, l->port, error)) {
    error = l->label + ": " + error;
    return 0;
  }
  l->options = std::move(options);
  return impl_->start(std::move(l));
}

HttpServer::ListenerId HttpServer::listen_unix(const std::string& path, HttpListenerOptions options,
                                               std::string& error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    error = "socket path too long: " + path;
    return 0;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // Someone answering there? Then another daemon owns it.
  {
    Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      error = "another vigil is already listening on " + path;
      return 0;
    }
  }
  ::unlink(path.c_str());
  auto l = std::make_unique<Impl::Listener>();
  l->fd = Fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!l->fd) {
    error = "socket: " + errno_text(errno);
    return 0;
  }
  // Created with no access for others at all, then given its mode: there
  // is no moment when another user could connect.
  mode_t old = umask(0177);
  int rc = bind(l->fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  umask(old);
  if (rc != 0 || ::listen(l->fd.get(), 128) != 0) {
    error = "cannot listen on " + path + ": " + errno_text(rc != 0 ? err : errno);
    return 0;
  }
  chmod(path.c_str(), options.unix_mode);
  l->path = path;
  l->label = options.name + " " + path;
  l->options = std::move(options);
  return impl_->start(std::move(l));
}

int HttpServer::port(ListenerId id) const {
  auto* l = impl_->listener(id);
  return l ? l->port : 0;
}

void HttpServer::set_tls(ListenerId id, std::shared_ptr<TlsServerContext> tls) {
  if (auto* l = impl_->listener(id)) l->options.tls = std::move(tls);
}

void HttpServer::set_limits(ListenerId id, const HttpLimits& limits) {
  if (auto* l = impl_->listener(id)) l->options.limits = limits;
}

void HttpServer::close(ListenerId id) {
  auto it = impl_->listeners.find(id);
  if (it == impl_->listeners.end()) return;
  impl_->stop_listener(*it->second);
  std::vector<uint64_t> ids;
  for (auto& [cid, c] : impl_->conns)
    if (c->listener == id) ids.push_back(cid);
  impl_->listeners.erase(it);
  std::weak_ptr<void> alive = impl_->life;
  for (uint64_t cid : ids) {
    if (alive.expired()) return;
    if (auto c = impl_->conn(cid)) impl_->close_conn(*c, false);
  }
}

size_t HttpServer::connections() const { return impl_->conns.size(); }

size_t HttpServer::connections(ListenerId id) const {
  auto* l = impl_->listener(id);
  return l ? l->open : 0;
}

}  // namespace vigil

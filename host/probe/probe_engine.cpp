// ProbeEngine: HTTP checks through the loop's shared HttpClient (libcurl's
// multi socket interface, host/net/http_client.hpp), TCP checks as
// nonblocking sockets; a TCP host name is resolved by the loop's Resolver
// (host/net/resolver.hpp). Neither blocks the loop. curl is loaded at the
// first HTTP check, so a daemon without HTTP probes never maps it.
#include "host/probe/probe_engine.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "host/core/strings.hpp"
#include "host/net/resolver.hpp"

namespace vigil {

namespace {

constexpr size_t kBodyMax = 64 * 1024;
constexpr size_t kExcerptMax = 512;
constexpr size_t kReplyMax = 4096;

}  // namespace

struct ProbeEngine::Impl {
  explicit Impl(EventLoop& l)
      : loop(l), client(HttpClient::for_loop(l)), resolver(Resolver::for_loop(l)) {}
  ~Impl();

  struct Check {
    ProbeId id = 0;
    Done done;
    MonoTime started;
    // HTTP
    HttpCheck http;
    RequestId request = 0;
    // TCP
    TcpCheck tcp;
    Fd sock;
    WatchId watch = 0;
    TimerId timer = 0;
    bool connected = false;
    size_t sent = 0;
    std::string reply;
    ResolveId resolving = 0;
  };

  EventLoop& loop;
  std::shared_ptr<HttpClient> client;  // the loop's: one curl multi handle for all
  std::shared_ptr<Resolver> resolver;
  ProbeId next = 1;
  std::map<ProbeId, std::unique_ptr<Check>> checks;
  // Expires with the engine: a failure posted to the loop finds it gone.
  std::shared_ptr<int> alive = std::make_shared<int>(0);

  Check& add(Done done);
  ProbeResult http_result(Check& c, const HttpResponse& response);
  void finish(ProbeId id, ProbeResult r);
  void release(Check& c);
  void fail_later(ProbeId id, std::string reason);

  void tcp_connect(Check& c, const sockaddr* addr, socklen_t len);
  void tcp_event(ProbeId id, uint32_t events);
};

ProbeEngine::Impl::~Impl() {
  for (auto& [id, c] : checks) release(*c);
  checks.clear();
}

ProbeResult ProbeEngine::Impl::http_result(Check& c, const HttpResponse& response) {
  ProbeResult r;
  r.elapsed = to_seconds(loop.now() - c.started);
  const HttpCheck& h = c.http;
  r.status = response.status;
  r.excerpt = response.body.substr(0, kExcerptMax);
  r.body = response.body;
  if (!response.ok()) {
    r.reason = response.error;
    if (r.excerpt.empty()) r.excerpt = response.error.substr(0, kExcerptMax);
    return r;
  }
  if (r.status < h.status_min || r.status > h.status_max) {
    r.reason = "status " + std::to_string(r.status) + ", expected " +
               (h.status_min == h.status_max
                    ? std::to_string(h.status_min)
                    : std::to_string(h.status_min) + "-" + std::to_string(h.status_max));
    return r;
  }
  if (!h.body.empty() && response.body.find(h.body) == std::string::npos) {
    r.reason = "body does not contain '" + h.body + "'";
    return r;
  }
  for (const auto& expected : h.expect_headers) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one.
    const std::string& name = expected.first;
    const std::string& want = expected.second;
    const std::string* got = response.header(name);
    if (!got) {
      r.reason = "header '" + name + "' missing";
      return r;
    }
    if (!want.empty() && got->find(want) == std::string::npos) {
      r.reason = "header '" + name + "' is '" + *got + "', expected '" + want + "'";
      return r;
    }
  }
  r.ok = true;
  return r;
}

void ProbeEngine::Impl::release(Check& c) {
  if (c.request) client->cancel(c.request);
  c.request = 0;
  if (c.resolving) resolver->cancel(c.resolving);
  c.resolving = 0;
  if (c.watch) loop.remove(c.watch);
  c.watch = 0;
  loop.cancel(c.timer);
  c.timer = 0;
  c.sock.reset();
}

void ProbeEngine::Impl::finish(ProbeId id, ProbeResult r) {
  auto it = checks.find(id);
  if (it == checks.end()) return;
  std::unique_ptr<Check> c = std::move(it->second);
  checks.erase(it);
  if (r.body.empty() && !c->reply.empty()) r.body = std::move(c->reply);
  release(*c);
  if (c->done) c->done(r);
}

void ProbeEngine::Impl::fail_later(ProbeId id, std::string reason) {
  loop.post([this, id, alive = std::weak_ptr<int>(alive), reason = std::move(reason)] {
    if (alive.expired()) return;
    ProbeResult r;
    r.reason = reason;
    finish(id, std::move(r));
  });
}

ProbeEngine::ProbeEngine(EventLoop& loop) : impl_(std::make_unique<Impl>(loop)) {}
ProbeEngine::~ProbeEngine() = default;

ProbeEngine::Impl::Check& ProbeEngine::Impl::add(Done done) {
  auto c = std::make_unique<Check>();
  c->id = next++;
  c->done = std::move(done);
  c->started = loop.now();
  Check& ref = *c;
  checks[ref.id] = std::move(c);
  return ref;
}

ProbeId ProbeEngine::http(const HttpCheck& check, Done done) {
  Impl& m = *impl_;
  Impl::Check& ref = m.add(std::move(done));
  ProbeId id = ref.id;
  ref.http = check;
  HttpClientRequest q;
  q.method = check.method == "HEAD" ? "HEAD" : "GET";
  q.url = check.url;
  q.unix_socket = check.unix_socket;
  q.headers = check.send_headers;
  q.timeout = from_seconds(check.timeout);
  q.connect_timeout = from_seconds(check.connect_timeout);
  q.tls.verify = check.tls_verify;
  q.max_body = kBodyMax;
  HttpHandlers h;
  h.on_done = [&m, id](const HttpResponse& response) {
    auto it = m.checks.find(id);
    if (it == m.checks.end()) return;
    it->second->request = 0;  // finished: nothing to cancel
    m.finish(id, m.http_result(*it->second, response));
  };
  ref.request = m.client->start(std::move(q), std::move(h));
  return id;
}

// -- TCP --------------------------------------------------------------

void ProbeEngine::Impl::tcp_connect(Check& c, const sockaddr* addr, socklen_t len) {
  ProbeId id = c.id;
  c.sock = Fd(socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c.sock) return fail_later(id, "socket: " + errno_text(errno));
  if (connect(c.sock.get(), addr, len) != 0 && errno != EINPROGRESS) {
    int err = errno;
    return fail_later(id, err == ECONNREFUSED ? "connection refused" : errno_text(err));
  }
  c.watch = loop.add(c.sock.get(), EPOLLOUT, [this, id](uint32_t ev) { tcp_event(id, ev); });
}

void ProbeEngine::Impl::tcp_event(ProbeId id, uint32_t) {
  auto it = checks.find(id);
  if (it == checks.end()) return;
  Check& c = *it->second;
  ProbeResult r;
  if (!c.connected) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      r.reason = err == ECONNREFUSED ? "connection refused" : errno_text(err);
      r.elapsed = to_seconds(loop.now() - c.started);
      return finish(id, std::move(r));
    }
    c.connected = true;
  }
  while (c.sent < c.tcp.send.size()) {
    ssize_t n =
        ::send(c.sock.get(), c.tcp.send.data() + c.sent, c.tcp.send.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) return;  // writable again later
      r.reason = "send: " + errno_text(errno);
      r.elapsed = to_seconds(loop.now() - c.started);
      return finish(id, std::move(r));
    }
    c.sent += static_cast<size_t>(n);
  }
  if (c.tcp.expect.empty()) {
    r.ok = true;
    r.elapsed = to_seconds(loop.now() - c.started);
    return finish(id, std::move(r));
  }
  loop.modify(c.watch, EPOLLIN);
  char buf[1024];
  for (;;) {
    ssize_t n = ::recv(c.sock.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // more later
    if (n > 0)
      c.reply.append(
          buf, std::min(static_cast<size_t>(n), kReplyMax - std::min(kReplyMax, c.reply.size())));
    r.elapsed = to_seconds(loop.now() - c.started);
    r.excerpt = c.reply.substr(0, kExcerptMax);
    if (c.reply.find(c.tcp.expect) != std::string::npos) {
      r.ok = true;
      return finish(id, std::move(r));
    }
    if (n <= 0 || c.reply.size() >= kReplyMax) {
      r.reason =
          n < 0 ? "recv: " + errno_text(errno) : "reply does not contain '" + c.tcp.expect + "'";
      return finish(id, std::move(r));
    }
  }
}

ProbeId ProbeEngine::tcp(const TcpCheck& check, Done done) {
  Impl& m = *impl_;
  Impl::Check& ref = m.add(std::move(done));
  ProbeId id = ref.id;
  ref.tcp = check;
  if (check.port < 1 || check.port > 65535) {
    m.fail_later(id, "port " + std::to_string(check.port) + " is out of range (1-65535)");
    return id;
  }
  double timeout = check.timeout;
  ref.timer = m.loop.after(from_seconds(timeout), [&m, id, timeout] {
    auto it = m.checks.find(id);
    if (it == m.checks.end()) return;
    it->second->timer = 0;
    ProbeResult r;
    r.elapsed = timeout;
    r.excerpt = it->second->reply.substr(0, kExcerptMax);
    r.reason = "timed out after " + seconds_text(timeout) +
               (it->second->connected ? " (waiting for '" + it->second->tcp.expect + "')"
                                      : " (connecting)");
    m.finish(id, std::move(r));
  });
  auto port = static_cast<uint16_t>(check.port);
  if (auto numeric = numeric_address(check.host, port)) {
    m.tcp_connect(ref, numeric->addr(), numeric->len);
    return id;
  }
  // A name: the check's own timer bounds the lookup too ("connecting").
  Resolver::Options options;
  options.timeout = from_seconds(timeout) + std::chrono::seconds(1);
  ref.resolving = m.resolver->resolve(check.host, port, options, [&m, id](const ResolveResult& res) {
    auto it = m.checks.find(id);
    if (it == m.checks.end()) return;
    Impl::Check& c = *it->second;
    c.resolving = 0;
    if (!res.ok()) {
      ProbeResult r;
      r.reason = "cannot resolve host '" + c.tcp.host + "'";
      r.elapsed = to_seconds(m.loop.now() - c.started);
      return m.finish(id, std::move(r));
    }
    const ResolvedAddress& a = res.addresses.front();
    m.tcp_connect(c, a.addr(), a.len);
  });
  return id;
}

void ProbeEngine::cancel(ProbeId id) {
  auto it = impl_->checks.find(id);
  if (it == impl_->checks.end()) return;
  std::unique_ptr<Impl::Check> c = std::move(it->second);
  impl_->checks.erase(it);
  impl_->release(*c);
}

size_t ProbeEngine::in_flight() const {
  return impl_->checks.size();
}

}  // namespace vigil

// ProbeEngine: libcurl's multi socket interface on the EventLoop for HTTP,
// nonblocking sockets for TCP. curl tells which sockets to watch
// (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION);
// the loop does the waiting. Names are resolved off the loop: curl's
// threaded resolver for HTTP, a short-lived thread for a TCP host name.
// The curl handle is made at the first HTTP check, so a daemon without
// HTTP probes never initialises curl or TLS.
#include "host/probe/probe_engine.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "host/core/dynamic_library.hpp"
#include "host/core/strings.hpp"

namespace vigil {

namespace {

constexpr size_t kBodyMax = 64 * 1024;
constexpr size_t kExcerptMax = 512;
constexpr size_t kReplyMax = 4096;

bool icase_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return tolower(static_cast<unsigned char>(x)) == tolower(static_cast<unsigned char>(y));
         });
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' '))
    s.remove_suffix(1);
  return std::string(s);
}

// libcurl is loaded when the first HTTP check runs, not linked: with its
// TLS and the libraries behind it, it would add about 6 MB to every
// daemon's resident size, also to the many that never probe over HTTP.
struct CurlApi {
  decltype(&::curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&::curl_easy_getinfo) easy_getinfo = nullptr;
  decltype(&::curl_easy_init) easy_init = nullptr;
  decltype(&::curl_easy_setopt) easy_setopt = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_global_init) global_init = nullptr;
  decltype(&::curl_multi_add_handle) multi_add_handle = nullptr;
  decltype(&::curl_multi_cleanup) multi_cleanup = nullptr;
  decltype(&::curl_multi_info_read) multi_info_read = nullptr;
  decltype(&::curl_multi_init) multi_init = nullptr;
  decltype(&::curl_multi_remove_handle) multi_remove_handle = nullptr;
  decltype(&::curl_multi_setopt) multi_setopt = nullptr;
  decltype(&::curl_multi_socket_action) multi_socket_action = nullptr;
  decltype(&::curl_slist_append) slist_append = nullptr;
  decltype(&::curl_slist_free_all) slist_free_all = nullptr;
};

const CurlApi* load_curl(std::string& error) {
  static CurlApi api;
  static std::string failure;
  static bool tried = false;
  if (!tried) {
    tried = true;
    DynamicLibrary lib("libcurl.so.4");
    lib.bind(api.easy_cleanup, "curl_easy_cleanup");
    lib.bind(api.easy_getinfo, "curl_easy_getinfo");
    lib.bind(api.easy_init, "curl_easy_init");
    lib.bind(api.easy_setopt, "curl_easy_setopt");
    lib.bind(api.easy_strerror, "curl_easy_strerror");
    lib.bind(api.global_init, "curl_global_init");
    lib.bind(api.multi_add_handle, "curl_multi_add_handle");
    lib.bind(api.multi_cleanup, "curl_multi_cleanup");
    lib.bind(api.multi_info_read, "curl_multi_info_read");
    lib.bind(api.multi_init, "curl_multi_init");
    lib.bind(api.multi_remove_handle, "curl_multi_remove_handle");
    lib.bind(api.multi_setopt, "curl_multi_setopt");
    lib.bind(api.multi_socket_action, "curl_multi_socket_action");
    lib.bind(api.slist_append, "curl_slist_append");
    lib.bind(api.slist_free_all, "curl_slist_free_all");
    failure = lib.error();
    if (failure.empty() && api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      failure = "curl_global_init failed";
  }
  error = failure;
  return failure.empty() ? &api : nullptr;
}

const CurlApi* g_curl = nullptr;
const CurlApi& curl() {
  return *g_curl;
}

// A name resolved by a thread of its own; the result comes back through
// an eventfd on the loop. Shared, so a cancelled check leaves the thread
// something valid to write to.
struct Resolution {
  Fd efd;
  std::mutex mu;
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string error;
};

}  // namespace

struct ProbeEngine::Impl {
  explicit Impl(EventLoop& l) : loop(l) {}
  ~Impl();

  struct Check {
    ProbeId id = 0;
    Done done;
    MonoTime started;
    // HTTP
    HttpCheck http;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::string body;
    std::vector<std::pair<std::string, std::string>> got_headers;
    char errbuf[CURL_ERROR_SIZE] = {};
    // TCP
    TcpCheck tcp;
    Fd sock;
    WatchId watch = 0;
    TimerId timer = 0;
    bool connected = false;
    size_t sent = 0;
    std::string reply;
    std::shared_ptr<Resolution> resolution;
    Fd resolve_efd;  // dup of the resolution's eventfd, watched on the loop
  };

  EventLoop& loop;
  CURLM* multi = nullptr;
  TimerId curl_timer = 0;
  std::unordered_map<curl_socket_t, WatchId> curl_sockets;
  ProbeId next = 1;
  std::map<ProbeId, std::unique_ptr<Check>> checks;
  // Expires with the engine: a failure posted to the loop finds it gone.
  std::shared_ptr<int> alive = std::make_shared<int>(0);

  Check& add(Done done);
  bool ensure_multi(std::string& error);
  void socket_action(curl_socket_t s, int flags);
  void http_done();
  ProbeResult http_result(Check& c, CURLcode code);
  void finish(ProbeId id, ProbeResult r);
  void release(Check& c);
  void fail_later(ProbeId id, std::string reason);

  void tcp_connect(Check& c, const sockaddr* addr, socklen_t len);
  void tcp_event(ProbeId id, uint32_t events);
  void tcp_resolve(Check& c);

  static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*);
  static int on_timer(CURLM*, long timeout_ms, void* userp);
  static size_t on_body(char* data, size_t size, size_t n, void* userp);
  static size_t on_header(char* data, size_t size, size_t n, void* userp);
};

ProbeEngine::Impl::~Impl() {
  for (auto& [id, c] : checks) release(*c);
  checks.clear();
  if (multi) curl().multi_cleanup(multi);
  for (auto& [s, w] : curl_sockets) loop.remove(w);
  loop.cancel(curl_timer);
}

bool ProbeEngine::Impl::ensure_multi(std::string& error) {
  if (multi) return true;
  g_curl = load_curl(error);
  if (!g_curl) return false;
  multi = curl().multi_init();
  if (!multi) error = "curl_multi_init failed";
  if (!multi) return false;
  curl().multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
  curl().multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
  curl().multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
  curl().multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  return true;
}

int ProbeEngine::Impl::on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
  auto* self = static_cast<Impl*>(userp);
  auto it = self->curl_sockets.find(s);
  if (what == CURL_POLL_REMOVE) {
    if (it != self->curl_sockets.end()) {
      self->loop.remove(it->second);
      self->curl_sockets.erase(it);
    }
    return 0;
  }
  uint32_t events = (what & CURL_POLL_IN ? static_cast<uint32_t>(EPOLLIN) : 0u) |
                    (what & CURL_POLL_OUT ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  if (it != self->curl_sockets.end()) {
    self->loop.modify(it->second, events);
  } else {
    self->curl_sockets[s] = self->loop.add(s, events, [self, s](uint32_t ev) {
      int flags = (ev & EPOLLIN ? CURL_CSELECT_IN : 0) | (ev & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                  (ev & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
      self->socket_action(s, flags);
    });
  }
  return 0;
}

int ProbeEngine::Impl::on_timer(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<Impl*>(userp);
  self->loop.cancel(self->curl_timer);
  self->curl_timer = 0;
  if (timeout_ms < 0) return 0;
  // Never act from inside curl's own call: the loop calls back later.
  self->curl_timer = self->loop.after(std::chrono::milliseconds(timeout_ms), [self] {
    self->curl_timer = 0;
    self->socket_action(CURL_SOCKET_TIMEOUT, 0);
  });
  return 0;
}

size_t ProbeEngine::Impl::on_body(char* data, size_t size, size_t n, void* userp) {
  auto* c = static_cast<Check*>(userp);
  size_t len = size * n;
  if (c->body.size() < kBodyMax) c->body.append(data, std::min(len, kBodyMax - c->body.size()));
  return len;  // the rest is read and dropped
}

size_t ProbeEngine::Impl::on_header(char* data, size_t size, size_t n, void* userp) {
  auto* c = static_cast<Check*>(userp);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    c->got_headers.clear();  // a new response (after 100 Continue)
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    if (c->got_headers.size() < 100)
      c->got_headers.emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  return size * n;
}

void ProbeEngine::Impl::socket_action(curl_socket_t s, int flags) {
  int running = 0;
  curl().multi_socket_action(multi, s, flags, &running);
  http_done();
}

// Collects every finished transfer first (a callback may cancel another
// check, whose message must not be read after its handle is gone).
void ProbeEngine::Impl::http_done() {
  std::vector<std::pair<ProbeId, CURLcode>> finished;
  int left = 0;
  while (CURLMsg* m = curl().multi_info_read(multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    char* priv = nullptr;
    curl().easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    finished.emplace_back(static_cast<ProbeId>(reinterpret_cast<uintptr_t>(priv)), m->data.result);
  }
  for (auto [id, code] : finished) {
    auto it = checks.find(id);
    if (it == checks.end()) continue;  // cancelled by an earlier callback
    ProbeResult r = http_result(*it->second, code);
    finish(id, std::move(r));
  }
}

ProbeResult ProbeEngine::Impl::http_result(Check& c, CURLcode code) {
  ProbeResult r;
  r.elapsed = to_seconds(loop.now() - c.started);
  const HttpCheck& h = c.http;
  long status = 0;
  curl().easy_getinfo(c.easy, CURLINFO_RESPONSE_CODE, &status);
  r.status = static_cast<int>(status);
  r.excerpt = c.body.substr(0, kExcerptMax);
  if (code != CURLE_OK) {
    std::string err = c.errbuf[0] ? c.errbuf : curl().easy_strerror(code);
    if (code == CURLE_OPERATION_TIMEDOUT) {
      r.reason = "timed out after " + seconds_text(r.elapsed);
      if (status == 0) {
        double connect = 0;
        curl().easy_getinfo(c.easy, CURLINFO_CONNECT_TIME, &connect);
        r.reason += connect > 0 ? " (no answer)" : " (connecting)";
      }
    } else if (code == CURLE_COULDNT_CONNECT) {
      long os_errno = 0;
      curl().easy_getinfo(c.easy, CURLINFO_OS_ERRNO, &os_errno);
      r.reason = os_errno == ECONNREFUSED ? "connection refused"
                 : os_errno ? "cannot connect: " + errno_text(static_cast<int>(os_errno))
                            : err;
    } else if (code == CURLE_COULDNT_RESOLVE_HOST) {
      size_t at = err.find("host: ");
      r.reason = "cannot resolve host '" +
                 (at != std::string::npos ? err.substr(at + 6) : std::string("?")) + "'";
    } else {
      r.reason = err;
    }
    if (r.excerpt.empty()) r.excerpt = err.substr(0, kExcerptMax);
    return r;
  }
  if (status < h.status_min || status > h.status_max) {
    r.reason = "status " + std::to_string(status) + ", expected " +
               (h.status_min == h.status_max
                    ? std::to_string(h.status_min)
                    : std::to_string(h.status_min) + "-" + std::to_string(h.status_max));
    return r;
  }
  if (!h.body.empty() && c.body.find(h.body) == std::string::npos) {
    r.reason = "body does not contain '" + h.body + "'";
    return r;
  }
  for (const auto& expected : h.expect_headers) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one.
    const std::string& name = expected.first;
    const std::string& want = expected.second;
    auto it = std::find_if(c.got_headers.begin(), c.got_headers.end(),
                           [&](const auto& kv) { return icase_equal(kv.first, name); });
    if (it == c.got_headers.end()) {
      r.reason = "header '" + name + "' missing";
      return r;
    }
    if (!want.empty() && it->second.find(want) == std::string::npos) {
      r.reason = "header '" + name + "' is '" + it->second + "', expected '" + want + "'";
      return r;
    }
  }
  r.ok = true;
  return r;
}

void ProbeEngine::Impl::release(Check& c) {
  if (c.easy) {
    curl().multi_remove_handle(multi, c.easy);
    curl().easy_cleanup(c.easy);
    c.easy = nullptr;
  }
  if (c.headers) curl().slist_free_all(c.headers);
  c.headers = nullptr;
  if (c.watch) loop.remove(c.watch);
  c.watch = 0;
  loop.cancel(c.timer);
  c.timer = 0;
  c.sock.reset();
  c.resolve_efd.reset();
}

void ProbeEngine::Impl::finish(ProbeId id, ProbeResult r) {
  auto it = checks.find(id);
  if (it == checks.end()) return;
  std::unique_ptr<Check> c = std::move(it->second);
  checks.erase(it);
  if (r.body.empty()) r.body = c->easy ? std::move(c->body) : std::move(c->reply);
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
  if (auto e = validate_http_url(check.url)) {
    m.fail_later(id, *e);
    return id;
  }
  std::string error;
  if (!m.ensure_multi(error)) {
    m.fail_later(id, error);
    return id;
  }
  if (!(ref.easy = curl().easy_init())) {
    m.fail_later(id, "curl_easy_init failed");
    return id;
  }
  CURL* e = ref.easy;
  curl().easy_setopt(e, CURLOPT_URL, check.url.c_str());
  curl().easy_setopt(e, CURLOPT_PRIVATE, reinterpret_cast<char*>(static_cast<uintptr_t>(id)));
  curl().easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl().easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(to_millis(check.timeout)));
  double connect = check.connect_timeout > 0 ? check.connect_timeout : check.timeout;
  curl().easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(to_millis(connect)));
  curl().easy_setopt(e, CURLOPT_NOPROXY, "*");
  curl().easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl().easy_setopt(e, CURLOPT_USERAGENT, "vigil/" VIGIL_VERSION);
  curl().easy_setopt(e, CURLOPT_ERRORBUFFER, ref.errbuf);
  curl().easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_body);
  curl().easy_setopt(e, CURLOPT_WRITEDATA, &ref);
  curl().easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
  curl().easy_setopt(e, CURLOPT_HEADERDATA, &ref);
  if (check.method == "HEAD") curl().easy_setopt(e, CURLOPT_NOBODY, 1L);
  if (!check.tls_verify) {
    curl().easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl().easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!check.unix_socket.empty())
    curl().easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, check.unix_socket.c_str());
  for (const auto& [k, v] : check.send_headers)
    ref.headers = curl().slist_append(ref.headers, (k + ": " + v).c_str());
  if (ref.headers) curl().easy_setopt(e, CURLOPT_HTTPHEADER, ref.headers);
  if (curl().multi_add_handle(m.multi, e) != CURLM_OK) m.fail_later(id, "cannot start the request");
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

void ProbeEngine::Impl::tcp_resolve(Check& c) {
  auto res = std::make_shared<Resolution>();
  res->efd = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!res->efd) return fail_later(c.id, "eventfd: " + errno_text(errno));
  c.resolve_efd = Fd(dup(res->efd.get()));
  c.resolution = res;
  std::string host = c.tcp.host;
  int port = c.tcp.port;
  try {
    std::thread([res, host, port] {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* out = nullptr;
      int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &out);
      {
        std::lock_guard<std::mutex> lock(res->mu);
        if (rc != 0 || !out) {
          res->error = "cannot resolve host '" + host + "'";
        } else {
          memcpy(&res->addr, out->ai_addr, out->ai_addrlen);
          res->len = out->ai_addrlen;
        }
      }
      if (out) freeaddrinfo(out);
      uint64_t one = 1;
      ssize_t w = write(res->efd.get(), &one, sizeof one);
      (void)w;
    }).detach();
  } catch (const std::exception& e) {
    return fail_later(c.id, std::string("cannot start a resolver: ") + e.what());
  }
  ProbeId id = c.id;
  c.watch = loop.add(c.resolve_efd.get(), EPOLLIN, [this, id](uint32_t) {
    auto it = checks.find(id);
    if (it == checks.end()) return;
    Check& ch = *it->second;
    loop.remove(ch.watch);
    ch.watch = 0;
    auto r = std::move(ch.resolution);
    ch.resolve_efd.reset();
    std::lock_guard<std::mutex> lock(r->mu);
    if (!r->error.empty()) {
      ProbeResult res;
      res.reason = r->error;
      res.elapsed = to_seconds(loop.now() - ch.started);
      return finish(id, std::move(res));
    }
    tcp_connect(ch, reinterpret_cast<const sockaddr*>(&r->addr), r->len);
  });
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
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (inet_pton(AF_INET, check.host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(static_cast<uint16_t>(check.port));
    m.tcp_connect(ref, reinterpret_cast<sockaddr*>(&v4), sizeof v4);
  } else if (inet_pton(AF_INET6, check.host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(static_cast<uint16_t>(check.port));
    m.tcp_connect(ref, reinterpret_cast<sockaddr*>(&v6), sizeof v6);
  } else {
    m.tcp_resolve(ref);
  }
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

std::optional<std::string> validate_http_url(const std::string& url) {
  size_t scheme = url.rfind("http://", 0) == 0 ? 7 : url.rfind("https://", 0) == 0 ? 8 : 0;
  if (!scheme) return "'" + url + "' is not an http:// or https:// URL";
  size_t end = url.find_first_of("/?#", scheme);
  std::string authority = url.substr(scheme, end == std::string::npos ? end : end - scheme);
  if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return "'" + url + "' has a bad host";
    port = authority.substr(close + 1);
    authority = authority.substr(0, close + 1);
  } else if (size_t colon = authority.find(':'); colon != std::string::npos) {
    port = authority.substr(colon);
    authority.erase(colon);
  }
  if (authority.empty()) return "'" + url + "' has no host";
  if (!port.empty()) {
    std::string digits = port.substr(1);
    bool ok = port[0] == ':' && !digits.empty() && digits.size() <= 5 &&
              std::all_of(digits.begin(), digits.end(), ::isdigit) && std::stoi(digits) >= 1 &&
              std::stoi(digits) <= 65535;
    if (!ok) return "'" + url + "' has a bad port '" + digits + "' (1-65535)";
  }
  return std::nullopt;
}

}  // namespace vigil

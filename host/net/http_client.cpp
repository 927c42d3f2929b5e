// HttpClient: libcurl's multi socket interface on the EventLoop. curl
// tells which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake
// it (CURLMOPT_TIMERFUNCTION); the loop does the waiting. curl's own
// callbacks only collect bytes: every user callback (on_headers, on_line,
// on_done) runs after curl_multi_socket_action returned, so that a user
// may cancel, start requests or drop the client from inside any of them
// (libcurl forbids removing a handle from inside its callbacks).
#include "host/net/http_client.hpp"

#include "host/core/dynamic_library.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <type_traits>
#include <unordered_map>

#include "host/core/strings.hpp"
#include "host/loop/per_loop.hpp"

namespace vigil {

namespace {

bool icase_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return tolower(static_cast<unsigned char>(x)) == tolower(static_cast<unsigned char>(y));
         });
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' ||
                        s.back() == '\t'))
    s.remove_suffix(1);
  return std::string(s);
}

// libcurl is loaded at the first request, not linked: with its TLS and
// the libraries behind it, it would add about 6 MB to every daemon's
// resident size, also to the many that never make a request.
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

long millis(Duration d) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

bool is_method(const std::string& m) {
  for (const char* known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
    if (m == known) return true;
  return false;
}

}  // namespace

struct HttpClient::Impl {
  explicit Impl(EventLoop& l) : loop(l) {}

  struct Transfer {
    RequestId id = 0;
    HttpClientRequest request;
    HttpHandlers handlers;
    MonoTime started;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    HttpResponse response;
    bool headers_in = false;    // the final response's headers are in (curl)
    bool headers_told = false;  // on_headers ran
    bool streaming = false;     // a 2xx response to a request with on_line
    std::string pending;        // streamed bytes not yet cut into lines
    char errbuf[CURL_ERROR_SIZE] = {};
    Impl* owner = nullptr;
    TimerId idle_timer = 0;  // request.idle_timeout: fires at last_byte + idle_timeout
    MonoTime last_byte;
    bool marked = false;  // in owner->dirty
    void mark() {
      if (!marked) owner->dirty.push_back(id);
      marked = true;
      if (idle_timer) last_byte = owner->loop.now();
    }
  };

  EventLoop& loop;
  CURLM* multi = nullptr;
  TimerId curl_timer = 0;
  std::unordered_map<curl_socket_t, WatchId> curl_sockets;
  RequestId next = 1;
  std::map<RequestId, std::unique_ptr<Transfer>> transfers;
  std::vector<RequestId> dirty;  // got bytes or headers in curl's last call
  // Transfers cancelled while a user callback runs: freed once it returned
  // (the callback being run may belong to one of them).
  std::vector<std::unique_ptr<Transfer>> retired;
  int dispatching = 0;
  bool orphaned = false;  // the HttpClient went away inside a callback: delete when back
  std::shared_ptr<int> alive = std::make_shared<int>(0);

  ~Impl();
  bool ensure_multi(std::string& error);
  void shutdown();
  void socket_action(curl_socket_t s, int flags);
  void deliver(Transfer& t);
  bool cut_lines(RequestId id);
  void finish(RequestId id, CURLcode code);
  void fail(RequestId id, HttpResponse::Failure failure, std::string error);
  void fail_later(RequestId id, std::string error);
  void release(Transfer& t);
  void retire(std::unique_ptr<Transfer> t);
  void fill(Transfer& t, CURLcode code);
  void timings(Transfer& t);
  void arm_idle(Transfer& t, MonoTime deadline);
  // Around every run of user callbacks (see retired, orphaned).
  void enter() { ++dispatching; }
  // false: the Impl is gone (deleted here), touch nothing.
  bool leave();

  static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*);
  static int on_timer(CURLM*, long timeout_ms, void* userp);
  static size_t on_body(char* data, size_t size, size_t n, void* userp);
  static size_t on_header(char* data, size_t size, size_t n, void* userp);
};

HttpClient::Impl::~Impl() {
  shutdown();
}

void HttpClient::Impl::shutdown() {
  for (auto& [id, t] : transfers) release(*t);
  transfers.clear();
  if (multi) curl().multi_cleanup(multi);
  multi = nullptr;
  for (auto& [s, w] : curl_sockets) loop.remove(w);
  curl_sockets.clear();
  loop.cancel(curl_timer);
  curl_timer = 0;
}

bool HttpClient::Impl::leave() {
  if (--dispatching > 0) return !orphaned;
  retired.clear();
  if (orphaned) {
    delete this;
    return false;
  }
  return true;
}

bool HttpClient::Impl::ensure_multi(std::string& error) {
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

int HttpClient::Impl::on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
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

int HttpClient::Impl::on_timer(CURLM*, long timeout_ms, void* userp) {
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

size_t HttpClient::Impl::on_body(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  size_t len = size * n;
  t->mark();
  if (t->streaming) {
    t->pending.append(data, len);
  } else {
    HttpResponse& r = t->response;
    size_t room = t->request.max_body - std::min(t->request.max_body, r.body.size());
    if (len > room) r.truncated = true;
    r.body.append(data, std::min(len, room));  // the rest is read and dropped
  }
  return len;
}

size_t HttpClient::Impl::on_header(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<Transfer*>(userp);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.headers.clear();  // a new response (after 100 Continue)
    // "HTTP/1.1 200 OK"
    size_t sp = line.find(' ');
    t->response.status = sp == std::string_view::npos ? 0 : atoi(std::string(line.substr(sp + 1, 3)).c_str());
  } else if (line == "\r\n" || line == "\n") {
    if (t->response.status >= 200) {
      t->mark();
      t->headers_in = true;
      t->streaming = t->handlers.on_line && t->response.status < 300;
    }
  } else if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    if (t->response.headers.size() < 100)
      t->response.headers.emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  }
  return size * n;
}

// curl's work, then the users': every finished transfer is collected
// before any callback runs (a callback may cancel another transfer, whose
// message must not be read after its handle is gone), then the bytes
// received are handed over, then the finished are reported.
void HttpClient::Impl::socket_action(curl_socket_t s, int flags) {
  if (!multi) return;
  int running = 0;
  curl().multi_socket_action(multi, s, flags, &running);
  std::vector<std::pair<RequestId, CURLcode>> finished;
  int left = 0;
  while (CURLMsg* m = curl().multi_info_read(multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    char* priv = nullptr;
    curl().easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    finished.emplace_back(static_cast<RequestId>(reinterpret_cast<uintptr_t>(priv)),
                          m->data.result);
  }
  std::vector<RequestId> got;
  got.swap(dirty);
  enter();
  for (RequestId id : got) {
    if (orphaned) break;
    auto it = transfers.find(id);
    if (it == transfers.end()) continue;
    it->second->marked = false;
    deliver(*it->second);
  }
  for (auto [id, code] : finished) {
    if (orphaned) break;
    finish(id, code);
  }
  leave();
}

void HttpClient::Impl::timings(Transfer& t) {
  HttpTimings& tm = t.response.timings;
  double v = 0;
  if (curl().easy_getinfo(t.easy, CURLINFO_NAMELOOKUP_TIME, &v) == CURLE_OK) tm.resolve = v;
  if (curl().easy_getinfo(t.easy, CURLINFO_CONNECT_TIME, &v) == CURLE_OK) tm.connect = v;
  if (curl().easy_getinfo(t.easy, CURLINFO_APPCONNECT_TIME, &v) == CURLE_OK) tm.tls = v;
  if (curl().easy_getinfo(t.easy, CURLINFO_STARTTRANSFER_TIME, &v) == CURLE_OK) tm.first_byte = v;
  tm.total = to_seconds(loop.now() - t.started);
  long connects = 0;
  if (curl().easy_getinfo(t.easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK)
    t.response.reused_connection = connects == 0 && t.response.status > 0;
}

// Headers (once) and lines, for a transfer curl gave something to.
void HttpClient::Impl::deliver(Transfer& t) {
  RequestId id = t.id;
  if (t.headers_in && !t.headers_told) {
    t.headers_told = true;
    if (t.handlers.on_headers) {
      timings(t);
      t.handlers.on_headers(t.response);
      if (orphaned || !transfers.contains(id)) return;
    }
  }
  if (t.streaming) cut_lines(id);
}

// Hands over the complete lines received; false when the transfer is
// gone (cancelled by its callback, or failed with a line too long).
bool HttpClient::Impl::cut_lines(RequestId id) {
  size_t from = 0;
  for (;;) {
    auto it = transfers.find(id);
    if (orphaned || it == transfers.end()) return false;
    Transfer& t = *it->second;
    size_t nl = t.pending.find('\n', from);
    if (nl == std::string::npos) {
      t.pending.erase(0, from);
      if (t.pending.size() > t.request.max_line) {
        fail(id, HttpResponse::Failure::LineTooLong,
             "a line longer than " + std::to_string(t.request.max_line) + " bytes");
        return false;
      }
      return true;
    }
    size_t end = nl;
    if (end > from && t.pending[end - 1] == '\r') --end;
    if (end - from > t.request.max_line) {
      fail(id, HttpResponse::Failure::LineTooLong,
           "a line longer than " + std::to_string(t.request.max_line) + " bytes");
      return false;
    }
    // A copy: the callback may cancel the transfer, freeing `pending`.
    std::string line = t.pending.substr(from, end - from);
    from = nl + 1;
    t.handlers.on_line(line);
  }
}

void HttpClient::Impl::fill(Transfer& t, CURLcode code) {
  HttpResponse& r = t.response;
  long status = 0;
  curl().easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
  if (status) r.status = static_cast<int>(status);
  timings(t);
  if (code == CURLE_OK) return;
  std::string err = t.errbuf[0] ? t.errbuf : curl().easy_strerror(code);
  using F = HttpResponse::Failure;
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      r.failure = F::Timeout;
      r.error = "timed out after " + seconds_text(r.timings.total);
      if (status == 0) r.error += r.timings.connect > 0 ? " (no answer)" : " (connecting)";
      break;
    case CURLE_COULDNT_CONNECT: {
      r.failure = F::Connect;
      long os_errno = 0;
      curl().easy_getinfo(t.easy, CURLINFO_OS_ERRNO, &os_errno);
      r.error = os_errno == ECONNREFUSED ? "connection refused"
                : os_errno              ? "cannot connect: " + errno_text(static_cast<int>(os_errno))
                                        : err;
      break;
    }
    case CURLE_COULDNT_RESOLVE_HOST: {
      r.failure = F::Resolve;
      size_t at = err.find("host: ");
      r.error = "cannot resolve host '" +
                (at != std::string::npos ? err.substr(at + 6) : std::string("?")) + "'";
      break;
    }
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      r.failure = F::Pin;
      r.error = "TLS: the server's public key does not match the pin";
      break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
      r.failure = F::Tls;
      r.error = "TLS: " + err;
      break;
    default:
      r.failure = F::Other;
      r.error = err;
  }
}

void HttpClient::Impl::finish(RequestId id, CURLcode code) {
  auto it = transfers.find(id);
  if (it == transfers.end()) return;  // cancelled by an earlier callback
  Transfer& t = *it->second;
  fill(t, code);
  // What is left of the stream: its last lines, and one without '\n' if
  // the stream ended well (not one cut by a timeout or a reset).
  if (t.streaming) {
    if (!cut_lines(id)) return;
    Transfer& still = *transfers.at(id);
    if (code == CURLE_OK && !still.pending.empty()) {
      std::string last = std::move(still.pending);
      still.pending.clear();
      if (last.back() == '\r') last.pop_back();
      still.handlers.on_line(last);
      if (orphaned || !transfers.contains(id)) return;
    }
  }
  it = transfers.find(id);
  std::unique_ptr<Transfer> done = std::move(it->second);
  transfers.erase(it);
  release(*done);
  if (done->handlers.on_done) done->handlers.on_done(done->response);
  retire(std::move(done));
}

void HttpClient::Impl::fail(RequestId id, HttpResponse::Failure failure, std::string error) {
  auto it = transfers.find(id);
  if (it == transfers.end()) return;
  std::unique_ptr<Transfer> t = std::move(it->second);
  transfers.erase(it);
  if (t->easy) timings(*t);
  t->response.failure = failure;
  t->response.error = std::move(error);
  release(*t);
  if (t->handlers.on_done) t->handlers.on_done(t->response);
  retire(std::move(t));
}

void HttpClient::Impl::fail_later(RequestId id, std::string error) {
  loop.post([this, id, alive = std::weak_ptr<int>(alive), error = std::move(error)]() mutable {
    if (alive.expired()) return;
    enter();
    fail(id, HttpResponse::Failure::Other, std::move(error));
    leave();
  });
}

void HttpClient::Impl::release(Transfer& t) {
  if (t.easy) {
    curl().multi_remove_handle(multi, t.easy);
    curl().easy_cleanup(t.easy);
    t.easy = nullptr;
  }
  if (t.headers) curl().slist_free_all(t.headers);
  t.headers = nullptr;
  loop.cancel(t.idle_timer);
  t.idle_timer = 0;
  if (t.marked) std::erase(dirty, t.id);
  t.marked = false;
}

// Not curl's low-speed limit: that one averages over seconds, so a
// trickle of keep-alives never trips it and a silent stream trips late.
void HttpClient::Impl::arm_idle(Transfer& t, MonoTime deadline) {
  RequestId id = t.id;
  t.idle_timer = loop.at(deadline, [this, id] {
    auto it = transfers.find(id);
    if (it == transfers.end()) return;
    Transfer& tr = *it->second;
    tr.idle_timer = 0;
    MonoTime due = tr.last_byte + tr.request.idle_timeout;
    if (loop.now() < due) return arm_idle(tr, due);
    enter();
    fail(id, HttpResponse::Failure::Timeout,
         "no data for " + seconds_text(to_seconds(tr.request.idle_timeout)) + " (idle timeout)");
    leave();
  });
}

void HttpClient::Impl::retire(std::unique_ptr<Transfer> t) {
  if (dispatching > 0) retired.push_back(std::move(t));
}

HttpClient::HttpClient(EventLoop& loop) : impl_(std::make_unique<Impl>(loop)) {}

HttpClient::~HttpClient() {
  if (impl_->dispatching > 0) {
    // Inside one of our callbacks: curl and the loop are let go of now,
    // the Impl itself when the callback returns.
    impl_->shutdown();
    impl_->alive.reset();
    impl_->orphaned = true;
    impl_.release();
  }
}

std::shared_ptr<HttpClient> HttpClient::for_loop(EventLoop& loop) {
  return per_loop<HttpClient>(loop);
}

RequestId HttpClient::start(HttpClientRequest request, HttpHandlers handlers) {
  Impl& m = *impl_;
  auto owned = std::make_unique<Impl::Transfer>();
  Impl::Transfer& t = *owned;
  t.id = m.next++;
  t.request = std::move(request);
  t.handlers = std::move(handlers);
  t.started = m.loop.now();
  t.owner = &m;
  RequestId id = t.id;
  m.transfers[id] = std::move(owned);
  const HttpClientRequest& q = t.request;
  if (auto e = validate_http_url(q.url)) {
    m.fail_later(id, *e);
    return id;
  }
  if (!is_method(q.method)) {
    m.fail_later(id, "unknown method '" + q.method + "' (GET, HEAD, POST, PUT, DELETE, PATCH)");
    return id;
  }
  std::string error;
  if (!m.ensure_multi(error)) {
    m.fail_later(id, error);
    return id;
  }
  if (!(t.easy = curl().easy_init())) {
    m.fail_later(id, "curl_easy_init failed");
    return id;
  }
  CURL* e = t.easy;
  auto set = [e](CURLoption o, auto v) { curl().easy_setopt(e, o, v); };
  set(CURLOPT_URL, q.url.c_str());
  set(CURLOPT_PRIVATE, reinterpret_cast<char*>(static_cast<uintptr_t>(id)));
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_TIMEOUT_MS, millis(q.timeout));
  Duration connect = q.connect_timeout > Duration::zero() ? q.connect_timeout : q.timeout;
  if (q.timeout > Duration::zero() && connect > q.timeout) connect = q.timeout;
  if (connect > Duration::zero()) set(CURLOPT_CONNECTTIMEOUT_MS, millis(connect));
  set(CURLOPT_NOPROXY, "*");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  set(CURLOPT_TCP_KEEPALIVE, 1L);
  set(CURLOPT_USERAGENT, "vigil/" VIGIL_VERSION);
  set(CURLOPT_ERRORBUFFER, t.errbuf);
  set(CURLOPT_WRITEFUNCTION, &Impl::on_body);
  set(CURLOPT_WRITEDATA, &t);
  set(CURLOPT_HEADERFUNCTION, &Impl::on_header);
  set(CURLOPT_HEADERDATA, &t);
  if (q.method == "HEAD") {
    set(CURLOPT_NOBODY, 1L);
  } else if (q.method != "GET") {
    if (q.method != "POST") set(CURLOPT_CUSTOMREQUEST, q.method.c_str());
    if (q.method != "DELETE" || !q.body.empty()) {
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(q.body.size()));
      set(CURLOPT_POSTFIELDS, q.body.c_str());
    }
  }
  if (!q.tls.verify) {
    set(CURLOPT_SSL_VERIFYPEER, 0L);
    set(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!q.tls.ca_file.empty()) set(CURLOPT_CAINFO, q.tls.ca_file.c_str());
  if (!q.tls.cert_file.empty()) set(CURLOPT_SSLCERT, q.tls.cert_file.c_str());
  if (!q.tls.key_file.empty()) set(CURLOPT_SSLKEY, q.tls.key_file.c_str());
  if (!q.tls.pinned_key.empty()) set(CURLOPT_PINNEDPUBLICKEY, q.tls.pinned_key.c_str());
  if (!q.unix_socket.empty()) set(CURLOPT_UNIX_SOCKET_PATH, q.unix_socket.c_str());
  for (const auto& [k, v] : q.headers)
    t.headers = curl().slist_append(t.headers, (k + ": " + v).c_str());
  if (!q.bearer_token.empty())
    t.headers = curl().slist_append(t.headers, ("Authorization: Bearer " + q.bearer_token).c_str());
  // No "Expect: 100-continue" round trip for a body.
  if (!q.body.empty()) t.headers = curl().slist_append(t.headers, "Expect:");
  if (t.headers) set(CURLOPT_HTTPHEADER, t.headers);
  if (curl().multi_add_handle(m.multi, e) != CURLM_OK) {
    m.fail_later(id, "cannot start the request");
    return id;
  }
  if (q.idle_timeout > Duration::zero()) {
    t.last_byte = t.started;
    m.arm_idle(t, t.started + q.idle_timeout);
  }
  return id;
}

void HttpClient::cancel(RequestId id) {
  Impl& m = *impl_;
  auto it = m.transfers.find(id);
  if (it == m.transfers.end()) return;
  std::unique_ptr<Impl::Transfer> t = std::move(it->second);
  m.transfers.erase(it);
  m.release(*t);
  m.retire(std::move(t));
}

size_t HttpClient::in_flight() const {
  return impl_->transfers.size();
}

// -- the rest ----------------------------------------------------------

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (icase_equal(k, name)) return &v;
  return nullptr;
}

bool HttpClientRequest::load_bearer_token(const std::string& path, std::string& error) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    error = "token file " + path + ": " + errno_text(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    error = "token file " + path + ": not a regular file";
    return false;
  }
  if (st.st_mode & 077) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    error = "token file " + path + " is readable by others (mode " + mode + "): chmod 600";
    return false;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "token file " + path + ": " + errno_text(errno);
      return false;
    }
    if (n == 0 || text.size() > 64 * 1024) break;
    text.append(buf, static_cast<size_t>(n));
  }
  std::string token = trim(text.substr(0, text.find('\n')));
  if (token.empty()) {
    error = "token file " + path + " is empty";
    return false;
  }
  bearer_token = std::move(token);
  return true;
}

HttpResponse http_run(HttpClientRequest request, std::function<void(std::string_view line)> on_line) {
  EventLoop loop;
  HttpClient client(loop);
  HttpResponse out;
  HttpHandlers h;
  h.on_line = std::move(on_line);
  h.on_done = [&](const HttpResponse& r) {
    out = r;
    loop.stop();
  };
  client.start(std::move(request), std::move(h));
  loop.run();
  return out;
}

void SseParser::line(std::string_view line) {
  if (line.empty()) {
    if (has_data_) {
      Event ev{last_id_, type_.empty() ? "message" : type_, data_, own_id_};
      data_.clear();
      type_.clear();
      has_data_ = false;
      own_id_ = false;
      on_event_(ev);
    } else {
      type_.clear();
      own_id_ = false;
    }
    return;
  }
  if (line.front() == ':') return;  // a comment (keep-alive)
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    type_ = std::string(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) {
      last_id_ = std::string(value);
      own_id_ = true;
    }
  } else if (field == "retry") {
    if (!value.empty() && value.size() < 10 &&
        std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
      retry_ms_ = std::stol(std::string(value));
  }
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

// HttpClient (host/net/http_client.hpp) against real servers started by
// the test: tests/e2e/tools/stream_server.py (keep-alive, slow lines,
// SSE, a unix socket) and nginx with TLS (a CA, client certificates,
// pins; certificates from net_fixture's Certs::make).
#include "host/net/http_client.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"

using namespace vigil;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

std::string temp_dir(const std::string& name) {
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir = std::filesystem::temp_directory_path() /
                    ("vigil-http-" + std::to_string(getpid()) + "-" + info->name() + "-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// stream_server.py in a child; "READY ..." on its stdout says it accepts.
class StreamServer {
 public:
  explicit StreamServer(const std::string& unix_path = "") {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      std::string tool = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/stream_server.py";
      if (unix_path.empty())
        execlp("python3", "python3", tool.c_str(), nullptr);
      else
        execlp("python3", "python3", tool.c_str(), "--unix", unix_path.c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    Fd rd(out[0]);
    std::string line;
    auto end = std::chrono::steady_clock::now() + 30s;
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < end) {
      pollfd p{rd.get(), POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      char buf[64];
      ssize_t n = read(rd.get(), buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    if (line.rfind("READY ", 0) != 0) return;
    ready_ = true;
    if (unix_path.empty()) port_ = std::stoi(line.substr(6));
  }
  ~StreamServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool ready_ = false;
};

bool run_until(EventLoop& loop, const std::function<bool()>& done, Duration limit = 20s) {
  MonoTime end = MonoClock::now() + limit;
  while (!done()) {
    if (MonoClock::now() > end) return false;
    loop.run_once(50ms);
  }
  return true;
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// One request to completion on `loop`, checking it never reports from
// inside start().
HttpResponse fetch(EventLoop& loop, HttpClient& client, HttpClientRequest q) {
  std::optional<HttpResponse> got;
  HttpHandlers h;
  h.on_done = [&](const HttpResponse& r) { got = r; };
  client.start(std::move(q), std::move(h));
  EXPECT_FALSE(got) << "reported from inside start()";
  EXPECT_TRUE(run_until(loop, [&] { return got.has_value(); }));
  return got.value_or(HttpResponse{});
}

HttpClientRequest get(const std::string& url) {
  HttpClientRequest q;
  q.url = url;
  return q;
}

#define NEED_SERVER(s) \
  if (!(s).ready()) GTEST_SKIP() << "python3 stream_server.py did not start"

}  // namespace

TEST(HttpClient, GetPostHeadersBearerAndKeepAlive) {
  StreamServer srv;
  NEED_SERVER(srv);
  EventLoop loop;
  auto client = HttpClient::for_loop(loop);
  EXPECT_EQ(client, HttpClient::for_loop(loop)) << "one client per loop";

  HttpResponse r = fetch(loop, *client, get(srv.url("/hello")));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello\n");
  ASSERT_TRUE(r.header("content-type"));
  EXPECT_EQ(*r.header("CONTENT-TYPE"), "text/plain");
  EXPECT_GT(r.timings.total, 0);
  EXPECT_GT(r.timings.first_byte, 0);
  // The same connection again (kept alive).
  HttpResponse again = fetch(loop, *client, get(srv.url("/hello")));
  EXPECT_TRUE(again.ok()) << again.error;
  EXPECT_TRUE(again.reused_connection);

  HttpClientRequest post = get(srv.url("/echo"));
  post.method = "POST";
  post.body = R"({"a": 1})";
  post.headers = {{"Content-Type", "application/json"}, {"X-Vigil", "yes"}};
  post.bearer_token = "s3cret";
  r = fetch(loop, *client, post);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.starts_with("POST /echo\n")) << r.body;
  EXPECT_NE(r.body.find("authorization: Bearer s3cret\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("x-vigil: yes\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("content-type: application/json\n"), std::string::npos) << r.body;
  EXPECT_TRUE(r.body.ends_with("\n\n{\"a\": 1}")) << r.body;
  EXPECT_EQ(r.body.find("expect:"), std::string::npos) << "no 100-continue round trip";

  post.method = "PUT";
  post.body.clear();
  r = fetch(loop, *client, post);
  EXPECT_TRUE(r.body.starts_with("PUT /echo\n")) << r.body;
  EXPECT_NE(r.body.find("content-length: 0"), std::string::npos) << r.body;

  r = fetch(loop, *client, get(srv.url("/status/503")));
  EXPECT_TRUE(r.ok()) << "a status is not a failure: " << r.error;
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "status 503\n");

  HttpClientRequest capped = get(srv.url("/long?bytes=5000"));
  capped.max_body = 100;
  r = fetch(loop, *client, capped);
  EXPECT_EQ(r.body.size(), 100u);
  EXPECT_TRUE(r.truncated);
}

TEST(HttpClient, ErrorsInWords) {
  EventLoop loop;
  HttpClient client(loop);
  int port = free_port();  // nothing listens there
  HttpResponse r = fetch(loop, client, get("http://127.0.0.1:" + std::to_string(port) + "/"));
  EXPECT_EQ(r.error, "connection refused");
  EXPECT_EQ(r.failure, HttpResponse::Failure::Connect);
  r = fetch(loop, client, get("http://no-such-host.invalid/"));
  EXPECT_EQ(r.error, "cannot resolve host 'no-such-host.invalid'");
  EXPECT_EQ(r.failure, HttpResponse::Failure::Resolve);
  r = fetch(loop, client, get("ftp://x/"));
  EXPECT_EQ(r.error, "'ftp://x/' is not an http:// or https:// URL");
  HttpClientRequest bad = get("http://127.0.0.1/");
  bad.method = "BREW";
  r = fetch(loop, client, bad);
  EXPECT_EQ(r.error, "unknown method 'BREW' (GET, HEAD, POST, PUT, DELETE, PATCH)");
}

TEST(HttpClient, UnixSocket) {
  std::string dir = temp_dir("unix");
  std::string path = dir + "/api.sock";
  StreamServer srv(path);
  NEED_SERVER(srv);
  EventLoop loop;
  HttpClient client(loop);
  HttpClientRequest q = get("http://localhost/hello");
  q.unix_socket = path;
  HttpResponse r = fetch(loop, client, q);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body, "hello\n");
  // Streaming over it too (docker events).
  q.url = "http://localhost/lines?n=3&ms=10";
  std::vector<std::string> lines;
  r = http_run(q, [&](std::string_view l) { lines.emplace_back(l); });
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(lines, (std::vector<std::string>{"line 0", "line 1", "line 2"}));
  std::filesystem::remove_all(dir);
}

TEST(HttpClient, StreamsLinesAcrossPacketBoundariesAndSse) {
  StreamServer srv;
  NEED_SERVER(srv);
  EventLoop loop;
  HttpClient client(loop);
  std::vector<std::string> lines;
  std::optional<HttpResponse> headers, done;
  HttpHandlers h;
  h.on_headers = [&](const HttpResponse& r) {
    EXPECT_TRUE(lines.empty());
    headers = r;
  };
  h.on_line = [&](std::string_view l) {
    EXPECT_TRUE(headers.has_value());
    EXPECT_FALSE(done.has_value());
    lines.emplace_back(l);
  };
  h.on_done = [&](const HttpResponse& r) { done = r; };
  // Each line is written in two chunks 40 ms apart; "\r\n" and "\n" ends.
  client.start(get(srv.url("/lines?n=6&ms=40")), h);
  ASSERT_TRUE(run_until(loop, [&] { return done.has_value(); }));
  EXPECT_TRUE(done->ok()) << done->error;
  ASSERT_TRUE(headers);
  EXPECT_EQ(headers->status, 200);
  EXPECT_EQ(lines, (std::vector<std::string>{"line 0", "line 1", "line 2", "line 3", "line 4",
                                             "line 5"}));
  EXPECT_TRUE(done->body.empty()) << "streamed lines are not kept";

  // SSE through the parser.
  std::vector<SseParser::Event> events;
  SseParser sse([&](const SseParser::Event& e) { events.push_back(e); });
  done.reset();
  HttpHandlers s;
  s.on_line = [&](std::string_view l) { sse.line(l); };
  s.on_done = [&](const HttpResponse& r) { done = r; };
  HttpClientRequest q = get(srv.url("/sse?n=3&ms=20"));
  q.headers = {{"Accept", "text/event-stream"}};
  client.start(q, s);
  ASSERT_TRUE(run_until(loop, [&] { return done.has_value(); }));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].id, "1");
  EXPECT_EQ(events[2].id, "3");
  EXPECT_EQ(events[1].type, "tick");
  EXPECT_EQ(events[1].data, "event 2");
  EXPECT_EQ(sse.last_id(), "3");

  // A non-2xx answer to a stream is not streamed: its body is for on_done.
  lines.clear();
  done.reset();
  headers.reset();
  client.start(get(srv.url("/status/404")), h);
  ASSERT_TRUE(run_until(loop, [&] { return done.has_value(); }));
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(done->status, 404);
  EXPECT_EQ(done->body, "status 404\n");
}

TEST(HttpClient, LineLimitCancelMidStreamAndFromCallbacks) {
  StreamServer srv;
  NEED_SERVER(srv);
  EventLoop loop;
  auto client = std::make_unique<HttpClient>(loop);
  // A line over the limit ends the request with an error.
  std::optional<HttpResponse> done;
  std::vector<std::string> lines;
  HttpHandlers h;
  h.on_line = [&](std::string_view l) { lines.emplace_back(l); };
  h.on_done = [&](const HttpResponse& r) { done = r; };
  HttpClientRequest q = get(srv.url("/long?bytes=100000"));
  q.max_line = 1000;
  client->start(q, h);
  ASSERT_TRUE(run_until(loop, [&] { return done.has_value(); }));
  EXPECT_EQ(done->failure, HttpResponse::Failure::LineTooLong);
  EXPECT_EQ(done->error, "a line longer than 1000 bytes");
  EXPECT_TRUE(lines.empty());
  // Within the limit: the long line whole, then the next.
  done.reset();
  q.max_line = 200000;
  client->start(q, h);
  ASSERT_TRUE(run_until(loop, [&] { return done.has_value(); }));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].size(), 100000u);
  EXPECT_EQ(lines[1], "end");

  // A stream that never ends, cancelled from inside its on_line.
  loop.run_once(10ms);
  size_t before = open_fds();
  int got = 0, finished = 0;
  RequestId id = 0;
  HttpHandlers forever;
  forever.on_line = [&](std::string_view) {
    if (++got == 3) client->cancel(id);
  };
  forever.on_done = [&](const HttpResponse&) { ++finished; };
  HttpClientRequest fq = get(srv.url("/forever?ms=20"));
  fq.timeout = Duration::zero();  // no limit on a stream
  id = client->start(fq, forever);
  ASSERT_TRUE(run_until(loop, [&] { return got >= 3; }));
  EXPECT_EQ(client->in_flight(), 0u);
  for (int i = 0; i < 5; ++i) loop.run_once(30ms);
  EXPECT_EQ(got, 3) << "no line after cancel";
  EXPECT_EQ(finished, 0) << "no on_done after cancel";

  // Cancelled from on_headers; and one cancelling another from on_done.
  RequestId a = 0, b = 0;
  int a_lines = 0, b_done = 0, c_done = 0;
  HttpHandlers ha;
  ha.on_headers = [&](const HttpResponse&) { client->cancel(a); };
  ha.on_line = [&](std::string_view) { ++a_lines; };
  a = client->start(fq, ha);
  HttpHandlers hb;
  hb.on_line = [](std::string_view) {};
  hb.on_done = [&](const HttpResponse&) { ++b_done; };
  b = client->start(fq, hb);
  HttpHandlers hc;
  hc.on_done = [&](const HttpResponse&) {
    ++c_done;
    client->cancel(b);
  };
  client->start(get(srv.url("/slow?ms=200")), hc);
  ASSERT_TRUE(run_until(loop, [&] { return c_done == 1; }));
  EXPECT_EQ(a_lines, 0);
  EXPECT_EQ(b_done, 0);
  EXPECT_EQ(client->in_flight(), 0u);

  // The client dropped from inside a callback, with others in flight.
  int after = 0;
  HttpHandlers drop;
  drop.on_line = [&](std::string_view) {
    ++after;
    client.reset();
  };
  HttpHandlers other;
  other.on_line = [&](std::string_view) { ++after; };
  other.on_done = [&](const HttpResponse&) { ++after; };
  client->start(fq, drop);
  client->start(fq, other);
  ASSERT_TRUE(run_until(loop, [&] { return !client; }));
  int at_drop = after;
  for (int i = 0; i < 5; ++i) loop.run_once(30ms);
  EXPECT_EQ(after, at_drop);
  for (int i = 0; i < 3; ++i) loop.run_once(10ms);
  EXPECT_LE(open_fds(), before) << "sockets closed";
}

TEST(HttpClient, TimeoutNeverBlocksTheLoop) {
  StreamServer srv;
  NEED_SERVER(srv);
  EventLoop loop;
  HttpClient client(loop);
  HttpClientRequest q = get(srv.url("/slow?ms=5000"));
  q.timeout = 500ms;
  std::optional<HttpResponse> got;
  HttpHandlers h;
  h.on_done = [&](const HttpResponse& r) { got = r; };
  client.start(q, h);
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    if (!got) loop.after(10ms, tick);
  };
  loop.after(10ms, tick);
  ASSERT_TRUE(run_until(loop, [&] { return got.has_value(); }));
  EXPECT_EQ(got->failure, HttpResponse::Failure::Timeout);
  EXPECT_TRUE(got->error.starts_with("timed out after 0.")) << got->error;
  EXPECT_TRUE(got->error.ends_with("(no answer)")) << got->error;
  EXPECT_GE(got->timings.total, 0.5);
  EXPECT_LT(got->timings.total, 3.0);
  EXPECT_GE(ticks, 20);  // ~50 possible in 0.5 s; a blocked loop gives 0-1
  EXPECT_LT(loop.worst_iteration(), 100ms);

  // A stream with an idle limit: no byte for that long ends it.
  HttpClientRequest idle = get(srv.url("/forever?ms=3000"));
  idle.timeout = Duration::zero();
  idle.idle_timeout = 1s;
  got.reset();
  h.on_line = [](std::string_view) {};
  client.start(idle, h);
  ASSERT_TRUE(run_until(loop, [&] { return got.has_value(); }));
  EXPECT_EQ(got->failure, HttpResponse::Failure::Timeout) << got->error;
  EXPECT_EQ(got->error, "no data for 1.0 s (idle timeout)");
  EXPECT_GE(got->timings.total, 1.0);
  EXPECT_LT(got->timings.total, 2.9) << "before the server's next line";
}

TEST(HttpClient, BearerTokenFile) {
  std::string dir = temp_dir("token");
  HttpClientRequest q;
  std::string error;
  EXPECT_FALSE(q.load_bearer_token(dir + "/none", error));
  EXPECT_EQ(error, "token file " + dir + "/none: No such file or directory");
  write_file(dir + "/t", "abc123\nignored\n");
  chmod((dir + "/t").c_str(), 0644);
  EXPECT_FALSE(q.load_bearer_token(dir + "/t", error));
  EXPECT_EQ(error, "token file " + dir + "/t is readable by others (mode 0644): chmod 600");
  chmod((dir + "/t").c_str(), 0600);
  ASSERT_TRUE(q.load_bearer_token(dir + "/t", error)) << error;
  EXPECT_EQ(q.bearer_token, "abc123");
  write_file(dir + "/empty", "\n");
  chmod((dir + "/empty").c_str(), 0600);
  EXPECT_FALSE(q.load_bearer_token(dir + "/empty", error));
  EXPECT_EQ(error, "token file " + dir + "/empty is empty");
  std::filesystem::remove_all(dir);
}

namespace {

const char* kNginx = "/usr/sbin/nginx";

// nginx serving TLS on two loopback ports: `open` without client
// certificates, `mtls` requiring one from the test CA (ssl_verify_client
// on answers 400 without one, or with one from another CA).
struct TlsNginx {
  std::string root;
  int open = 0, mtls = 0;
  pid_t pid = -1;
  bool ok = false;

  TlsNginx(const std::string& dir, const Certs& certs) : root(dir + "/nginx") {
    std::filesystem::create_directories(root);
    open = free_port();
    mtls = free_port();
    std::string tls = "ssl_certificate " + certs.server + "; ssl_certificate_key " +
                      certs.server_key + "; ssl_protocols TLSv1.2 TLSv1.3;";
    std::string conf = "worker_processes 1; pid " + root + "/nginx.pid; error_log " + root +
                       "/error.log; events { worker_connections 64; }\nhttp { access_log off; " +
                       "client_body_temp_path " + root + "/b; proxy_temp_path " + root +
                       "/p; fastcgi_temp_path " + root + "/f; uwsgi_temp_path " + root +
                       "/u; scgi_temp_path " + root + "/s;\n" +
                       "server { listen 127.0.0.1:" + std::to_string(open) + " ssl; " + tls +
                       " location / { return 200 \"tls ok\\n\"; } }\n" +
                       "server { listen 127.0.0.1:" + std::to_string(mtls) + " ssl; " + tls +
                       " ssl_client_certificate " + certs.ca +
                       "; ssl_verify_client on; location / { return 200 \"client "
                       "$ssl_client_s_dn\\n\"; } }\n}\n";
    write_file(root + "/nginx.conf", conf);
    pid = spawn_external({kNginx, "-e", root + "/error.log", "-c", root + "/nginx.conf", "-g",
                          "daemon off;"});
    ok = wait_for(
        [&] {
          auto r = run_command({"/usr/bin/curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                "https://127.0.0.1:" + std::to_string(open) + "/"});
          return r.out == "200";
        },
        20s);
  }
  ~TlsNginx() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      if (!reap(pid)) kill(pid, SIGKILL);
    }
  }
  std::string url(int port) const { return "https://127.0.0.1:" + std::to_string(port) + "/"; }
};

// The pin of a certificate's public key: sha256//BASE64 of its DER.
std::string pin_of(const std::string& cert) {
  auto r = run_command({"/bin/sh", "-c",
                        "openssl x509 -in '" + cert +
                            "' -pubkey -noout | openssl pkey -pubin -outform der | "
                            "openssl dgst -sha256 -binary | base64"});
  std::string b64 = r.out;
  while (!b64.empty() && (b64.back() == '\n' || b64.back() == '\r')) b64.pop_back();
  return "sha256//" + b64;
}

}  // namespace

TEST(HttpClient, TlsCaClientCertificatesAndPins) {
  if (access(kNginx, X_OK) != 0) GTEST_SKIP() << kNginx << " is not installed (nginx-light)";
  std::string dir = temp_dir("tls");
  Certs certs = Certs::make(dir, "IP:127.0.0.1,DNS:localhost");
  ASSERT_TRUE(certs.ok) << certs.error;
  TlsNginx web(dir, certs);
  ASSERT_TRUE(web.ok) << "nginx did not serve TLS: " << read_file(web.root + "/error.log");
  EventLoop loop;
  HttpClient client(loop);

  // Verified against the test CA.
  HttpClientRequest q = get(web.url(web.open));
  q.tls.ca_file = certs.ca;
  HttpResponse r = fetch(loop, client, q);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body, "tls ok\n");
  EXPECT_GT(r.timings.tls, 0);
  // Not trusted by the system's CAs; or by another CA.
  HttpClientRequest untrusted = get(web.url(web.open));
  r = fetch(loop, client, untrusted);
  EXPECT_EQ(r.failure, HttpResponse::Failure::Tls) << r.error;
  EXPECT_TRUE(r.error.starts_with("TLS: ")) << r.error;
  untrusted.tls.ca_file = certs.other_ca;
  r = fetch(loop, client, untrusted);
  EXPECT_EQ(r.failure, HttpResponse::Failure::Tls) << r.error;
  // Verification off (an explicit choice).
  untrusted.tls.verify = false;
  EXPECT_EQ(fetch(loop, client, untrusted).status, 200);

  // Pins: the right key passes, another is refused (also with verify on).
  q.tls.pinned_key = pin_of(certs.server);
  r = fetch(loop, client, q);
  EXPECT_TRUE(r.ok()) << r.error << " pin " << q.tls.pinned_key;
  EXPECT_EQ(r.status, 200);
  q.tls.pinned_key = pin_of(certs.expired);  // a different key
  r = fetch(loop, client, q);
  EXPECT_EQ(r.failure, HttpResponse::Failure::Pin) << r.error;
  EXPECT_EQ(r.error, "TLS: the server's public key does not match the pin");

  // Client certificates: from the CA, accepted; none or another CA's, refused.
  HttpClientRequest m = get(web.url(web.mtls));
  m.tls.ca_file = certs.ca;
  m.tls.cert_file = certs.client;
  m.tls.key_file = certs.client_key;
  r = fetch(loop, client, m);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("CN=console-1"), std::string::npos) << r.body;
  auto refused = [](const HttpResponse& x) {
    return x.status == 400 || x.failure == HttpResponse::Failure::Tls;
  };
  HttpClientRequest none = m;
  none.tls.cert_file.clear();
  none.tls.key_file.clear();
  r = fetch(loop, client, none);
  EXPECT_TRUE(refused(r)) << r.status << " " << r.error;
  EXPECT_EQ(r.body.find("client CN="), std::string::npos);
  HttpClientRequest intruder = m;
  intruder.tls.cert_file = certs.other_client;
  intruder.tls.key_file = certs.other_client_key;
  r = fetch(loop, client, intruder);
  EXPECT_TRUE(refused(r)) << r.status << " " << r.error;
  EXPECT_EQ(r.body.find("client CN="), std::string::npos);
  HttpClientRequest missing = m;
  missing.tls.cert_file = dir + "/no-such.crt";
  r = fetch(loop, client, missing);
  EXPECT_EQ(r.failure, HttpResponse::Failure::Tls) << r.error;
  std::filesystem::remove_all(dir);
}

namespace {

bool curl_mapped() {
  return read_file("/proc/self/maps").find("libcurl") != std::string::npos;
}

}  // namespace

// libcurl (and its TLS stack) is mapped at the first request, not when a
// client is made: a daemon whose users never make a request never pays it.
TEST(HttpClient, LibcurlIsLoadedAtTheFirstRequestOnly) {
  if (curl_mapped()) GTEST_SKIP() << "libcurl already loaded by an earlier test in this process";
  EventLoop loop;
  auto client = HttpClient::for_loop(loop);
  EXPECT_FALSE(curl_mapped());
  fetch(loop, *client, get("ftp://x/"));  // refused before curl is needed
  EXPECT_FALSE(curl_mapped());
  fetch(loop, *client, get("http://127.0.0.1:" + std::to_string(free_port()) + "/"));
  EXPECT_TRUE(curl_mapped());
}

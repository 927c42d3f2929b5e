// HttpServer over real sockets: one thread, the loop pumped until what the
// client waits for arrives (with a deadline), never a sleep.
#include "host/net/http_server.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/tls.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

size_t open_fds() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// Pumps the loop until done() or the deadline (false).
bool pump(EventLoop& loop, const std::function<bool()>& done, Duration max = 20s) {
  auto deadline = MonoClock::now() + max;
  while (!done()) {
    if (MonoClock::now() >= deadline) return false;
    loop.run_once(5ms);
  }
  return true;
}

// A non-blocking client socket; read() collects what came.
struct Client {
  Fd fd;
  std::string in;
  bool eof = false;

  static Client tcp(int port) {
    Client c;
    c.fd = Fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(c.fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS) << strerror(errno);
    return c;
  }
  static Client unix_path(const std::string& path) {
    Client c;
    c.fd = Fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(connect(c.fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
    return c;
  }
  // Sends all of text (the socket buffer takes a request at once).
  bool send(const std::string& text) {
    size_t off = 0;
    auto deadline = MonoClock::now() + 10s;
    while (off < text.size() && MonoClock::now() < deadline) {
      ssize_t n = ::send(fd.get(), text.data() + off, text.size() - off, MSG_NOSIGNAL);
      if (n > 0) off += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN) return false;
    }
    return off == text.size();
  }
  void read() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)) eof = true;
      return;
    }
  }
  // Pumps until `text` is in what came (or EOF).
  bool wait_for(EventLoop& loop, const std::string& text) {
    return pump(loop, [&] {
      read();
      return in.find(text) != std::string::npos || eof;
    }) && in.find(text) != std::string::npos;
  }
  bool wait_eof(EventLoop& loop) {
    return pump(loop, [&] {
      read();
      return eof;
    });
  }
  size_t count(const std::string& text) const {
    size_t n = 0;
    for (size_t i = in.find(text); i != std::string::npos; i = in.find(text, i + 1)) ++n;
    return n;
  }
};

struct Server {
  EventLoop loop;
  HttpServer http{loop};
  HttpServer::ListenerId id = 0;
  int port = 0;
  std::vector<std::string> errors;

  explicit Server(HttpListenerOptions o = {}) {
    http.router().add("GET", "/hello", [](HttpRequest& r, HttpReply reply) {
      reply.send(200, "text/plain", "hello " + r.header("x-name") + "\n");
    });
    http.router().add("POST", "/echo", [](HttpRequest& r, HttpReply reply) {
      reply.send(200, "application/octet-stream", r.body);
    });
    o.on_error = [this](const std::string& e) { errors.push_back(e); };
    ListenAddress a;
    std::string err;
    EXPECT_TRUE(parse_listen_address("127.0.0.1:0", a, err)) << err;
    id = http.listen(a, std::move(o), err);
    EXPECT_NE(id, 0u) << err;
    port = http.port(id);
    EXPECT_GT(port, 0);
  }
};

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

}  // namespace

TEST(HttpServer, KeepAliveAndPipeliningAnswerInOrder) {
  Server s;
  // /slow answers 50 ms later; /fast at once: the fast reply still waits.
  s.http.router().add("GET", "/slow", [&](HttpRequest&, HttpReply reply) {
    s.loop.after(50ms, [reply]() mutable { reply.send(200, "text/plain", "slow\n"); });
  });
  s.http.router().add("GET", "/fast", [](HttpRequest&, HttpReply reply) {
    reply.send(200, "text/plain", "fast\n");
  });
  Client c = Client::tcp(s.port);
  ASSERT_TRUE(c.send(get("/slow") + get("/fast") + get("/hello", "X-Name: a\r\n")));
  ASSERT_TRUE(c.wait_for(s.loop, "hello a\n")) << c.in;
  size_t slow = c.in.find("slow\n"), fast = c.in.find("fast\n");
  ASSERT_NE(slow, std::string::npos) << c.in;
  EXPECT_LT(slow, fast) << c.in;
  EXPECT_EQ(c.count("HTTP/1.1 200 OK\r\n"), 3u);
  // The same connection serves on.
  ASSERT_TRUE(c.send(get("/hello", "X-Name: again\r\n")));
  ASSERT_TRUE(c.wait_for(s.loop, "hello again\n")) << c.in;
  EXPECT_FALSE(c.eof);
  EXPECT_EQ(s.http.connections(), 1u);
  EXPECT_EQ(s.http.stats().requests, 4u);
}

TEST(HttpServer, RequestBodyByContentLength) {
  Server s;
  Client c = Client::tcp(s.port);
  std::string body(100000, 'b');
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body));
  ASSERT_TRUE(c.wait_for(s.loop, body)) << c.in.substr(0, 200);
  EXPECT_NE(c.in.find("Content-Length: 100000\r\n"), std::string::npos);
}

// curl sends "Expect: 100-continue" before a body over 1 kB and waits a
// second for the interim reply: it comes before the body is sent, and the
// final reply after it; any other expectation is refused with 417.
TEST(HttpServer, ExpectContinueIsAnsweredBeforeTheBody) {
  Server s;
  Client c = Client::tcp(s.port);
  ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"));
  ASSERT_TRUE(c.wait_for(s.loop, "HTTP/1.1 100 Continue\r\n\r\n")) << c.in;
  EXPECT_EQ(c.in, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.send("hello"));
  ASSERT_TRUE(c.wait_for(s.loop, "\r\n\r\nhello")) << c.in;
  EXPECT_EQ(c.count("HTTP/1.1 100 Continue"), 1u);
  EXPECT_EQ(c.count("HTTP/1.1 200 OK\r\n"), 1u);

  Client d = Client::tcp(s.port);
  ASSERT_TRUE(d.send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 5\r\n\r\nhello"));
  ASSERT_TRUE(d.wait_for(s.loop, "HTTP/1.1 417 Expectation Failed\r\n")) << d.in;
  EXPECT_EQ(d.count("100 Continue"), 0u);
}

TEST(HttpServer, BadRequestsGetTheirStatus) {
  struct Case {
    std::string bytes;
    std::string status;
  };
  std::string huge_header = "GET /hello HTTP/1.1\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n";
  std::string many_headers = "GET /hello HTTP/1.1\r\n";
  for (int i = 0; i < 2000; ++i) many_headers += "X-" + std::to_string(i) + ": v\r\n";
  many_headers += "\r\n";
  const Case cases[] = {
      {"GARBAGE\r\n\r\n", "400"},
      {"GET\r\n\r\n", "400"},
      {"GET /hello HTTP/9.9\r\n\r\n", "400"},
      {"GET nopath HTTP/1.1\r\n\r\n", "400"},
      {"GET /%zz HTTP/1.1\r\n\r\n", "400"},
      {get("/nothing"), "404"},
      {"DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", "405"},
      {"POST /echo HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", "413"},
      {"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "411"},
      {huge_header, "431"},
      {many_headers, "431"},
      {"GET " + std::string(20000, '/') + " HTTP/1.1\r\n\r\n", "431"},
      {"GET /hello HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", "400"},
  };
  Server s;
  for (const auto& c : cases) {
    Client cl = Client::tcp(s.port);
    cl.send(c.bytes);
    EXPECT_TRUE(cl.wait_for(s.loop, "\r\n\r\n")) << c.bytes.substr(0, 60) << " -> " << cl.in;
    EXPECT_TRUE(cl.in.starts_with("HTTP/1.1 " + c.status + " ")) << c.bytes.substr(0, 60) << " -> " << cl.in;
    if (c.status == "405") {
      EXPECT_NE(cl.in.find("Allow: GET\r\n"), std::string::npos) << cl.in;
    }
    if (c.status != "404" && c.status != "405") {
      EXPECT_TRUE(cl.wait_eof(s.loop)) << "not closed after " << c.status;
    }
  }
  // The server still serves.
  Client ok = Client::tcp(s.port);
  ok.send(get("/hello", "X-Name: still\r\n"));
  EXPECT_TRUE(ok.wait_for(s.loop, "hello still")) << ok.in;
}

TEST(HttpServer, AnErrorAfterGoodRequestsComesAfterTheirReplies) {
  Server s;
  Client c = Client::tcp(s.port);
  c.send(get("/hello", "X-Name: 1\r\n") + get("/hello", "X-Name: 2\r\n") + "BAD\r\n\r\n");
  ASSERT_TRUE(c.wait_eof(s.loop));
  size_t one = c.in.find("hello 1"), two = c.in.find("hello 2"), bad = c.in.find("HTTP/1.1 400");
  ASSERT_NE(bad, std::string::npos) << c.in;
  EXPECT_LT(one, two);
  EXPECT_LT(two, bad);
}

TEST(HttpServer, SlowAndIdleClientsAreClosedByTheirDeadlines) {
  HttpListenerOptions o;
  o.limits.request_timeout = 200ms;
  o.limits.idle_timeout = 300ms;
  Server s(o);
  size_t fds = open_fds();
  // Half a request line, then nothing.
  Client slow = Client::tcp(s.port);
  slow.send("GET /hel");
  // A whole request, then idle on the kept-alive connection.
  Client idle = Client::tcp(s.port);
  idle.send(get("/hello"));
  auto t0 = MonoClock::now();
  ASSERT_TRUE(slow.wait_eof(s.loop));
  EXPECT_GE(MonoClock::now() - t0, 150ms);
  ASSERT_TRUE(idle.wait_eof(s.loop));
  EXPECT_NE(idle.in.find("hello"), std::string::npos);
  EXPECT_EQ(s.http.stats().timed_out, 2u);
  EXPECT_EQ(s.http.connections(), 0u);
  slow.fd.reset();
  idle.fd.reset();
  EXPECT_EQ(open_fds(), fds);
}

TEST(HttpServer, ChunkedRepliesAreFramed) {
  Server s;
  s.http.router().add("GET", "/chunks", [](HttpRequest&, HttpReply reply) {
    reply.begin_chunked(200, "text/plain");
    reply.chunk("hello");
    reply.chunk("");
    reply.chunk(std::string(300, 'x'));
    reply.end();
  });
  Client c = Client::tcp(s.port);
  c.send(get("/chunks") + get("/hello"));
  ASSERT_TRUE(c.wait_for(s.loop, "hello \n")) << c.in;
  EXPECT_NE(c.in.find("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n12c\r\n" + std::string(300, 'x') +
                      "\r\n0\r\n\r\nHTTP/1.1 200 OK"),
            std::string::npos)
      << c.in;
}

TEST(HttpServer, ServerSentEventsStreamUntilTheClientGoes) {
  Server s;
  HttpReply stream;
  bool closed = false;
  s.http.router().add("GET", "/events", [&](HttpRequest& r, HttpReply reply) {
    EXPECT_EQ(r.header("last-event-id"), "6");
    reply.begin_events();
    reply.on_close([&] { closed = true; });
    stream = reply;
  });
  Client c = Client::tcp(s.port);
  c.send(get("/events", "Last-Event-ID: 6\r\n"));
  ASSERT_TRUE(c.wait_for(s.loop, "text/event-stream")) << c.in;
  EXPECT_NE(c.in.find("Cache-Control: no-cache\r\n"), std::string::npos);
  EXPECT_TRUE(stream.event("7", "watch", "{\"a\":1}\nsecond line"));
  EXPECT_TRUE(stream.comment("keep-alive"));
  EXPECT_TRUE(stream.event("", "", "plain"));
  ASSERT_TRUE(c.wait_for(s.loop, "data: plain\n\n")) << c.in;
  EXPECT_NE(c.in.find("id: 7\nevent: watch\ndata: {\"a\":1}\ndata: second line\n\n"), std::string::npos)
      << c.in;
  EXPECT_NE(c.in.find(": keep-alive\n\n"), std::string::npos);
  // The idle timeout does not end a stream; the client going away does
  // (over TCP the server learns it when it writes: the keep-alives).
  EXPECT_TRUE(stream.open());
  c.fd.reset();
  ASSERT_TRUE(pump(s.loop, [&] {
    stream.comment();
    return closed;
  }));
  EXPECT_FALSE(stream.open());
  EXPECT_FALSE(stream.event("8", "", "x"));
  EXPECT_TRUE(stream.token().expired());
}

TEST(HttpServer, HeldReplyBeatsUntilAnswered) {
  Server s;
  HttpReply held;
  s.http.router().add("POST", "/stop", [&](HttpRequest&, HttpReply reply) {
    reply.heartbeat(20ms, "application/json");
    held = reply;
  });
  Client c = Client::tcp(s.port);
  c.send("POST /stop HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(c.wait_for(s.loop, "1\r\n \r\n1\r\n \r\n")) << c.in;
  EXPECT_TRUE(c.in.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")) << c.in;
  held.send(404, "application/json", "{\"ok\":false}");
  ASSERT_TRUE(c.wait_for(s.loop, "{\"ok\":false}\r\n0\r\n\r\n")) << c.in;
}

TEST(HttpServer, BeforeHookMayAnswerAndRefineTheIdentity) {
  HttpListenerOptions o;
  o.before = [](HttpRequest& r, HttpReply& reply) {
    if (r.header("authorization") != "Bearer good") {
      reply.send(401, "text/plain", "who are you\n", {{"WWW-Authenticate", "Bearer"}});
      return false;
    }
    r.identity.kind = Identity::Kind::Token;
    r.identity.name = "good";
    return true;
  };
  Server s(o);
  s.http.router().add("GET", "/me", [](HttpRequest& r, HttpReply reply) {
    reply.send(200, "text/plain", "me=" + r.identity.name + " from " + r.remote.substr(0, 10));
  });
  Client no = Client::tcp(s.port);
  no.send(get("/me"));
  ASSERT_TRUE(no.wait_for(s.loop, "who are you"));
  EXPECT_TRUE(no.in.starts_with("HTTP/1.1 401 Unauthorized\r\n")) << no.in;
  EXPECT_NE(no.in.find("WWW-Authenticate: Bearer\r\n"), std::string::npos);
  Client yes = Client::tcp(s.port);
  yes.send(get("/me", "Authorization: Bearer good\r\n"));
  ASSERT_TRUE(yes.wait_for(s.loop, "me=good from 127.0.0.1")) << yes.in;
}

TEST(HttpServer, UnixListenerIsPrivateAndKnowsItsPeer) {
  EventLoop loop;
  HttpServer http(loop);
  Identity seen;
  http.router().add("GET", "/who", [&](HttpRequest& r, HttpReply reply) {
    seen = r.identity;
    reply.send(200, "", "ok");
  });
  char tmpl[] = "/tmp/vigil-http-test.XXXXXX";
  ASSERT_TRUE(mkdtemp(tmpl));
  std::string path = std::string(tmpl) + "/s.sock";
  std::string err;
  auto id = http.listen_unix(path, {}, err);
  ASSERT_NE(id, 0u) << err;
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A second listener on the same path is refused: someone answers there.
  HttpServer other(loop);
  EXPECT_EQ(other.listen_unix(path, {}, err), 0u);
  EXPECT_NE(err.find("already listening"), std::string::npos) << err;
  Client c = Client::unix_path(path);
  c.send(get("/who"));
  ASSERT_TRUE(c.wait_for(loop, "\r\n\r\nok")) << c.in;
  EXPECT_EQ(seen.kind, Identity::Kind::Local);
  EXPECT_EQ(seen.uid, geteuid());
  EXPECT_EQ(seen.name, "uid:" + std::to_string(geteuid()));
  http.close(id);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(c.wait_eof(loop));
  std::filesystem::remove_all(tmpl);
}

TEST(HttpServer, AThousandConnectionsMeetTheCapAndLeaveNoFd) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2200) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < 2200) GTEST_SKIP() << "needs 2200 fds (RLIMIT_NOFILE is " << rl.rlim_cur << ")";
  HttpListenerOptions o;
  o.limits.max_connections = 100;
  o.accepts_per_wakeup = 64;
  Server s(o);
  size_t fds = open_fds();
  std::vector<Client> clients;
  for (int i = 0; i < 1000; ++i) {
    clients.push_back(Client::tcp(s.port));
    if (i % 50 == 0) s.loop.run_once(0ms);
  }
  // Every client is either served or told 503 and closed.
  size_t refused = 0;
  ASSERT_TRUE(pump(s.loop, [&] {
    refused = 0;
    for (auto& c : clients) {
      c.read();
      if (c.in.starts_with("HTTP/1.1 503 ")) ++refused;
    }
    return s.http.connections() == 100 && refused == 900;
  })) << s.http.connections() << " open, " << refused << " refused";
  EXPECT_EQ(s.http.stats().refused, 900u);
  EXPECT_FALSE(s.errors.empty());
  // The ones in: each still served.
  size_t served = 0;
  for (auto& c : clients)
    if (c.in.empty()) {
      c.send(get("/hello", "X-Name: n\r\n"));
      if (c.wait_for(s.loop, "hello n")) ++served;
    }
  EXPECT_EQ(served, 100u);
  clients.clear();
  ASSERT_TRUE(pump(s.loop, [&] { return s.http.connections() == 0; }));
  EXPECT_EQ(open_fds(), fds);
  // And the server serves normally after.
  Client after = Client::tcp(s.port);
  after.send(get("/hello", "X-Name: after\r\n"));
  EXPECT_TRUE(after.wait_for(s.loop, "hello after"));
}

TEST(HttpServer, RandomBytesNeitherCrashNorLeak) {
  Server s;
  size_t fds = open_fds();
  std::mt19937 rng(15);
  const std::string seeds[] = {get("/hello"), "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                               "GET /hello HTTP/1.0\r\n\r\n"};
  for (int i = 0; i < 300; ++i) {
    std::string bytes = seeds[i % 3];
    for (int m = rng() % 6; m > 0; --m) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    if (i % 7 == 0) bytes = std::string(rng() % 3000, static_cast<char>(rng()));
    Client c = Client::tcp(s.port);
    c.send(bytes);
    shutdown(c.fd.get(), SHUT_WR);
    ASSERT_TRUE(c.wait_eof(s.loop)) << "not closed after " << i;
  }
  ASSERT_TRUE(pump(s.loop, [&] { return s.http.connections() == 0; }));
  EXPECT_EQ(open_fds(), fds);
  Client ok = Client::tcp(s.port);
  ok.send(get("/hello", "X-Name: fine\r\n"));
  EXPECT_TRUE(ok.wait_for(s.loop, "hello fine"));
}

TEST(HttpServer, ARequestFromAHalfClosedClientIsAnswered) {
  Server s;
  Client c = Client::tcp(s.port);
  c.send(get("/hello", "X-Name: half\r\n"));
  shutdown(c.fd.get(), SHUT_WR);
  ASSERT_TRUE(c.wait_eof(s.loop));
  EXPECT_NE(c.in.find("hello half"), std::string::npos) << c.in;
}

TEST(HttpRouter, PatternsParamsAndRest) {
  HttpRouter r;
  std::string hit;
  r.add("GET", "/v1/watches/{name}", [&](HttpRequest& q, HttpReply) { hit = "watch " + q.param("name"); });
  r.add("GET", "/v1/watches/all", [&](HttpRequest&, HttpReply) { hit = "all"; });
  r.add("POST", "/v1/watches/{name}/{verb}", [&](HttpRequest& q, HttpReply) {
    hit = q.param("verb") + " " + q.param("name");
  });
  r.add("GET", "/files/{path...}", [&](HttpRequest& q, HttpReply) { hit = "file " + q.param("path"); });
  auto run = [&](std::string method, std::string target) {
    HttpRequest q;
    q.method = std::move(method);
    q.target = std::move(target);
    q.path = q.target.substr(0, q.target.find('?'));
    hit.clear();
    return r.dispatch(q, HttpReply()) ? hit : "none";
  };
  EXPECT_EQ(run("GET", "/v1/watches/db"), "watch db");
  EXPECT_EQ(run("GET", "/v1/watches/all"), "all");
  EXPECT_EQ(run("GET", "/v1/watches/a%2Fb"), "watch a/b");
  EXPECT_EQ(run("GET", "/v1/watches/db%40nodeb?x=1"), "watch db@nodeb");
  EXPECT_EQ(run("POST", "/v1/watches/db/stop"), "stop db");
  EXPECT_EQ(run("GET", "/files/a/b/c"), "file a/b/c");
  EXPECT_EQ(run("HEAD", "/v1/watches/db"), "watch db");
  EXPECT_EQ(run("GET", "/v1/watches"), "none");
  EXPECT_EQ(run("PUT", "/v1/watches/db"), "none");
  EXPECT_EQ(run("GET", "/v1/watches/%zz"), "none");
  auto routes = r.routes();
  ASSERT_EQ(routes.size(), 4u);
  EXPECT_EQ(routes[2].pattern, "/v1/watches/{name}/{verb}");
}

TEST(HttpServer, PercentCoding) {
  std::string out;
  EXPECT_EQ(percent_encode("a b/c@d~"), "a%20b%2Fc%40d~");
  EXPECT_TRUE(percent_decode("a%20b+c", out, true));
  EXPECT_EQ(out, "a b c");
  EXPECT_TRUE(percent_decode("a+b", out, false));
  EXPECT_EQ(out, "a+b");
  EXPECT_FALSE(percent_decode("%2", out, false));
  EXPECT_FALSE(percent_decode("%g0", out, false));
  EXPECT_EQ(http_reason(431), "Request Header Fields Too Large");
}

namespace {

// A stand-in for TLS (host/net/tls.cpp is another part): the "handshake"
// is the client sending a line "HELLO NAME\n"; then the stream is plain,
// and the peer is a certificate named NAME.
class FakeHandshake final : public Transport {
 public:
  explicit FakeHandshake(Fd fd) : Transport(std::move(fd)) {}
  Io handshake() override {
    char c;
    for (;;) {
      ssize_t n = ::read(fd_.get(), &c, 1);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Io::WantRead;
      if (n <= 0) {
        error_ = "handshake: the client went away";
        return Io::Error;
      }
      if (c == '\n') break;
      line_ += c;
    }
    if (!line_.starts_with("HELLO ")) {
      error_ = "handshake: not a hello";
      return Io::Error;
    }
    return Io::Ok;
  }
  Io read(char* buf, size_t n, size_t& got) override {
    ssize_t r = ::read(fd_.get(), buf, n);
    got = r > 0 ? static_cast<size_t>(r) : 0;
    if (r > 0) return Io::Ok;
    if (r == 0) return Io::Closed;
    return errno == EAGAIN ? Io::WantRead : Io::Error;
  }
  Io write(const char* buf, size_t n, size_t& put) override {
    ssize_t r = ::send(fd_.get(), buf, n, MSG_NOSIGNAL);
    put = r > 0 ? static_cast<size_t>(r) : 0;
    if (r >= 0) return Io::Ok;
    return errno == EAGAIN ? Io::WantWrite : Io::Closed;
  }
  Identity peer() const override {
    Identity id;
    id.kind = Identity::Kind::Certificate;
    id.name = line_.substr(6) + suffix;
    id.tls = true;
    return id;
  }
  std::string suffix;

 private:
  std::string line_;
};

class FakeTls final : public TlsServerContext {
 public:
  explicit FakeTls(std::string suffix) : suffix_(std::move(suffix)) {}
  std::unique_ptr<Transport> accept(Fd fd, std::string&) override {
    auto t = std::make_unique<FakeHandshake>(std::move(fd));
    t->suffix = suffix_;
    return t;
  }

 private:
  std::string suffix_;
};

}  // namespace

TEST(HttpServer, HandshakeFirstThenRequestsWithItsIdentity) {
  HttpListenerOptions o;
  o.tls = std::make_shared<FakeTls>("@old");
  o.limits.handshake_timeout = 200ms;
  Server s(o);
  s.http.router().add("GET", "/me", [](HttpRequest& r, HttpReply reply) {
    reply.send(200, "text/plain", "me=" + r.identity.name + (r.identity.tls ? " tls" : ""));
  });
  // Hello and the request in one write: the request is read right after.
  Client c = Client::tcp(s.port);
  c.send("HELLO alice\n" + get("/me"));
  ASSERT_TRUE(c.wait_for(s.loop, "me=alice@old tls")) << c.in;
  // A new context (reload): new connections use it, the open one goes on.
  s.http.set_tls(s.id, std::make_shared<FakeTls>("@new"));
  Client d = Client::tcp(s.port);
  d.send("HELLO bob\n" + get("/me"));
  ASSERT_TRUE(d.wait_for(s.loop, "me=bob@new tls")) << d.in;
  c.in.clear();
  c.send(get("/me"));
  ASSERT_TRUE(c.wait_for(s.loop, "me=alice@old tls")) << c.in;
  // No hello: closed at the handshake deadline. A bad one: at once.
  Client mute = Client::tcp(s.port);
  auto t0 = MonoClock::now();
  ASSERT_TRUE(mute.wait_eof(s.loop));
  EXPECT_GE(MonoClock::now() - t0, 150ms);
  EXPECT_TRUE(mute.in.empty());
  Client bad = Client::tcp(s.port);
  bad.send("GET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(bad.wait_eof(s.loop));
  bool said = false;
  for (const auto& e : s.errors) said |= e.find("handshake: not a hello") != std::string::npos;
  EXPECT_TRUE(said);
}

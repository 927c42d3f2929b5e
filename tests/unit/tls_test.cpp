// host/net/tls: real handshakes between the server transport (driven as
// the HTTP server drives it: non-blocking, waiting on the fd for what it
// asks) and a client written with OpenSSL directly, in a thread, over a
// socketpair. Certificates from tests/e2e/net_fixture (openssl(1)).
#include "host/net/tls.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"

namespace vigil {
namespace {

using Io = Transport::Io;
using Clock = std::chrono::steady_clock;
// Generous: ctest -j2 on a machine shared with compilers.
constexpr auto kDeadline = std::chrono::seconds(30);

// What the client does once connected, and what it saw.
struct ClientSpec {
  std::string ca;          // verify the server against it
  std::string cert, key;   // the client's certificate, if any
  int version = 0;         // only this protocol version (0: OpenSSL's range)
  std::string send;        // written after the handshake
  size_t expect = 0;       // bytes read back
  bool wait_close = false; // then read until the server's close_notify
  bool shutdown = true;    // send our close_notify at the end
};
struct ClientResult {
  bool connected = false;
  int version = 0;
  std::string got;
  std::string error;
  bool clean_close = false;  // the server's close_notify arrived
};

std::string client_error() {
  char buf[256];
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "no OpenSSL error";
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// A blocking OpenSSL client on fd (its own thread; timeouts on the socket
// so a server that never answers fails the test instead of hanging it).
ClientResult run_client(Fd fd, ClientSpec spec) {
  ClientResult r;
  timeval tv{30, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (spec.version) {
    SSL_CTX_set_min_proto_version(ctx, spec.version);
    SSL_CTX_set_max_proto_version(ctx, spec.version);
    if (spec.version < TLS1_2_VERSION) SSL_CTX_set_security_level(ctx, 0);  // else it refuses itself
  }
  if (!spec.ca.empty()) {
    SSL_CTX_load_verify_locations(ctx, spec.ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (!spec.cert.empty() && (SSL_CTX_use_certificate_file(ctx, spec.cert.c_str(), SSL_FILETYPE_PEM) != 1 ||
                             SSL_CTX_use_PrivateKey_file(ctx, spec.key.c_str(), SSL_FILETYPE_PEM) != 1)) {
    r.error = "client certificate: " + client_error();
    SSL_CTX_free(ctx);
    return r;
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd.get());
  if (SSL_connect(ssl) != 1) {
    r.error = "connect: " + client_error();
  } else {
    r.connected = true;
    r.version = SSL_version(ssl);
    if (!spec.send.empty() && SSL_write(ssl, spec.send.data(), static_cast<int>(spec.send.size())) <= 0)
      r.error = "write: " + client_error();
    char buf[4096];
    while (r.error.empty() && r.got.size() < spec.expect) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) {
        r.error = "read: " + client_error();
        break;
      }
      r.got.append(buf, static_cast<size_t>(n));
    }
    if (r.error.empty() && spec.wait_close) {
      int n = SSL_read(ssl, buf, sizeof buf);
      r.clean_close = n == 0 && SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
      if (!r.clean_close) r.error = "no close_notify: " + client_error();
    }
    if (spec.shutdown) SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return r;
}

// Calls step until it answers neither WantRead nor WantWrite, waiting on
// the fd for what it asked; WantRead/WantWrite after the deadline.
Io drive(Transport& t, const std::function<Io()>& step) {
  auto deadline = Clock::now() + kDeadline;
  for (;;) {
    Io io = step();
    if (io != Io::WantRead && io != Io::WantWrite) return io;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return io;
    pollfd p{t.fd(), static_cast<short>(io == Io::WantRead ? POLLIN : POLLOUT), 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
}

Io handshake(Transport& t) {
  return drive(t, [&] { return t.handshake(); });
}

// Reads exactly n bytes (or until something other than Ok).
std::string read_n(Transport& t, size_t n, Io* last = nullptr) {
  std::string out;
  Io io = Io::Ok;
  while (out.size() < n) {
    char buf[4096];
    size_t got = 0;
    io = drive(t, [&] { return t.read(buf, std::min(sizeof buf, n - out.size()), got); });
    if (io != Io::Ok) break;
    out.append(buf, got);
  }
  if (last) *last = io;
  return out;
}

bool write_all(Transport& t, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    size_t put = 0;
    if (drive(t, [&] { return t.write(data.data() + off, data.size() - off, put); }) != Io::Ok)
      return false;
    off += put;
  }
  return true;
}

// A connection: the server's transport on one end of a socketpair, the
// client's thread on the other, and how the server's handshake ended.
struct Connection {
  std::unique_ptr<Transport> server;
  std::future<ClientResult> client;
  Io handshake = Io::Error;
  std::string error;  // the server's
};

Connection connect(TlsServerContext& ctx, ClientSpec spec) {
  Connection c;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    c.error = "socketpair failed";
    return c;
  }
  Fd server(sv[0]), client(sv[1]);
  fcntl(server.get(), F_SETFL, fcntl(server.get(), F_GETFL) | O_NONBLOCK);
  c.server = ctx.accept(std::move(server), c.error);
  c.client = std::async(std::launch::async, run_client, std::move(client), std::move(spec));
  if (!c.server) return c;
  c.handshake = handshake(*c.server);
  if (c.handshake != Io::Ok) c.error = c.server->error();
  return c;
}

class Tls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char t[] = "/tmp/vigil-tls-XXXXXX";
    dir_ = mkdtemp(t);
    certs_ = test::Certs::make(dir_, "IP:127.0.0.1,DNS:nodeb");
    if (!certs_.ok) return;
    // A client certificate with every kind of SAN peer() names, and a
    // server certificate valid only from 2099 (`openssl ca`, as the
    // fixture makes its expired one).
    std::string cd = "cd '" + dir_ + "' && ";
    test::write_file(dir_ + "/san.ext",
               "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:console-1.example,IP:10.0.0.7,"
               "IP:2001:db8::1,URI:spiffe://vigil/console,email:ops@example.com\n");
    const char* key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    for (const std::string& s : {
             "openssl req " + std::string(key) +
                 " -keyout san.key -out san.csr -subj /CN=console-1/O=vigil-operators",
             std::string("openssl x509 -req -in san.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                         "-out san.crt -days 30 -extfile san.ext"),
             "openssl req " + std::string(key) + " -keyout future.key -out future.csr -subj /CN=future",
             std::string("openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in future.csr "
                         "-out future.crt -startdate 20990101000000Z -enddate 20991231000000Z -notext"),
             std::string("openssl pkey -in srv.key -aes256 -passout pass:secret -out encrypted.key"),
         }) {
      auto r = test::run_command({"/bin/sh", "-c", cd + s});
      if (r.code != 0) {
        certs_.ok = false;
        certs_.error = s + ": " + r.err;
        return;
      }
    }
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  void SetUp() override {
    std::string why;
    if (!tls_available(why)) GTEST_SKIP() << "OpenSSL 3 cannot be loaded here: " << why;
    ASSERT_TRUE(certs_.ok) << certs_.error;
  }

  static std::shared_ptr<TlsServerContext> load(const TlsServerFiles& f) {
    std::string error;
    auto ctx = TlsServerContext::load(f, error);
    EXPECT_TRUE(ctx) << error;
    return ctx;
  }
  static std::string load_error(const TlsServerFiles& f) {
    std::string error;
    auto ctx = TlsServerContext::load(f, error);
    EXPECT_FALSE(ctx);
    return error;
  }
  static TlsServerFiles mutual() { return {certs_.server, certs_.server_key, certs_.ca}; }
  static ClientSpec good_client() {
    ClientSpec s;
    s.ca = certs_.ca, s.cert = certs_.client, s.key = certs_.client_key;
    return s;
  }
  static std::string path(const char* f) { return dir_ + "/" + f; }

  static inline std::string dir_;
  static inline test::Certs certs_;
};

TEST_F(Tls, ClientCertificateNamesThePeer) {
  auto ctx = load(mutual());
  ASSERT_TRUE(ctx);
  ClientSpec spec = good_client();
  spec.cert = path("san.crt"), spec.key = path("san.key");
  spec.send = "ping", spec.expect = 4;
  auto c = connect(*ctx, spec);
  ASSERT_EQ(c.handshake, Io::Ok) << c.error;
  Identity id = c.server->peer();
  EXPECT_EQ(id.kind, Identity::Kind::Certificate);
  EXPECT_TRUE(id.tls);
  EXPECT_EQ(id.name, "console-1");
  EXPECT_EQ(id.subject, "O=vigil-operators,CN=console-1");
  EXPECT_EQ(id.sans, (std::vector<std::string>{"DNS:console-1.example", "IP:10.0.0.7", "IP:2001:db8::1",
                                               "URI:spiffe://vigil/console", "email:ops@example.com"}));
  EXPECT_EQ(read_n(*c.server, 4), "ping");
  EXPECT_TRUE(write_all(*c.server, "pong"));
  auto r = c.client.get();
  EXPECT_TRUE(r.connected) << r.error;
  EXPECT_EQ(r.got, "pong") << r.error;
  EXPECT_EQ(r.version, TLS1_3_VERSION);  // preferred when the client has it
}

TEST_F(Tls, WithoutClientCaThePeerIsAnonymousOverTls) {
  auto ctx = load({certs_.server, certs_.server_key, ""});
  ASSERT_TRUE(ctx);
  ClientSpec spec;
  spec.ca = certs_.ca, spec.send = "x", spec.expect = 1;
  auto c = connect(*ctx, spec);
  ASSERT_EQ(c.handshake, Io::Ok) << c.error;
  Identity id = c.server->peer();
  EXPECT_EQ(id.kind, Identity::Kind::Anonymous);
  EXPECT_TRUE(id.tls);
  EXPECT_TRUE(id.name.empty());
  EXPECT_EQ(read_n(*c.server, 1), "x");
  EXPECT_TRUE(write_all(*c.server, "y"));
  EXPECT_EQ(c.client.get().got, "y");
}

TEST_F(Tls, ClientWithoutCertificateFailsTheHandshake) {
  auto ctx = load(mutual());
  ASSERT_TRUE(ctx);
  ClientSpec spec;
  spec.ca = certs_.ca, spec.expect = 1;  // TLS 1.3: the client learns of it at its first read
  auto c = connect(*ctx, spec);
  EXPECT_EQ(c.handshake, Io::Error);
  EXPECT_EQ(c.error, "handshake: peer did not return a certificate");
  c.server.reset();
  auto r = c.client.get();
  EXPECT_TRUE(r.got.empty());
  EXPECT_FALSE(r.error.empty());
}

TEST_F(Tls, ClientFromAnotherCaFailsTheHandshake) {
  auto ctx = load(mutual());
  ASSERT_TRUE(ctx);
  ClientSpec spec;
  spec.ca = certs_.ca, spec.cert = certs_.other_client, spec.key = certs_.other_client_key;
  spec.expect = 1;
  auto c = connect(*ctx, spec);
  EXPECT_EQ(c.handshake, Io::Error);
  EXPECT_EQ(c.error,
            "handshake: certificate verify failed (unable to get local issuer certificate)");
  ASSERT_TRUE(c.server);
  EXPECT_EQ(c.server->peer().kind, Identity::Kind::Anonymous);
  c.server.reset();
  EXPECT_TRUE(c.client.get().got.empty());
}

TEST_F(Tls, Tls11ClientIsRefusedTls12Accepted) {
  auto ctx = load({certs_.server, certs_.server_key, ""});
  ASSERT_TRUE(ctx);
  ClientSpec old;
  old.ca = certs_.ca, old.version = TLS1_1_VERSION;
  auto c = connect(*ctx, old);
  EXPECT_EQ(c.handshake, Io::Error);
  EXPECT_EQ(c.error, "handshake: unsupported protocol");
  c.server.reset();
  EXPECT_FALSE(c.client.get().connected);

  ClientSpec tls12;
  tls12.ca = certs_.ca, tls12.version = TLS1_2_VERSION, tls12.send = "12", tls12.expect = 2;
  auto d = connect(*ctx, tls12);
  ASSERT_EQ(d.handshake, Io::Ok) << d.error;
  EXPECT_EQ(read_n(*d.server, 2), "12");
  EXPECT_TRUE(write_all(*d.server, "ok"));
  auto r = d.client.get();
  EXPECT_EQ(r.version, TLS1_2_VERSION);
  EXPECT_EQ(r.got, "ok") << r.error;
}

// A peer that is not a TLS client: it hangs up at once, or speaks plain
// HTTP. The handshake fails with a reason; nothing waits forever.
TEST_F(Tls, NonTlsPeersFailTheHandshake) {
  auto ctx = load(mutual());
  ASSERT_TRUE(ctx);
  for (const std::string& sent : {std::string(), std::string("GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")}) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
    Fd client(sv[1]);
    std::string error;
    auto t = ctx->accept(Fd(sv[0]), error);
    ASSERT_TRUE(t) << error;
    ASSERT_EQ(::write(client.get(), sent.data(), sent.size()), static_cast<ssize_t>(sent.size()));
    client.reset();
    EXPECT_EQ(handshake(*t), Io::Error);
    EXPECT_EQ(t->error(), sent.empty() ? "handshake: connection closed by the peer" : "handshake: http request");
    EXPECT_EQ(t->handshake(), Io::Error);  // and stays failed
  }
}

TEST_F(Tls, BufferedSaysARecordIsHalfRead) {
  auto ctx = load(mutual());
  ASSERT_TRUE(ctx);
  ClientSpec spec = good_client();
  spec.send = "hello world", spec.expect = 1;
  auto c = connect(*ctx, spec);
  ASSERT_EQ(c.handshake, Io::Ok) << c.error;
  EXPECT_FALSE(c.server->buffered());
  EXPECT_EQ(read_n(*c.server, 1), "h");
  // The rest of the record is inside OpenSSL, not on the socket: a loop
  // waiting for the fd would wait forever.
  EXPECT_TRUE(c.server->buffered());
  char buf[64];
  size_t got = 0;
  ASSERT_EQ(c.server->read(buf, sizeof buf, got), Io::Ok);
  EXPECT_EQ(std::string(buf, got), "ello world");
  EXPECT_FALSE(c.server->buffered());
  EXPECT_TRUE(write_all(*c.server, "!"));
  EXPECT_EQ(c.client.get().got, "!");
}

TEST_F(Tls, CloseNotifyBothWays) {
  auto ctx = load(mutual());
  ASSERT_TRUE(ctx);
  // The client closes: the server reads Closed, not Error.
  ClientSpec spec = good_client();
  spec.send = "bye";
  auto c = connect(*ctx, spec);
  ASSERT_EQ(c.handshake, Io::Ok) << c.error;
  Io last = Io::Ok;
  EXPECT_EQ(read_n(*c.server, 100, &last), "bye");
  EXPECT_EQ(last, Io::Closed) << c.server->error();
  EXPECT_TRUE(c.client.get().error.empty());

  // The server closes (its transport goes away): the client gets a
  // close_notify, a clean end rather than a truncation.
  ClientSpec waits = good_client();
  waits.send = "hi", waits.wait_close = true, waits.shutdown = false;
  auto d = connect(*ctx, waits);
  ASSERT_EQ(d.handshake, Io::Ok) << d.error;
  EXPECT_EQ(read_n(*d.server, 2), "hi");
  d.server.reset();
  auto r = d.client.get();
  EXPECT_TRUE(r.clean_close) << r.error;
}

TEST_F(Tls, ReloadKeepsConnectionsOfTheOldContext) {
  auto first = load(mutual());
  ASSERT_TRUE(first);
  ClientSpec spec = good_client();
  spec.send = "before", spec.expect = 5;
  auto c = connect(*first, spec);
  ASSERT_EQ(c.handshake, Io::Ok) << c.error;

  // vigil reload: a new context (here without client certificates), the
  // old one dropped while its connection is open.
  auto second = load({certs_.server, certs_.server_key, ""});
  ASSERT_TRUE(second);
  first.reset();
  EXPECT_EQ(read_n(*c.server, 6), "before");
  EXPECT_TRUE(write_all(*c.server, "still"));
  auto r = c.client.get();
  EXPECT_EQ(r.got, "still") << r.error;
  EXPECT_EQ(c.server->peer().name, "console-1");

  ClientSpec anon;
  anon.ca = certs_.ca, anon.send = "after", anon.expect = 3;
  auto d = connect(*second, anon);
  ASSERT_EQ(d.handshake, Io::Ok) << d.error;
  EXPECT_EQ(d.server->peer().kind, Identity::Kind::Anonymous);
  EXPECT_EQ(read_n(*d.server, 5), "after");
  EXPECT_TRUE(write_all(*d.server, "new"));
  EXPECT_EQ(d.client.get().got, "new");
}

TEST_F(Tls, LoadErrorsNameTheFileAndTheProblem) {
  std::string missing = path("nope.pem");
  EXPECT_EQ(load_error({missing, certs_.server_key, ""}),
            "cert " + missing + ": No such file or directory");
  EXPECT_EQ(load_error({certs_.server, missing, ""}), "key " + missing + ": No such file or directory");
  EXPECT_EQ(load_error({dir_, certs_.server_key, ""}), "cert " + dir_ + ": Is a directory");
  test::write_file(path("garbage.pem"), "this is not a certificate\n");
  EXPECT_EQ(load_error({path("garbage.pem"), certs_.server_key, ""}),
            "cert " + path("garbage.pem") + ": not PEM (no -----BEGIN line)");
  test::write_file(path("empty.pem"), "");
  EXPECT_EQ(load_error({certs_.server, path("empty.pem"), ""}), "key " + path("empty.pem") + ": empty file");
  EXPECT_EQ(load_error({"", certs_.server_key, ""}), "cert: no file given");
  // PEM, but not what the setting wants.
  EXPECT_EQ(load_error({certs_.server_key, certs_.server_key, ""}),
            "cert " + certs_.server_key + ": no certificate in it (no -----BEGIN CERTIFICATE line)");
  EXPECT_EQ(load_error({certs_.server, certs_.server, ""}), "key " + certs_.server + ": no private key in it");
  EXPECT_EQ(load_error({certs_.server, certs_.client_key, ""}),
            "key " + certs_.client_key + " does not match the certificate " + certs_.server);
  EXPECT_EQ(load_error({certs_.expired, certs_.expired_key, ""}),
            "certificate " + certs_.expired + " expired on 2020-01-02");
  EXPECT_EQ(load_error({path("future.crt"), path("future.key"), ""}),
            "certificate " + path("future.crt") + " is not valid before 2099-01-01");
  EXPECT_EQ(load_error({certs_.server, certs_.server_key, missing}),
            "client_ca " + missing + ": No such file or directory");
  EXPECT_EQ(load_error({certs_.server, certs_.server_key, certs_.server_key}),
            "client_ca " + certs_.server_key + ": no certificate in it (no -----BEGIN CERTIFICATE line)");
}

TEST_F(Tls, EncryptedKeyIsRefusedWithoutAPrompt) {
  // OpenSSL's default would ask for the passphrase on the terminal.
  EXPECT_EQ(load_error({certs_.server, path("encrypted.key"), ""}),
            "key " + path("encrypted.key") +
                " is encrypted: vigil does not ask for passphrases (keep the key unencrypted, mode 0600)");
  // A traditional (PEM-encrypted) key, Proc-Type: 4,ENCRYPTED.
  auto r = test::run_command({"/bin/sh", "-c", "cd '" + dir_ + "' && openssl ec -in srv.key -aes256 -passout pass:x"
                                                               " -out traditional.key 2>&1"});
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(load_error({certs_.server, path("traditional.key"), ""}).find(" is encrypted: "), std::string::npos);
}

TEST_F(Tls, Sha256AndConstantTimeCompare) {
  std::string error;
  EXPECT_EQ(sha256_hex("abc", error), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("", error), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("token-hash", "token-hash"));
  EXPECT_FALSE(constant_time_equal("token-hash", "token-hasH"));
  EXPECT_FALSE(constant_time_equal("Token-hash", "token-hash"));
  EXPECT_FALSE(constant_time_equal("token", "token-hash"));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

// A process linked as the daemon is (vigil_core, no OpenSSL) has neither
// libssl nor libcrypto mapped until it loads a TLS context. (This test
// binary links libssl for its client, so the check runs in that child.)
TEST_F(Tls, OpenSslIsMappedOnlyOnceLoaded) {
  auto r = test::run_command({VIGIL_TLS_LOAD_CHILD, certs_.server, certs_.server_key, certs_.ca});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("before: libssl=0 libcrypto=0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("after: libssl=1 libcrypto=1"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace vigil

// The remote API end to end: a real vigil serving HTTPS on loopback or in
// a network namespace, driven by the real CLI (--node, --nodes) and curl,
// with certificates made by openssl in the test.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <set>

#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"

namespace vigil::test {
namespace {

std::string lua_str(const std::string& s) { return "\"" + s + "\""; }

// The event ids ("id: N" lines) in an SSE capture, in order.
std::vector<uint64_t> sse_ids(const std::string& text) {
  std::vector<uint64_t> ids;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("id: ", 0) == 0) ids.push_back(std::stoull(line.substr(4)));
  return ids;
}

class Api : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = Certs::make(d_.dir() + "/certs", "IP:127.0.0.1,IP:10.200.0.2,DNS:localhost");
    if (!certs_.ok) GTEST_SKIP() << "openssl could not make certificates: " << certs_.error;
    port_ = free_port();
    url_ = "https://127.0.0.1:" + std::to_string(port_);
    token_file_ = d_.dir() + "/tokens";
    auto r = run_command({VIGIL_BINARY, "token", "add", "reader", "--file", token_file_});
    ASSERT_EQ(r.code, 0) << r.err;
    reader_token_ = r.out.substr(0, r.out.find('\n'));
    reader_token_file_ = d_.dir() + "/reader.token";
    write_file(reader_token_file_, reader_token_ + "\n");
    chmod(reader_token_file_.c_str(), 0600);
  }

  // api { } on loopback with TLS, client certificates and tokens.
  // With tokens, a client may come without a certificate (and must bring
  // a token); without, the handshake requires one.
  std::string api_rule(const std::string& listen, bool tokens = true) const {
    return "api { listen = " + lua_str(listen) + ", cert = " + lua_str(certs_.server) +
           ", key = " + lua_str(certs_.server_key) + ", client_ca = " + lua_str(certs_.ca) +
           (tokens ? ", tokens = " + lua_str(token_file_) : std::string()) +
           ", operators = { \"console-1\" } }\n";
  }
  void start_with_web(const std::string& api) {
    d_.write_rule("web.lua", "watch \"web\" { start = { \"/bin/sleep\", \"1000\" } }\n" + api);
    ASSERT_TRUE(d_.start()) << d_.output();
    ASSERT_TRUE(d_.wait_event("VGL0227")) << d_.output();
    ASSERT_TRUE(wait_for([&] { return d_.watch_state("web") == "running"; }));
  }
  // The CLI on the node, with the console-1 client certificate.
  CommandResult remote(std::vector<std::string> args, const std::string& url = "") const {
    std::vector<std::string> argv = {VIGIL_BINARY, "--node", url.empty() ? url_ : url, "--ca",
                                     certs_.ca, "--cert", certs_.client, "--key",
                                     certs_.client_key};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  }
  CommandResult with_token(const std::string& token_file, std::vector<std::string> args) const {
    std::vector<std::string> argv = {VIGIL_BINARY, "--node", url_, "--ca", certs_.ca};
    if (!token_file.empty()) argv.insert(argv.end(), {"--token-file", token_file});
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  }

  Daemon d_;
  Certs certs_;
  int port_ = 0;
  std::string url_, token_file_, reader_token_, reader_token_file_;
};

TEST_F(Api, ReadsAndActsWithTheRightCredentialsOnly) {
  start_with_web(api_rule("127.0.0.1:" + std::to_string(port_)));

  // A machine with a client certificate: reads, and acts (console-1 is an operator).
  auto r = remote({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("web"), std::string::npos) << r.out;
  r = remote({"status", "web", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"running\""), std::string::npos) << r.out;
  r = remote({"events", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("VGL0227"), std::string::npos) << r.out;
  {
    // The reply of /v1/events does not name the history file (the
    // socket's does, for a CLI on this machine).
    std::string got = d_.dir() + "/events_reply.json";
    pid_t c = spawn_external({"/bin/sh", "-c", "exec curl -sf --cacert " + certs_.ca + " --cert " + certs_.client +
                                                   " --key " + certs_.client_key + " " + url_ + "/v1/events > " + got});
    ASSERT_TRUE(reap(c));
    std::string body = read_file(got);
    EXPECT_NE(body.find("\"last_seq\""), std::string::npos) << body;
    EXPECT_EQ(body.find("history"), std::string::npos) << body;
  }
  // GET /v1/discover is a read the API serves: here no discovery is declared.
  r = remote({"discover", "--last"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("no discovery has run (declare discover { every = ... })"), std::string::npos)
      << r.err;
  pid_t before = d_.watch_pid("web");
  r = remote({"restart", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(wait_for([&] { pid_t p = d_.watch_pid("web"); return p != 0 && p != before; }));

  // A person with a token: reads, but may not act (not in api.operators).
  r = with_token(reader_token_file_, {"status"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = with_token(reader_token_file_, {"stop", "web"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("403"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("read only"), std::string::npos) << r.err;
  EXPECT_EQ(d_.watch_state("web"), "running");

  // No credentials, a wrong token: 401.
  r = with_token("", {"status"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.err.find("401"), std::string::npos) << r.err;
  std::string wrong = d_.dir() + "/wrong.token";
  write_file(wrong, "vgl_" + std::string(64, '0') + "\n");
  chmod(wrong.c_str(), 0600);
  r = with_token(wrong, {"status"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown token"), std::string::npos) << r.err;

  // A certificate from another CA: the handshake fails.
  r = run_command({VIGIL_BINARY, "--node", url_, "--ca", certs_.ca, "--cert",
                   certs_.other_client, "--key", certs_.other_client_key, "status"});
  EXPECT_EQ(r.code, 3) << r.out;
  // The server's key pinned instead of a CA (as a peer's `pin`): trusted by the key alone.
  auto pin = run_command({"/bin/sh", "-c",
                          "openssl x509 -in " + certs_.server + " -pubkey -noout | openssl pkey "
                          "-pubin -outform der | openssl dgst -sha256 -binary | base64"});
  ASSERT_EQ(pin.code, 0) << pin.err;
  std::string pinned = "sha256//" + pin.out.substr(0, pin.out.find('\n'));
  r = run_command({VIGIL_BINARY, "--node", url_ + "/", "--pin", pinned, "--cert", certs_.client,
                   "--key", certs_.client_key, "status"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = run_command({VIGIL_BINARY, "--node", url_, "--pin", "sha256//" + std::string(43, 'A') + "=",
                   "--cert", certs_.client, "--key", certs_.client_key, "status"});
  EXPECT_EQ(r.code, 3) << r.out;
  // A server we do not trust (no --ca): refused by the client.
  r = run_command({VIGIL_BINARY, "--node", url_, "--token-file", reader_token_file_, "status"});
  EXPECT_EQ(r.code, 3) << r.out;

  // Refusals are told, coalesced (one event for the burst, with a count).
  ASSERT_TRUE(d_.wait_event("VGL0229", "", 1, std::chrono::seconds(20)));
  // Supervision went on.
  EXPECT_EQ(d_.watch_state("web"), "running");
}

TEST_F(Api, WithoutAClientCertificateTheHandshakeFails) {
  start_with_web(api_rule("127.0.0.1:" + std::to_string(port_), false));
  // client_ca and no tokens: a client without a certificate gets no TLS
  // session at all, so no HTTP is spoken.
  auto r = run_command({"/usr/bin/curl", "-sS", "--cacert", certs_.ca, url_ + "/v1/status"});
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("\"ok\""), std::string::npos) << r.out;
  // With the certificate it works.
  r = run_command({"/usr/bin/curl", "-sS", "--cacert", certs_.ca, "--cert", certs_.client, "--key",
                   certs_.client_key, url_ + "/v1/status"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"web\""), std::string::npos) << r.out;
}

TEST_F(Api, BadDeclarationsAreLoadErrorsNamingTheFile) {
  auto r = check_rule("api { listen = \"10.1.0.2:8443\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("rule.lua:1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("loopback"), std::string::npos) << r.err;

  r = check_rule("api { listen = \"127.0.0.1:8443\", cert = \"/nonexistent/api.pem\", key = \"" +
                 certs_.server_key + "\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("/nonexistent/api.pem"), std::string::npos) << r.err;

  r = check_rule("api { listen = \"127.0.0.1:8443\", cert = \"" + certs_.expired +
                 "\", key = \"" + certs_.expired_key + "\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("expired"), std::string::npos) << r.err;

  r = check_rule("api { listen = \"127.0.0.1:8443\", cert = \"" + certs_.server + "\", key = \"" +
                 certs_.client_key + "\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("match"), std::string::npos) << r.err;

  chmod(token_file_.c_str(), 0644);
  r = check_rule(api_rule("127.0.0.1:8443"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find(token_file_), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0644"), std::string::npos) << r.err;
  chmod(token_file_.c_str(), 0600);
}

TEST_F(Api, ABadReloadKeepsTheRunningApi) {
  start_with_web(api_rule("127.0.0.1:" + std::to_string(port_)));
  d_.write_rule("web.lua", "watch \"web\" { start = { \"/bin/sleep\", \"1000\" } }\n" +
                               std::string("api { listen = \"127.0.0.1:") + std::to_string(port_) +
                               "\", cert = \"/nonexistent.pem\", key = \"/nonexistent.key\" }\n");
  auto r = d_.cli({"reload"});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("/nonexistent.pem"), std::string::npos) << r.err;
  r = remote({"status"});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(Api, APortInUseIsRetriedAndSupervisionGoesOn) {
  // Something else holds the port (not inherited by the daemon: CLOEXEC).
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(s, 4), 0);
  d_.write_rule("web.lua", "watch \"web\" { start = { \"/bin/sleep\", \"1000\" } }\n" +
                               api_rule("127.0.0.1:" + std::to_string(port_)));
  ASSERT_TRUE(d_.start()) << d_.output();
  ASSERT_TRUE(d_.wait_event("VGL0228")) << d_.output();
  ASSERT_TRUE(wait_for([&] { return d_.watch_state("web") == "running"; }));
  close(s);
  // Tried again every 10 s.
  ASSERT_TRUE(d_.wait_event("VGL0227", "", 1, std::chrono::seconds(25))) << d_.output();
  auto r = remote({"status"});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(Api, EventStreamResumesAcrossARestartWithoutLossOrDuplicates) {
  std::string port = std::to_string(port_);
  start_with_web(api_rule("127.0.0.1:" + port));
  std::string cap1 = d_.dir() + "/sse1.txt";
  auto curl = [&](const std::string& out, const std::string& last_id) {
    std::string cmd = "exec curl -sN --cacert " + certs_.ca + " --cert " + certs_.client +
                      " --key " + certs_.client_key +
                      (last_id.empty() ? "" : " -H 'Last-Event-ID: " + last_id + "'") + " " +
                      url_ + "/v1/events/stream > " + out;
    return spawn_external({"/bin/sh", "-c", cmd});
  };
  pid_t c1 = curl(cap1, "");
  // The stream is open once the daemon counts it.
  ASSERT_TRUE(wait_for([&] {
    auto info = d_.daemon_info();
    return info.is_object() && info.value("event_streams", 0) >= 1;
  }));
  for (int i = 0; i < 3; ++i) {
    pid_t p = d_.watch_pid("web");
    ASSERT_EQ(d_.cli({"restart", "web"}).code, 0);
    ASSERT_TRUE(wait_for([&] { pid_t q = d_.watch_pid("web"); return q != 0 && q != p; }));
  }
  ASSERT_TRUE(wait_for([&] { return sse_ids(read_file(cap1)).size() >= 6; }));
  ASSERT_EQ(d_.stop(), 0);
  ASSERT_TRUE(reap(c1));  // the stream ended with the daemon
  auto first = sse_ids(read_file(cap1));
  ASSERT_FALSE(first.empty());
  for (size_t i = 1; i < first.size(); ++i) ASSERT_EQ(first[i], first[i - 1] + 1) << read_file(cap1);

  // Restarted on the same state directory: sequence numbers go on, and the
  // client resumes exactly after the last id it saw.
  ASSERT_TRUE(d_.start()) << d_.output();
  ASSERT_TRUE(d_.wait_event("VGL0227"));
  std::string cap2 = d_.dir() + "/sse2.txt";
  pid_t c2 = curl(cap2, std::to_string(first.back()));
  ASSERT_TRUE(wait_for([&] {
    std::string t = read_file(cap2);
    return t.find("VGL0227") != std::string::npos;
  })) << read_file(cap2);
  kill(c2, SIGTERM);
  reap(c2);
  std::string t2 = read_file(cap2);
  auto second = sse_ids(t2);
  ASSERT_FALSE(second.empty());
  EXPECT_EQ(t2.find("event: gap"), std::string::npos) << t2;
  EXPECT_EQ(second.front(), first.back() + 1) << t2;
  for (size_t i = 1; i < second.size(); ++i) EXPECT_EQ(second[i], second[i - 1] + 1) << t2;
}

TEST_F(Api, MalformedAndFloodedConnectionsLeaveTheDaemonUnaffected) {
  start_with_web(api_rule("127.0.0.1:" + std::to_string(port_)));
  // One request first: what the first TLS session opens for good (the
  // library's files) is not a leak.
  ASSERT_EQ(remote({"status"}).code, 0);
  size_t fds_before = socket_count(d_.pid());
  std::string before_list = fd_list(d_.pid());
  auto connect_api = [&] {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(s);
      return -1;
    }
    return s;
  };
  // Plain HTTP garbage to a TLS listener, and a thousand idle connections.
  std::vector<int> socks;
  for (int i = 0; i < 1000; ++i) {
    int s = connect_api();
    if (s < 0) break;
    if (i % 3 == 0) (void)!write(s, "GET / HTTP/1.1\r\n\r\n", 18);
    if (i % 3 == 1) (void)!write(s, "\x16\x03\x01\xff\xff garbage", 14);
    socks.push_back(s);
  }
  EXPECT_GT(socks.size(), 100u);
  // The daemon answers its socket and its API meanwhile.
  EXPECT_EQ(d_.cli({"status"}).code, 0);
  EXPECT_EQ(d_.watch_state("web"), "running");
  for (int s : socks) close(s);
  auto r = remote({"status"});
  EXPECT_EQ(r.code, 0) << r.err;
  // Nothing leaks: the fds come back to what they were.
  EXPECT_TRUE(wait_for([&] { return socket_count(d_.pid()) <= fds_before; }, std::chrono::seconds(30)))
      << socket_count(d_.pid()) << " sockets, " << fds_before << " before:" << fd_list(d_.pid())
      << "\nbefore:" << before_list;
}

// Two nodes in network namespaces: B runs vigil with the API on its veth
// address; A's CLI and an event stream read it across the link.
class ApiNodes : public Api {
 protected:
  void SetUp() override {
    Api::SetUp();
    if (IsSkipped()) return;
    if (geteuid() != 0) GTEST_SKIP() << "network namespaces need root";
    pair_ = std::make_unique<NetPair>();
    if (!pair_->ok()) GTEST_SKIP() << "network namespaces: " << pair_->error();
    url_ = std::string("https://") + NetPair::kAddrB + ":" + std::to_string(port_);
    d_.set_prefix(pair_->in_b());
  }
  std::vector<std::string> in_a(std::vector<std::string> argv) const {
    auto v = pair_->in_a();
    v.insert(v.end(), argv.begin(), argv.end());
    return v;
  }
  std::unique_ptr<NetPair> pair_;
};

TEST_F(ApiNodes, StatusAndAStreamAcrossALinkThatGoesDownAndUp) {
  std::string listen = std::string(NetPair::kAddrB) + ":" + std::to_string(port_);
  start_with_web(api_rule(listen));
  auto r = run_command(in_a({VIGIL_BINARY, "--node", url_, "--ca", certs_.ca, "--cert",
                             certs_.client, "--key", certs_.client_key, "status"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("web"), std::string::npos) << r.out;

  // vigil --nodes: one table across a node that answers and one that does not.
  std::string nodes = d_.dir() + "/nodes.lua";
  write_file(nodes, "peer \"nodeb\" { url = " + lua_str(url_) + ", ca = " + lua_str(certs_.ca) +
                        ", cert = " + lua_str(certs_.client) + ", key = " +
                        lua_str(certs_.client_key) + " }\n" +
                        "peer \"nodec\" { url = \"https://10.200.0.3:" + std::to_string(port_) +
                        "\", ca = " + lua_str(certs_.ca) + " }\n");
  r = run_command(in_a({VIGIL_BINARY, "--timeout", "2", "--nodes", nodes, "status"}));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.out.find("NODE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nodeb"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("web"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nodec"), std::string::npos) << r.out;

  // An event stream from A; the link goes down while B restarts web twice,
  // then up: every event arrives, once, in order (TCP carried them over).
  std::string cap = d_.dir() + "/sse.txt";
  auto argv = in_a({"/bin/sh", "-c",
                    "exec curl -sN --cacert " + certs_.ca + " --cert " + certs_.client + " --key " +
                        certs_.client_key + " " + url_ + "/v1/events/stream > " + cap});
  pid_t c = spawn_external(argv);
  ASSERT_TRUE(wait_for([&] {
    auto info = d_.daemon_info();
    return info.is_object() && info.value("event_streams", 0) >= 1;
  }));
  ASSERT_TRUE(pair_->link(false));
  for (int i = 0; i < 2; ++i) {
    pid_t p = d_.watch_pid("web");
    ASSERT_EQ(d_.cli({"restart", "web"}).code, 0);
    ASSERT_TRUE(wait_for([&] { pid_t q = d_.watch_pid("web"); return q != 0 && q != p; }));
  }
  uint64_t last = d_.events(1).back()["seq"].get<uint64_t>();
  ASSERT_TRUE(pair_->link(true));
  ASSERT_TRUE(wait_for([&] {
    auto ids = sse_ids(read_file(cap));
    return !ids.empty() && ids.back() >= last;
  }, std::chrono::seconds(30))) << read_file(cap);
  kill(c, SIGTERM);
  reap(c);
  auto ids = sse_ids(read_file(cap));
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_EQ(ids[i], ids[i - 1] + 1);
}


// Two vigils: B serves the API; A declares B as a peer, watches B's db as
// "db@nodeb", and its app requires it.
TEST_F(ApiNodes, ARemoteWatchGatesALocalStartSeesADeathAndActs) {
  std::string listen = std::string(NetPair::kAddrB) + ":" + std::to_string(port_);
  d_.write_rule("db.lua", "watch \"db\" { start = { \"/bin/sleep\", \"1000\" }, autostart = false }\n" +
                              api_rule(listen));
  ASSERT_TRUE(d_.start()) << d_.output();
  ASSERT_TRUE(d_.wait_event("VGL0227")) << d_.output();

  Daemon a;
  a.set_prefix(pair_->in_a());
  a.write_rule("a.lua",
               "peer \"nodeb\" { url = " + lua_str(url_) + ", ca = " + lua_str(certs_.ca) +
                   ", cert = " + lua_str(certs_.client) + ", key = " + lua_str(certs_.client_key) +
                   ", every = \"1s\", fails = 2 }\n"
                   "local acted = false\n"
                   "watch \"db@nodeb\" { on = \"nodeb\", on_event = function(ev)\n"
                   "  if ev.remote_id == \"VGL0102\" and not acted then acted = true; vigil.remote(\"nodeb\"):restart(\"db\") end\n"
                   "end }\n"
                   "watch \"app\" { start = { \"/bin/sleep\", \"1000\" }, requires = \"db@nodeb\" }\n");
  ASSERT_TRUE(a.start()) << a.output();
  ASSERT_TRUE(a.wait_event("VGL0240", "", 1, std::chrono::seconds(15))) << a.output();
  // db is not started on B: A's app waits for it.
  EXPECT_EQ(a.watch_state("app"), "waiting");
  EXPECT_EQ(a.watch_pid("app"), 0);

  // B starts db: A's app starts.
  ASSERT_EQ(d_.cli({"start", "db"}).code, 0);
  ASSERT_TRUE(wait_for([&] { return a.watch_state("app") == "running"; }, std::chrono::seconds(15)))
      << a.output();

  // db dies on B: A hears of it through the stream, at once (not at the
  // next poll), and its rule restarts db on B through the API (console-1
  // is an operator there).
  pid_t db = d_.watch_pid("db");
  ASSERT_NE(db, 0);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(db, SIGKILL), 0);
  ASSERT_TRUE(a.wait_event("VGL0243", "db@nodeb", 1, std::chrono::seconds(15))) << a.output();
  auto heard = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // every (1 s) + the event's latency, with room for a noisy machine.
  EXPECT_LT(heard, 5.0) << "A heard of the death after " << heard << " s";
  ASSERT_TRUE(a.wait_event("VGL0244", "db@nodeb", 1, std::chrono::seconds(15))) << a.output();
  EXPECT_GE(d_.count_events("VGL0102", "db"), 1);
  ASSERT_TRUE(wait_for([&] {
    pid_t p = d_.watch_pid("db");
    return p != 0 && p != db && d_.count_events("VGL0101", "db") >= 3;
  })) << d_.output();

  // B goes away: A's peer is down and the remote watch is not ready.
  ASSERT_TRUE(pair_->link(false));
  ASSERT_TRUE(a.wait_event("VGL0241", "", 1, std::chrono::seconds(15))) << a.output();
  EXPECT_EQ(a.watch("db@nodeb")["ready"], false);
  ASSERT_TRUE(pair_->link(true));
  ASSERT_TRUE(a.wait_event("VGL0240", "", 2, std::chrono::seconds(20))) << a.output();
  EXPECT_EQ(a.stop(), 0) << a.output();
}

}  // namespace
}  // namespace vigil::test

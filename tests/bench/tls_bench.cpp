// vigil_tls_bench: the cost of host/net/tls on the server side.
//  1. RSS of this process (linked as the daemon is: vigil_core, no
//     OpenSSL) before and after loading OpenSSL and one server context.
//  2. Full TLS handshakes per second: a server on an EventLoop (one
//     thread, non-blocking, as the daemon's API listener will be) on
//     127.0.0.1, clients `openssl s_time -new` (a new session every time,
//     no resumption), for an ECDSA P-256 certificate (tests/e2e/net_fixture
//     Certs::make) with and without client certificates, and for RSA-2048.
//     Reported: handshakes completed per wall second, and the server's own
//     CPU per handshake (getrusage of this process: the clients are other
//     processes), i.e. how many one server core could do.
// Usage: vigil_tls_bench [--seconds S] [--clients N] [--tmp DIR] [--keep]
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "host/core/pidfd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/tls.hpp"
#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"
#include "tests/bench/bench_util.hpp"

extern char** environ;

namespace {

using vigil::EventLoop;
using vigil::Fd;
using vigil::TlsServerContext;
using vigil::Transport;
using Io = Transport::Io;

double cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(u.ru_utime) + tv(u.ru_stime);
}

std::map<std::string, long> memory() {
  std::map<std::string, long> m;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    for (const char* k : {"VmRSS", "RssAnon", "RssFile"})
      if (line.rfind(std::string(k) + ":", 0) == 0) m[k] = std::stol(line.substr(strlen(k) + 1));
  std::ifstream rollup("/proc/self/smaps_rollup");
  for (std::string line; std::getline(rollup, line);)
    if (line.rfind("Pss:", 0) == 0) m["Pss"] = std::stol(line.substr(4));
  return m;
}

// A TLS listener on 127.0.0.1: every connection's handshake driven on the
// loop; once done the connection is read until the client goes.
class Server {
 public:
  Server(EventLoop& loop, std::shared_ptr<TlsServerContext> ctx) : loop_(loop), ctx_(std::move(ctx)) {
    listener_.reset(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listener_.get(), 1024) != 0 ||
        getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      die(std::string("listen: ") + strerror(errno));
    port_ = ntohs(a.sin_port);
    watch_ = loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { accept_all(); });
  }
  ~Server() {
    for (auto& [id, c] : conns_) loop_.remove(c.watch);
    loop_.remove(watch_);
  }
  int port() const { return port_; }
  uint64_t handshakes = 0, failures = 0;
  std::string last_error;

 private:
  struct Conn {
    std::unique_ptr<Transport> t;
    vigil::WatchId watch = 0;
    bool ready = false;
  };

  void accept_all() {
    for (;;) {
      int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      std::string error;
      auto t = ctx_->accept(Fd(fd), error);
      if (!t) die("accept: " + error);
      uint64_t id = next_++;
      Conn& c = conns_[id];
      c.t = std::move(t);
      c.watch = loop_.add(c.t->fd(), EPOLLIN, [this, id](uint32_t) { step(id); });
      step(id);
    }
  }

  void step(uint64_t id) {
    Conn& c = conns_.at(id);
    Io io = Io::Ok;
    if (!c.ready) {
      io = c.t->handshake();
      if (io == Io::Ok) {
        c.ready = true;
        ++handshakes;
      }
    }
    char buf[4096];
    while (c.ready && io == Io::Ok) {
      size_t got = 0;
      io = c.t->read(buf, sizeof buf, got);
    }
    if (io == Io::WantRead || io == Io::WantWrite) {
      loop_.modify(c.watch, io == Io::WantRead ? EPOLLIN : EPOLLOUT);
      return;
    }
    if (io == Io::Error && !c.ready) {
      ++failures;
      last_error = c.t->error();
    }
    loop_.remove(c.watch);
    conns_.erase(id);
  }

  EventLoop& loop_;
  std::shared_ptr<TlsServerContext> ctx_;
  Fd listener_;
  vigil::WatchId watch_ = 0;
  int port_ = 0;
  uint64_t next_ = 1;
  std::map<uint64_t, Conn> conns_;
};

struct Case {
  const char* name;
  vigil::TlsServerFiles files;
  std::string client_cert, client_key;  // s_time -cert/-key (mutual TLS)
};

struct Result {
  uint64_t handshakes = 0, failures = 0;
  double wall = 0, server_cpu = 0;
  std::string error;
};

Result run_case(const Case& k, int clients, int seconds, const std::string& dir) {
  std::string error;
  auto ctx = TlsServerContext::load(k.files, error);
  if (!ctx) die(std::string(k.name) + ": " + error);
  EventLoop loop;
  Server server(loop, ctx);
  std::vector<Fd> pidfds;
  std::vector<vigil::WatchId> watches;
  int running = 0;
  double t0 = now_s(), c0 = cpu_s();
  for (int i = 0; i < clients; ++i) {
    std::vector<std::string> argv = {"/usr/bin/openssl", "s_time", "-connect",
                                     "127.0.0.1:" + std::to_string(server.port()), "-new", "-tls1_3",
                                     "-time", std::to_string(seconds)};
    if (!k.client_cert.empty()) argv.insert(argv.end(), {"-cert", k.client_cert, "-key", k.client_key});
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    std::string out = dir + "/s_time." + std::to_string(i) + ".out";
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = -1;
    if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) die("cannot run openssl s_time");
    posix_spawn_file_actions_destroy(&fa);
    Fd pfd(vigil::pidfd_open(pid, 0));
    if (!pfd) die("pidfd_open failed");
    ++running;
    watches.push_back(loop.add(pfd.get(), EPOLLIN, [&, pid, w = watches.size()](uint32_t) {
      waitpid(pid, nullptr, 0);
      loop.remove(watches[w]);
      if (--running == 0) loop.stop();
    }));
    pidfds.push_back(std::move(pfd));
  }
  // A client that never ends would hang the bench: stop anyway.
  loop.after(std::chrono::seconds(seconds + 30), [&] { loop.stop(1); });
  int code = loop.run();
  Result r;
  r.wall = now_s() - t0;
  r.server_cpu = cpu_s() - c0;
  r.handshakes = server.handshakes;
  r.failures = server.failures;
  r.error = server.last_error;
  if (code != 0) r.error = "clients did not finish in time";
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 5, clients = 2;
  std::string tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) die(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--seconds") seconds = std::stoi(value());
    else if (a == "--clients") clients = std::stoi(value());
    else if (a == "--tmp") tmp = value();
    else if (a == "--keep") keep = true;
    else die("unknown option " + a + " (--seconds S, --clients N, --tmp DIR, --keep)");
  }
  std::string dir = tmp + "/vigil-tls-bench-XXXXXX";
  if (!mkdtemp(dir.data())) die("mkdtemp " + dir + ": " + strerror(errno));
  auto certs = vigil::test::Certs::make(dir, "IP:127.0.0.1,DNS:nodeb");
  if (!certs.ok) die(certs.error);
  auto rsa = vigil::test::run_command(
      {"/bin/sh", "-c",
       "cd '" + dir + "' && openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj /CN=nodeb "
       "2>/dev/null && openssl x509 -req -in rsa.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out rsa.crt "
       "-days 30 -extfile srv.ext 2>/dev/null"});
  if (rsa.code != 0) die("RSA certificate: " + rsa.err);

  // 1. RSS: nothing of OpenSSL is loaded yet in this process.
  auto before = memory();
  std::string error;
  auto ctx = TlsServerContext::load({certs.server, certs.server_key, certs.ca}, error);
  if (!ctx) die(error);
  auto after = memory();
  printf("memory (kB)          before   after   delta   (OpenSSL 3 loaded + one server context)\n");
  for (const char* k : {"VmRSS", "RssAnon", "RssFile", "Pss"})
    printf("  %-16s %8ld %7ld %+7ld\n", k, before[k], after[k], after[k] - before[k]);
  ctx.reset();

  // 2. Handshakes.
  const Case cases[] = {
      {"ECDSA P-256", {certs.server, certs.server_key, ""}, "", ""},
      {"ECDSA P-256 mTLS", {certs.server, certs.server_key, certs.ca}, certs.client, certs.client_key},
      {"RSA-2048", {dir + "/rsa.crt", dir + "/rsa.key", ""}, "", ""},
  };
  printf("\nfull TLS 1.3 handshakes, %d s, %d `openssl s_time -new` clients, %ld cores\n", seconds, clients,
         sysconf(_SC_NPROCESSORS_ONLN));
  printf("  %-18s %10s %8s %12s %14s %16s\n", "certificate", "handshakes", "failed", "per second",
         "server us/hs", "per server core");
  int status = 0;
  for (const auto& k : cases) {
    Result r = run_case(k, clients, seconds, dir);
    double per_hs = r.handshakes ? r.server_cpu / static_cast<double>(r.handshakes) : 0;
    printf("  %-18s %10llu %8llu %12.0f %14.1f %16.0f\n", k.name, static_cast<unsigned long long>(r.handshakes),
           static_cast<unsigned long long>(r.failures), static_cast<double>(r.handshakes) / r.wall, per_hs * 1e6,
           per_hs > 0 ? 1 / per_hs : 0.0);
    if (!r.error.empty()) printf("    (%s)\n", r.error.c_str());
    if (r.handshakes == 0) status = 1;
  }
  if (keep) printf("\nkept %s\n", dir.c_str());
  else std::filesystem::remove_all(dir);
  return status;
}

// Resolver: asynchronous host name resolution delivered on the EventLoop.
// Nothing here blocks the loop: a name is looked up by getaddrinfo on a
// small pool of worker threads (started at the first lookup, gone when
// idle), whose answers come back through one eventfd watched by the loop.
// getaddrinfo rather than c-ares: it is what every other program on the
// host uses (nsswitch: /etc/hosts, systemd-resolved, mdns, LDAP), curl's
// own threaded resolver does the same, and it needs no new package.
//
// A numeric address (127.0.0.1, ::1, [::1]) is answered without a lookup
// and without a thread. Every answer, numeric or not, arrives through the
// callback later than the resolve() call that asked for it (never from
// inside it), exactly once, unless cancelled first. A lookup that takes
// longer than its timeout is answered with an error at the timeout (the
// worker's late answer is dropped).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/loop/event_loop.hpp"

namespace vigil {

// One socket address (IPv4, IPv6), as connect() takes it.
struct ResolvedAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;

  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  // "127.0.0.1:514", "[::1]:8443" (log lines, tests).
  std::string text() const;
};

struct ResolveResult {
  std::vector<ResolvedAddress> addresses;  // in getaddrinfo's order; not empty when ok()
  // "": resolved. Otherwise words naming the host: "cannot resolve host
  // 'nodeb': Name or service not known", "resolving 'nodeb' timed out
  // after 5s".
  std::string error;
  double elapsed = 0;  // seconds from resolve() to the answer
  bool ok() const { return error.empty(); }
};

using ResolveId = uint64_t;

class Resolver {
 public:
  using Done = std::function<void(const ResolveResult&)>;

  struct Options {
    int socktype = SOCK_STREAM;  // SOCK_STREAM or SOCK_DGRAM
    int family = AF_UNSPEC;      // AF_INET, AF_INET6 or AF_UNSPEC
    Duration timeout = std::chrono::seconds(5);
  };

  explicit Resolver(EventLoop& loop);
  ~Resolver();  // cancels everything; no callback runs; never waits for a worker
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The loop's shared resolver (one per EventLoop, made at the first
  // call, kept alive by its users: hold the shared_ptr as long as you use
  // it). Single-threaded, like the loop.
  static std::shared_ptr<Resolver> for_loop(EventLoop& loop);

  // Resolves `host` (a name, an IPv4 address, an IPv6 address with or
  // without brackets) for `port`. `done` runs on the loop.
  ResolveId resolve(const std::string& host, uint16_t port, Options options, Done done);
  ResolveId resolve(const std::string& host, uint16_t port, Done done) {
    return resolve(host, port, Options{}, std::move(done));
  }
  // Safe at any time, also from inside a callback: `done` will not run.
  void cancel(ResolveId id);
  size_t in_flight() const;

  struct Impl;  // opaque

 private:
  std::shared_ptr<Impl> impl_;  // shared with the workers, which may outlive the Resolver
};

// A numeric address for `port`, without any lookup; nullopt when `host`
// is not one (then it is a name for Resolver::resolve).
std::optional<ResolvedAddress> numeric_address(const std::string& host, uint16_t port);

// Splits "host:port", "[v6]:port" (the brackets are removed). false with
// error ("expected host:port, got 'x'", "bad port 'x' in 'h:x' (1-65535)").
bool split_host_port(const std::string& text, std::string& host, uint16_t& port,
                     std::string& error);

}  // namespace vigil

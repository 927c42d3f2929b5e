// Transport: a byte stream over one non-blocking socket, plain or TLS.
// host/net's HTTP server (and the CLI's client) read and write through it
// so that a connection's code does not care which it is; host/net/tls.hpp
// makes the TLS kind. Every call returns at once (the socket is
// non-blocking): WantRead / WantWrite say what to wait for on the loop.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "host/core/fd.hpp"

namespace vigil {

// Who is on the other end of a connection, as far as the transport knows.
// The HTTP layer adds a bearer token's name (api authentication); the Lua
// hook vigil.api.authorize decides what the identity may do.
struct Identity {
  enum class Kind { Anonymous, Local, Certificate, Token };
  Kind kind = Kind::Anonymous;
  std::string name;                // "uid:0", a certificate's subject CN, a token's name
  std::vector<std::string> sans;   // a certificate's subjectAltNames (DNS:, IP:, URI:)
  std::string subject;             // a certificate's full subject DN
  uid_t uid = static_cast<uid_t>(-1);  // Local: the peer's uid (SO_PEERCRED)
  bool tls = false;                // the connection is TLS (tokens are accepted only then)
};

class Transport {
 public:
  enum class Io { Ok, WantRead, WantWrite, Closed, Error };

  explicit Transport(Fd fd) : fd_(std::move(fd)) {}
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  int fd() const { return fd_.get(); }

  // Runs the handshake as far as it can without blocking: Ok once the
  // stream is ready (plain: at once), WantRead/WantWrite to be called
  // again when the socket is ready, Error (see error()) when it failed.
  virtual Io handshake() { return Io::Ok; }
  // Reads at most n bytes; `got` is what was read when Ok (0 never means
  // end of stream: that is Closed).
  virtual Io read(char* buf, size_t n, size_t& got) = 0;
  // Writes at most n bytes; `put` is what was written when Ok.
  virtual Io write(const char* buf, size_t n, size_t& put) = 0;
  // Bytes already read from the socket and buffered inside the transport
  // (TLS records): the caller must read again before waiting on the fd.
  virtual bool buffered() const { return false; }
  // What failed, for a log line ("handshake: certificate not trusted").
  virtual std::string error() const { return error_; }
  // After a successful handshake: who the peer is (certificate subject
  // and SANs for TLS with a verified client certificate).
  virtual Identity peer() const { return {}; }

 protected:
  Fd fd_;
  std::string error_;
};

// A plain stream (unix or TCP socket). For a unix socket, peer() is Local
// with the peer's uid from SO_PEERCRED.
std::unique_ptr<Transport> plain_transport(Fd fd);

}  // namespace vigil

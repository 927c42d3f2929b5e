// TLS for host/net: OpenSSL 3 (libssl.so.3), loaded (dlopen) only when a
// TLS listener is configured, so that a daemon without one does not carry
// the TLS stack (vigil_tls_bench: VmRSS +5.0 MB with OpenSSL and one
// context loaded, 0.9 MB of it private, the rest libcrypto's and libssl's
// text, shared with other processes that map them). It is the
// library libcurl (libcurl4-openssl, the HTTP client) already uses, so the
// client and the server share one TLS stack.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "host/net/transport.hpp"

namespace vigil {

struct TlsServerFiles {
  std::string cert;       // PEM certificate chain
  std::string key;        // PEM private key
  std::string client_ca;  // PEM CA bundle; non-empty: a client certificate is required and verified
  // With client_ca: a client may also come without a certificate (it is
  // then anonymous over TLS, and must bring a bearer token); one it does
  // present is verified as ever (another CA's fails the handshake).
  bool client_cert_optional = false;
};

// A server's credentials, loaded from PEM files: TLS 1.2 minimum, 1.3
// preferred. Loading again (vigil reload) makes a new context; connections
// made before keep the old one until they close (shared_ptr).
class TlsServerContext {
 public:
  // nullptr and error on failure, naming the setting and the file: "cert
  // /etc/vigil/api.pem: No such file or directory", "key /k.pem: not PEM
  // (no -----BEGIN line)", "key /k.pem does not match the certificate
  // /c.pem", "certificate /c.pem expired on 2026-11-30", "certificate /c.pem
  // is not valid before 2027-01-01", "client_ca /ca.pem: ...". An
  // encrypted key is refused (no passphrase prompt: it would block).
  static std::shared_ptr<TlsServerContext> load(const TlsServerFiles& files, std::string& error);
  virtual ~TlsServerContext() = default;
  // The server end of a TLS session over an accepted socket; its
  // handshake() verifies the client certificate when client_ca is set
  // (fails without one or with one from another CA), and peer() then
  // names it (subject CN, SANs, Kind::Certificate, tls = true; without
  // client_ca: Kind::Anonymous, tls = true). fd must be non-blocking; the
  // transport owns it. The daemon ignores SIGPIPE, which OpenSSL's writes
  // to a socket the peer closed would raise.
  virtual std::unique_ptr<Transport> accept(Fd fd, std::string& error) = 0;
  const TlsServerFiles& files() const { return files_; }

 protected:
  TlsServerFiles files_;
};

// Whether OpenSSL can be loaded here (tests skip TLS cases without it).
bool tls_available(std::string& error);

// SHA-256 of data, lower-case hex (the token file stores tokens hashed).
// Loads OpenSSL if needed; empty with error when it cannot.
std::string sha256_hex(const std::string& data, std::string& error);

// Whether a and b are equal, in a time that depends on their length only
// (not on where they differ): for comparing token hashes. Needs no OpenSSL.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace vigil

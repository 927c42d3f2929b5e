// TLS for host/net over OpenSSL 3, which is loaded (dlopen) at the first
// TlsServerContext::load, tls_available or sha256_hex, never linked: the
// OpenSSL headers give the types and constants, every call goes through
// the table below. A daemon without a TLS listener never maps libssl.
#include "host/net/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <time.h>

#include <cerrno>

#include "host/core/dynamic_library.hpp"

namespace vigil {

namespace {

// The OpenSSL functions vigil calls, each once in this list: the table's
// member has the function's own name and type. Only real functions: many
// OpenSSL names are macros over SSL_CTX_ctrl and the like (called here
// with their constants instead), and those would expand to linked calls.
#define VIGIL_LIBSSL(X)                                                                         \
  X(TLS_server_method) X(SSL_CTX_new) X(SSL_CTX_free) X(SSL_CTX_ctrl) X(SSL_CTX_set_options)   \
  X(SSL_CTX_set_security_level) X(SSL_CTX_set_default_passwd_cb)                               \
  X(SSL_CTX_set_session_id_context) X(SSL_CTX_use_certificate_chain_file)                      \
  X(SSL_CTX_use_PrivateKey_file) X(SSL_CTX_check_private_key) X(SSL_CTX_get0_certificate)      \
  X(SSL_CTX_load_verify_locations) X(SSL_load_client_CA_file) X(SSL_CTX_set_client_CA_list)    \
  X(SSL_CTX_set_verify) X(SSL_new) X(SSL_free) X(SSL_set_fd) X(SSL_set_accept_state)           \
  X(SSL_do_handshake) X(SSL_read_ex) X(SSL_write_ex) X(SSL_get_error) X(SSL_pending)           \
  X(SSL_shutdown) X(SSL_get_shutdown) X(SSL_get1_peer_certificate) X(SSL_get_verify_result)
#define VIGIL_LIBCRYPTO(X)                                                                        \
  X(ERR_get_error) X(ERR_peek_error) X(ERR_clear_error) X(ERR_reason_error_string) X(ERR_error_string_n)            \
  X(X509_free) X(X509_get_subject_name) X(X509_NAME_get_index_by_NID) X(X509_NAME_get_entry)     \
  X(X509_NAME_ENTRY_get_data) X(X509_NAME_print_ex) X(X509_get_ext_d2i) X(X509_get0_notBefore)   \
  X(X509_get0_notAfter) X(X509_verify_cert_error_string) X(GENERAL_NAMES_free) X(OPENSSL_sk_num) \
  X(OPENSSL_sk_value) X(ASN1_STRING_to_UTF8) X(ASN1_STRING_get0_data) X(ASN1_STRING_length)      \
  X(ASN1_TIME_to_tm) X(CRYPTO_free) X(BIO_new) X(BIO_s_mem) X(BIO_ctrl) X(BIO_free)              \
  X(EVP_Digest) X(EVP_sha256)

struct OpenSsl {
#define VIGIL_SLOT(f) decltype(&::f) f = nullptr;
  VIGIL_LIBSSL(VIGIL_SLOT)
  VIGIL_LIBCRYPTO(VIGIL_SLOT)
#undef VIGIL_SLOT
};

// Loaded once per process, on first use; later calls answer from the
// first try (a missing libssl3 stays missing).
const OpenSsl* openssl(std::string& error) {
  struct Loaded {
    OpenSsl api;
    std::string failure;
  };
  static const Loaded loaded = [] {
    Loaded l;
    DynamicLibrary crypto("libcrypto.so.3");
    DynamicLibrary ssl("libssl.so.3");
#define VIGIL_BIND_CRYPTO(f) crypto.bind(l.api.f, #f);
#define VIGIL_BIND_SSL(f) ssl.bind(l.api.f, #f);
    VIGIL_LIBCRYPTO(VIGIL_BIND_CRYPTO)
    VIGIL_LIBSSL(VIGIL_BIND_SSL)
#undef VIGIL_BIND_CRYPTO
#undef VIGIL_BIND_SSL
    l.failure = !crypto.ok() ? crypto.error() : ssl.error();
    return l;
  }();
  error = loaded.failure;
  return loaded.failure.empty() ? &loaded.api : nullptr;
}

// The earliest error on OpenSSL's (per-thread) queue in words, and the
// queue emptied: "certificate verify failed", "no start line".
std::string take_error(const OpenSsl& o) {
  unsigned long first = o.ERR_get_error();
  while (o.ERR_get_error() != 0) {
  }
  if (first == 0) return "unknown OpenSSL error";
  if (const char* reason = o.ERR_reason_error_string(first)) return reason;
  char buf[256];
  o.ERR_error_string_n(first, buf, sizeof buf);
  return buf;
}

// Never ask for a passphrase: OpenSSL's default would prompt on the
// terminal and block the daemon. An encrypted key fails to load instead
// (check_pem_file says so first).
int no_passphrase(char*, int, int, void*) {
  return 0;
}

enum class Pem { Certificate, PrivateKey };

// Whether `path` can be read and holds what it should, with an error that
// names the setting and the file ("cert /etc/vigil/api.pem: No such file
// or directory") before OpenSSL gets it and answers in its own terms
// ("no start line").
bool check_pem_file(const char* what, const std::string& path, Pem kind, std::string& error) {
  auto fail = [&](const std::string& why) {
    error = std::string(what) + " " + path + why;
    return false;
  };
  if (path.empty()) {
    error = std::string(what) + ": no file given";
    return false;
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return fail(std::string(": ") + strerror(errno));
  std::string text;
  char buf[4096];
  while (text.size() < (4u << 20)) {  // a CA bundle is some 200 kB
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::string(": ") + strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  auto has = [&](const char* s) { return text.find(s) != std::string::npos; };
  if (text.empty()) return fail(": empty file");
  if (!has("-----BEGIN ")) return fail(": not PEM (no -----BEGIN line)");
  if (kind == Pem::Certificate && !has("-----BEGIN CERTIFICATE-----") &&
      !has("-----BEGIN TRUSTED CERTIFICATE-----"))
    return fail(": no certificate in it (no -----BEGIN CERTIFICATE line)");
  if (kind == Pem::PrivateKey && !has("PRIVATE KEY-----")) return fail(": no private key in it");
  // OpenSSL would ask for the passphrase on the terminal and block.
  if (kind == Pem::PrivateKey && (has("-----BEGIN ENCRYPTED PRIVATE KEY-----") || has("Proc-Type: 4,ENCRYPTED")))
    return fail(" is encrypted: vigil does not ask for passphrases (keep the key unencrypted, mode 0600)");
  return true;
}

std::string asn1_date(const OpenSsl& o, const ASN1_TIME* t, time_t* when) {
  struct tm tm {};
  if (o.ASN1_TIME_to_tm(t, &tm) != 1) return "an unreadable date";
  *when = timegm(&tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// The certificate's validity period must contain now: a daemon serving an
// expired certificate would fail every client's handshake with a reason
// only the client sees.
bool check_validity(const OpenSsl& o, X509* cert, const std::string& path, std::string& error) {
  time_t now = time(nullptr);
  time_t not_before = 0, not_after = 0;
  std::string from = asn1_date(o, o.X509_get0_notBefore(cert), &not_before);
  std::string until = asn1_date(o, o.X509_get0_notAfter(cert), &not_after);
  if (not_after <= now) {
    error = "certificate " + path + " expired on " + until;
    return false;
  }
  if (not_before > now) {
    error = "certificate " + path + " is not valid before " + from;
    return false;
  }
  return true;
}

std::string asn1_text(const OpenSsl& o, const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(o.ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(o.ASN1_STRING_length(s)));
}

// One certificate's identity: CN, subjectAltNames, the subject DN in RFC
// 4514 form ("O=vigil-operators,CN=console-1", as nginx's $ssl_client_s_dn).
Identity certificate_identity(const OpenSsl& o, X509* cert) {
  Identity id;
  id.kind = Identity::Kind::Certificate;
  id.tls = true;
  X509_NAME* subject = o.X509_get_subject_name(cert);
  if (int i = o.X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0) {
    unsigned char* utf8 = nullptr;
    int n = o.ASN1_STRING_to_UTF8(&utf8, o.X509_NAME_ENTRY_get_data(o.X509_NAME_get_entry(subject, i)));
    if (n >= 0) id.name.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
    o.CRYPTO_free(utf8, __FILE__, __LINE__);
  }
  if (BIO* bio = o.BIO_new(o.BIO_s_mem())) {
    if (o.X509_NAME_print_ex(bio, subject, 0, XN_FLAG_RFC2253) >= 0) {
      char* data = nullptr;
      long n = o.BIO_ctrl(bio, BIO_CTRL_INFO, 0, &data);
      if (n > 0 && data) id.subject.assign(data, static_cast<size_t>(n));
    }
    o.BIO_free(bio);
  }
  auto* names = static_cast<GENERAL_NAMES*>(o.X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return id;
  auto* stack = reinterpret_cast<const OPENSSL_STACK*>(names);
  for (int i = 0; i < o.OPENSSL_sk_num(stack); ++i) {
    auto* gn = static_cast<const GENERAL_NAME*>(o.OPENSSL_sk_value(stack, i));
    std::string san;
    if (gn->type == GEN_DNS) san = "DNS:" + asn1_text(o, gn->d.dNSName);
    else if (gn->type == GEN_URI) san = "URI:" + asn1_text(o, gn->d.uniformResourceIdentifier);
    else if (gn->type == GEN_EMAIL) san = "email:" + asn1_text(o, gn->d.rfc822Name);
    else if (gn->type == GEN_IPADD) {
      std::string raw = asn1_text(o, gn->d.iPAddress);
      char text[INET6_ADDRSTRLEN] = {};
      int family = raw.size() == 4 ? AF_INET : raw.size() == 16 ? AF_INET6 : 0;
      if (family && inet_ntop(family, raw.data(), text, sizeof text)) san = std::string("IP:") + text;
    }
    // A name with a NUL in it would compare equal to its prefix elsewhere.
    if (!san.empty() && san.find('\0') == std::string::npos) id.sans.push_back(std::move(san));
  }
  o.GENERAL_NAMES_free(names);
  return id;
}

// The server end of one TLS session over a non-blocking socket.
class TlsTransport final : public Transport {
 public:
  TlsTransport(Fd fd, SSL* ssl, bool verify_client, const OpenSsl& o)
      : Transport(std::move(fd)), o_(o), ssl_(ssl), verify_client_(verify_client) {}
  ~TlsTransport() override {
    // A clean end: our close_notify, best effort (the socket is
    // non-blocking; a peer that went away just does not get it).
    if (established_ && !broken_ && !closed_) {
      o_.ERR_clear_error();
      o_.SSL_shutdown(ssl_);
      o_.ERR_clear_error();
    }
    o_.SSL_free(ssl_);
  }

  Io handshake() override {
    if (established_) return Io::Ok;
    if (broken_) return Io::Error;
    o_.ERR_clear_error();
    int r = o_.SSL_do_handshake(ssl_);
    if (r == 1) {
      established_ = true;
      identity_.tls = true;
      if (verify_client_) {
        if (X509* cert = o_.SSL_get1_peer_certificate(ssl_)) {
          identity_ = certificate_identity(o_, cert);
          o_.X509_free(cert);
        }
      }
      return Io::Ok;
    }
    Io io = outcome(r, "handshake");
    if (io == Io::Closed) {
      error_ = "handshake: connection closed by the peer";
      broken_ = true;
      return Io::Error;
    }
    return io;
  }

  Io read(char* buf, size_t n, size_t& got) override {
    got = 0;
    if (closed_) return Io::Closed;
    if (broken_) return Io::Error;
    if (n == 0) return Io::Ok;
    o_.ERR_clear_error();
    int r = o_.SSL_read_ex(ssl_, buf, n, &got);
    return r == 1 ? Io::Ok : outcome(r, "read");
  }

  Io write(const char* buf, size_t n, size_t& put) override {
    put = 0;
    if (closed_) return Io::Closed;
    if (broken_) return Io::Error;
    if (n == 0) return Io::Ok;
    o_.ERR_clear_error();
    int r = o_.SSL_write_ex(ssl_, buf, n, &put);
    return r == 1 ? Io::Ok : outcome(r, "write");
  }

  bool buffered() const override { return !closed_ && !broken_ && o_.SSL_pending(ssl_) > 0; }

  Identity peer() const override { return identity_; }

 private:
  // What a failed SSL call means for the caller.
  Io outcome(int r, const char* what) {
    int e = o_.SSL_get_error(ssl_, r);
    switch (e) {
      case SSL_ERROR_WANT_READ:
        return Io::WantRead;
      case SSL_ERROR_WANT_WRITE:
        return Io::WantWrite;
      case SSL_ERROR_ZERO_RETURN:
        // The peer's close_notify (or, with SSL_OP_IGNORE_UNEXPECTED_EOF,
        // a bare end of stream): answer a close_notify with ours.
        closed_ = true;
        if (o_.SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) o_.SSL_shutdown(ssl_);
        o_.ERR_clear_error();
        return Io::Closed;
      case SSL_ERROR_SYSCALL: {
        int err = errno;
        broken_ = true;
        bool queued = o_.ERR_peek_error() != 0;
        error_ = std::string(what) + ": " +
                 (queued ? take_error(o_) : err ? strerror(err) : "connection closed by the peer");
        return Io::Error;
      }
      default: {
        broken_ = true;
        error_ = std::string(what) + ": " + take_error(o_);
        long verify = o_.SSL_get_verify_result(ssl_);
        if (verify != X509_V_OK)
          error_ += std::string(" (") + o_.X509_verify_cert_error_string(verify) + ")";
        return Io::Error;
      }
    }
  }

  const OpenSsl& o_;
  SSL* ssl_;
  bool verify_client_;
  bool established_ = false;
  bool broken_ = false;  // a fatal error: no close_notify may follow
  bool closed_ = false;  // the peer closed; ours is sent
  Identity identity_;
};

class OpenSslServerContext final : public TlsServerContext {
 public:
  OpenSslServerContext(const OpenSsl& o, SSL_CTX* ctx, TlsServerFiles files) : o_(o), ctx_(ctx) {
    files_ = std::move(files);
  }
  ~OpenSslServerContext() override { o_.SSL_CTX_free(ctx_); }  // sessions keep their own reference

  std::unique_ptr<Transport> accept(Fd fd, std::string& error) override {
    o_.ERR_clear_error();
    SSL* ssl = o_.SSL_new(ctx_);
    if (!ssl) {
      error = "SSL_new: " + take_error(o_);
      return nullptr;
    }
    if (o_.SSL_set_fd(ssl, fd.get()) != 1) {
      error = "SSL_set_fd: " + take_error(o_);
      o_.SSL_free(ssl);
      return nullptr;
    }
    o_.SSL_set_accept_state(ssl);
    return std::make_unique<TlsTransport>(std::move(fd), ssl, !files_.client_ca.empty(), o_);
  }

 private:
  const OpenSsl& o_;
  SSL_CTX* ctx_;
};

}  // namespace

std::shared_ptr<TlsServerContext> TlsServerContext::load(const TlsServerFiles& files,
                                                         std::string& error) {
  const OpenSsl* api = openssl(error);
  if (!api) return nullptr;
  const OpenSsl& o = *api;
  if (!check_pem_file("cert", files.cert, Pem::Certificate, error) ||
      !check_pem_file("key", files.key, Pem::PrivateKey, error))
    return nullptr;
  if (!files.client_ca.empty() &&
      !check_pem_file("client_ca", files.client_ca, Pem::Certificate, error))
    return nullptr;

  o.ERR_clear_error();
  SSL_CTX* raw = o.SSL_CTX_new(o.TLS_server_method());
  if (!raw) {
    error = "SSL_CTX_new: " + take_error(o);
    return nullptr;
  }
  auto ctx = std::make_shared<OpenSslServerContext>(o, raw, files);
  // TLS 1.2 at least; 1.3 is what OpenSSL negotiates first when the client
  // has it. Level 2: OpenSSL's default ciphers without the weak ones
  // (112-bit security, no SHA-1 signatures, RSA keys of 2048 bits or more).
  o.SSL_CTX_ctrl(raw, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, nullptr);
  o.SSL_CTX_set_security_level(raw, 2);
  // No renegotiation (its attacks and its CPU cost on a daemon), no
  // compression (CRIME); the server's cipher order in TLS 1.2; a peer that
  // closes the socket without close_notify has closed (HTTP frames its own
  // messages), not failed. Session tickets stay on.
  o.SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Non-blocking writes: a partial write is fine, the caller retries with
  // a buffer that may have moved; idle connections give their record
  // buffers back (keep-alive clients and SSE streams mostly wait).
  o.SSL_CTX_ctrl(raw, SSL_CTRL_MODE,
                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                     SSL_MODE_RELEASE_BUFFERS,
                 nullptr);
  o.SSL_CTX_set_default_passwd_cb(raw, &no_passphrase);
  static const unsigned char kSessionContext[] = "vigil";
  o.SSL_CTX_set_session_id_context(raw, kSessionContext, sizeof kSessionContext - 1);

  if (o.SSL_CTX_use_certificate_chain_file(raw, files.cert.c_str()) != 1) {
    error = "cert " + files.cert + ": " + take_error(o);
    return nullptr;
  }
  if (o.SSL_CTX_use_PrivateKey_file(raw, files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    std::string why = take_error(o);
    error = why == "key values mismatch"
                ? "key " + files.key + " does not match the certificate " + files.cert
                : "key " + files.key + ": " + why;
    return nullptr;
  }
  if (o.SSL_CTX_check_private_key(raw) != 1) {
    o.ERR_clear_error();
    error = "key " + files.key + " does not match the certificate " + files.cert;
    return nullptr;
  }
  if (!check_validity(o, o.SSL_CTX_get0_certificate(raw), files.cert, error)) return nullptr;

  if (!files.client_ca.empty()) {
    if (o.SSL_CTX_load_verify_locations(raw, files.client_ca.c_str(), nullptr) != 1) {
      error = "client_ca " + files.client_ca + ": " + take_error(o);
      return nullptr;
    }
    // The CA names sent in the CertificateRequest, so that a client with
    // several certificates picks the right one.
    STACK_OF(X509_NAME)* names = o.SSL_load_client_CA_file(files.client_ca.c_str());
    if (!names) {
      o.ERR_clear_error();
      error = "client_ca " + files.client_ca + ": no CA certificate in it";
      return nullptr;
    }
    o.SSL_CTX_set_client_CA_list(raw, names);
    o.SSL_CTX_set_verify(raw,
                         files.client_cert_optional
                             ? SSL_VERIFY_PEER
                             : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         nullptr);
  }
  o.ERR_clear_error();
  return ctx;
}

bool tls_available(std::string& error) {
  return openssl(error) != nullptr;
}

std::string sha256_hex(const std::string& data, std::string& error) {
  const OpenSsl* o = openssl(error);
  if (!o) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (o->EVP_Digest(data.data(), data.size(), md, &len, o->EVP_sha256(), nullptr) != 1) {
    error = "SHA-256: " + take_error(*o);
    return {};
  }
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * len);
  for (unsigned i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 0xf]);
  }
  return hex;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  // volatile: the compiler may not turn the loop into an early-exit memcmp.
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace vigil

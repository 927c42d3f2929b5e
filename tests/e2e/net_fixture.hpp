// Fixtures for the network tests: certificates made by openssl(1) in the
// test's directory, and two "nodes" (network namespaces joined by a veth
// pair) whose link can go down and up.
#pragma once

#include <string>
#include <vector>

namespace vigil::test {

// A CA, a server certificate for `sans`, a client certificate signed by
// the CA (CN console-1), a second CA with its own client (CN intruder),
// and an expired server certificate. EC P-256, as ../shared/RECIPES-HA.md.
struct Certs {
  std::string dir;
  std::string ca, ca_key;
  std::string server, server_key;
  std::string client, client_key;
  std::string other_ca, other_client, other_client_key;
  std::string expired, expired_key;
  bool ok = false;
  std::string error;

  // e.g. sans = "IP:127.0.0.1,IP:10.200.0.2,DNS:nodeb"
  static Certs make(const std::string& dir, const std::string& sans);
  // Another client certificate from the CA, with this CN.
  bool client_named(const std::string& cn, std::string& cert, std::string& key) const;
};

// Two network namespaces, A (10.200.0.1) and B (10.200.0.2), joined by a
// veth pair. Names carry the test's pid so that tests can run in parallel.
class NetPair {
 public:
  NetPair();
  ~NetPair();
  NetPair(const NetPair&) = delete;
  NetPair& operator=(const NetPair&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  // argv prefix that runs a command inside node A or B.
  std::vector<std::string> in_a() const { return {"ip", "netns", "exec", a_}; }
  std::vector<std::string> in_b() const { return {"ip", "netns", "exec", b_}; }
  static constexpr const char* kAddrA = "10.200.0.1";
  static constexpr const char* kAddrB = "10.200.0.2";
  // The link between them (both ends), down or up.
  bool link(bool up);
  // The veth ends' names, inside A and B.
  const std::string& dev_a() const { return va_; }
  const std::string& dev_b() const { return vb_; }

 private:
  std::string a_, b_, va_, vb_;
  bool ok_ = false;
  std::string error_;
};

}  // namespace vigil::test

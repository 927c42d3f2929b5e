#include "tests/e2e/net_fixture.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/e2e/harness.hpp"

namespace vigil::test {

namespace {

bool sh(const std::string& cmd, std::string& error) {
  auto r = run_command({"/bin/sh", "-c", cmd});
  if (r.code == 0) return true;
  error = cmd + ": exit " + std::to_string(r.code) + ": " + r.err;
  return false;
}

const char* kKey = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

}  // namespace

Certs Certs::make(const std::string& dir, const std::string& sans) {
  Certs c;
  c.dir = dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto p = [&](const char* f) { return dir + "/" + f; };
  c.ca = p("ca.crt"), c.ca_key = p("ca.key");
  c.server = p("srv.crt"), c.server_key = p("srv.key");
  c.client = p("cli.crt"), c.client_key = p("cli.key");
  c.other_ca = p("other-ca.crt");
  c.other_client = p("other-cli.crt"), c.other_client_key = p("other-cli.key");
  c.expired = p("expired.crt"), c.expired_key = p("expired.key");
  std::string k = kKey;
  std::string cd = "cd '" + dir + "' && ";
  std::ofstream(p("srv.ext")) << "subjectAltName=" << sans << "\nextendedKeyUsage=serverAuth\n";
  std::ofstream(p("cli.ext")) << "extendedKeyUsage=clientAuth\n";
  const std::vector<std::string> steps = {
      "openssl req -x509 " + k + " -keyout ca.key -out ca.crt -days 3650 -subj /CN=vigil-test-ca",
      "openssl req " + k + " -keyout srv.key -out srv.csr -subj /CN=nodeb",
      "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt "
      "-days 825 -extfile srv.ext",
      "openssl req " + k + " -keyout cli.key -out cli.csr -subj /CN=console-1/O=vigil-operators",
      "openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out cli.crt "
      "-days 825 -extfile cli.ext",
      "openssl req -x509 " + k +
          " -keyout other-ca.key -out other-ca.crt -days 3650 -subj /CN=another-ca",
      "openssl req " + k + " -keyout other-cli.key -out other-cli.csr -subj /CN=intruder",
      "openssl x509 -req -in other-cli.csr -CA other-ca.crt -CAkey other-ca.key "
      "-CAcreateserial -out other-cli.crt -days 825 -extfile cli.ext",
      // Expired: OpenSSL 3.0's x509 cannot back-date, `openssl ca` can.
      "openssl req " + k + " -keyout expired.key -out expired.csr -subj /CN=nodeb",
      "mkdir -p cadb && : > cadb/index.txt && echo 01 > cadb/serial && printf '"
      "[ca]\\ndefault_ca = c\\n[c]\\ndir = .\\ndatabase = cadb/index.txt\\nserial = cadb/serial\\n"
      "new_certs_dir = cadb\\ndefault_md = sha256\\npolicy = p\\ncopy_extensions = copy\\n"
      "[p]\\ncommonName = supplied\\n' > ca.cnf",
      "openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr "
      "-out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z -notext",
  };
  for (const auto& s : steps)
    if (!sh(cd + s + " 2>/dev/null", c.error)) return c;
  c.ok = true;
  return c;
}

bool Certs::client_named(const std::string& cn, std::string& cert, std::string& key) const {
  cert = dir + "/" + cn + ".crt", key = dir + "/" + cn + ".key";
  std::string e;
  return sh("cd '" + dir + "' && openssl req " + std::string(kKey) + " -keyout '" + cn +
                ".key' -out '" + cn + ".csr' -subj '/CN=" + cn + "' 2>/dev/null && " +
                "openssl x509 -req -in '" + cn + ".csr' -CA ca.crt -CAkey ca.key -CAcreateserial " +
                "-out '" + cn + ".crt' -days 825 -extfile cli.ext 2>/dev/null",
            e);
}

NetPair::NetPair() {
  std::string id = std::to_string(getpid());
  a_ = "vgl" + id + "a", b_ = "vgl" + id + "b";
  va_ = "vga" + id, vb_ = "vgb" + id;
  ok_ = sh("ip netns add " + a_ + " && ip netns add " + b_ + " && ip link add " + va_ +
               " type veth peer name " + vb_ + " && ip link set " + va_ + " netns " + a_ +
               " && ip link set " + vb_ + " netns " + b_ + " && ip -n " + a_ + " addr add " +
               kAddrA + "/24 dev " + va_ + " && ip -n " + b_ + " addr add " + kAddrB +
               "/24 dev " + vb_ + " && ip -n " + a_ + " link set lo up && ip -n " + b_ +
               " link set lo up && ip -n " + a_ + " link set " + va_ + " up && ip -n " + b_ +
               " link set " + vb_ + " up",
           error_);
}

NetPair::~NetPair() {
  std::string e;
  sh("ip netns del " + a_ + " 2>/dev/null; ip netns del " + b_ + " 2>/dev/null; true", e);
}

bool NetPair::link(bool up) {
  std::string state = up ? " up" : " down";
  return sh("ip -n " + a_ + " link set " + va_ + state + " && ip -n " + b_ + " link set " + vb_ +
                state,
            error_);
}

}  // namespace vigil::test

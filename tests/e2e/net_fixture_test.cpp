// The network fixtures work: certificates verify (the expired one does not), and
// two namespaces reach each other until their link goes down.
#include <gtest/gtest.h>
#include "tests/e2e/harness.hpp"
#include "tests/e2e/net_fixture.hpp"
using namespace vigil::test;
TEST(NetFixture, CertsAndPair) {
  char t[] = "/tmp/fx-XXXXXX"; std::string d = mkdtemp(t);
  auto c = Certs::make(d, "IP:127.0.0.1,DNS:nodeb");
  ASSERT_TRUE(c.ok) << c.error;
  auto r = run_command({"/usr/bin/openssl", "verify", "-CAfile", c.ca, c.server, c.client});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  r = run_command({"/usr/bin/openssl", "verify", "-CAfile", c.ca, c.expired});
  EXPECT_NE(r.code, 0) << r.out;
  NetPair p; ASSERT_TRUE(p.ok()) << p.error();
  auto v = p.in_a(); v.insert(v.begin(), "/usr/bin/env");
  v.insert(v.end(), {"timeout", "3", "bash", "-c", std::string("echo > /dev/tcp/") + NetPair::kAddrB + "/9"});
  auto up = run_command(v);
  EXPECT_NE(up.err.find("refused"), std::string::npos) << up.err;
  ASSERT_TRUE(p.link(false));
  auto down = run_command(v);
  EXPECT_EQ(down.err.find("refused"), std::string::npos) << down.err;
  ASSERT_TRUE(p.link(true));
}

// End-to-end, one node: a peer that does not answer and a remote watch on
// it. The daemon links the peer at load, calls it down after
// fails x every, keeps the local watch that requires the remote one
// waiting, and shows the remote watch with its node in `vigil status`.
// (Two real nodes talking TLS come with the API server and HTTP client.)
#include <gtest/gtest.h>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

TEST(Remote, AnUnansweringPeerIsDownAndItsRemoteWatchGatesTheLocalStart) {
  Daemon d;
  // Nothing listens on a free port of the loopback: every request fails.
  std::string url = "http://127.0.0.1:" + std::to_string(free_port());
  d.write_rule("r.lua", "peer \"nodeb\" { url = \"" + url + "\", every = \"200ms\", fails = 2 }\n"
                        "watch \"db@nodeb\" { on = \"nodeb\" }\n"
                        "watch \"app\" { start = { \"/bin/sleep\", \"1000\" }, requires = \"db@nodeb\" }\n");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0241", "", 1, 10s)) << d.output();
  auto down = d.last_event("VGL0241");
  EXPECT_EQ(down["fields"]["peer"], "nodeb") << down.dump();
  EXPECT_FALSE(down["fields"]["error"].get<std::string>().empty()) << down.dump();
  // The local app waits for the remote db, which is not known to be ready.
  EXPECT_EQ(d.watch_state("app"), "waiting");
  EXPECT_EQ(d.watch_pid("app"), 0);
  auto remote = d.watch("db@nodeb");
  ASSERT_FALSE(remote.is_null()) << d.status().dump();
  EXPECT_EQ(remote["node"], "nodeb");
  EXPECT_EQ(remote["remote"], "db");
  EXPECT_EQ(remote["state"], "unknown");
  EXPECT_EQ(remote["ready"], false);
  EXPECT_EQ(remote["peer"], "down");
  auto text = d.cli({"status"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("REMOTE"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("db@nodeb"), std::string::npos) << text.out;
  auto one = d.cli({"status", "db@nodeb"});
  EXPECT_NE(one.out.find("remote watch db@nodeb: unknown"), std::string::npos) << one.out << one.err;
  EXPECT_NE(one.out.find("node:      nodeb (peer down)"), std::string::npos) << one.out;
  EXPECT_NE(one.out.find("ready:     no"), std::string::npos) << one.out;
  // Supervision goes on: a reload with the same peer is accepted.
  ASSERT_EQ(d.cli({"reload"}).code, 0);
  EXPECT_EQ(d.watch_state("app"), "waiting");
  EXPECT_EQ(d.stop(), 0) << d.output();
}

TEST(Remote, CheckNamesTheLineOfABadRemoteWatch) {
  auto r = check_rule("peer \"nodeb\" { url = \"https://10.1.0.2:8443\" }\n"
                      "watch \"db@nodec\" { on = \"nodec\" }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find(":2: watch 'db@nodec': on: no peer named 'nodec'"), std::string::npos) << r.err;
  r = check_rule("peer \"nodeb\" { url = \"https://10.1.0.2:8443\" }\n"
                 "watch \"x@nodeb\" { on = \"nodeb\", start = { \"/bin/true\" } }\n");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find(":2: watch 'x@nodeb': 'start' does not apply to a remote watch"),
            std::string::npos)
      << r.err;
}

// End-to-end, one node: a peer that does not answer and a remote watch on
// it. The daemon links the peer at load, calls it down after
// fails x every, keeps the local watch that requires the remote one
// waiting, and shows the remote watch with its node in `vigil status`.
// Then the same over HTTP against a stand-in of the other node's API
// (tests/e2e/tools/fake_peer.py): skipped while the daemon is built
// without the HTTP client. (Two real nodes talking TLS come with the API
// server.)
#include <gtest/gtest.h>
#include <signal.h>

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

namespace {
const std::string kFakePeer = std::string(VIGIL_SOURCE_DIR) + "/tests/e2e/tools/fake_peer.py";

struct FakePeer {
  int port = free_port();
  std::string log;
  pid_t pid = 0;
  explicit FakePeer(const std::string& dir) : log(dir + "/peer.log") { start(); }
  ~FakePeer() { stop(); }
  void start() { pid = spawn_external({"python3", kFakePeer, std::to_string(port), log}); }
  void stop() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    reap(pid);
    pid = 0;
  }
  bool logged(const std::string& line) const {
    return read_file(log).find(line + "\n") != std::string::npos;
  }
};
}  // namespace

// Up at the first answer, the remote db's readiness starts the local app,
// the node's events are relayed and run the hook, vigil.remote acts, the
// peer goes down when it stops answering and up again when it is back,
// and the stream resumes after the last event seen.
TEST(Remote, APeerOverHttpFromUpToDownAndBackWithTheStreamResumed) {
  Daemon d;
  FakePeer peer(d.dir());
  d.write_rule("r.lua", "peer \"nodeb\" { url = \"http://127.0.0.1:" + std::to_string(peer.port) +
                            "\", every = \"300ms\", fails = 2 }\n"
                            "local acted = false\n"
                            "watch \"db@nodeb\" { on = \"nodeb\", on_event = function(ev)\n"
                            "  if not acted then acted = true; vigil.remote(\"nodeb\"):restart(\"db\") end\n"
                            "end }\n"
                            "watch \"app\" { start = { \"/bin/sleep\", \"1000\" }, requires = \"db@nodeb\" }\n");
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.count_events("VGL0240") + d.count_events("VGL0241") > 0; }))
      << d.output();
  auto down = d.last_event("VGL0241");
  if (!down.is_null() &&
      down["fields"]["error"].get<std::string>().find("no HTTP client") != std::string::npos)
    GTEST_SKIP() << "this build has no HTTP client for peers (host/net/http_client.cpp)";
  ASSERT_TRUE(d.wait_event("VGL0240")) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.watch_pid("app") != 0; })) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0243", "db@nodeb", 2)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0244", "db@nodeb")) << d.output();
  EXPECT_TRUE(peer.logged("POST /v1/watches/db/restart")) << read_file(peer.log);
  EXPECT_TRUE(peer.logged("stream -")) << read_file(peer.log);
  // The node stops answering: down after fails x every, db not ready.
  peer.stop();
  ASSERT_TRUE(d.wait_event("VGL0241")) << d.output();
  EXPECT_EQ(d.watch("db@nodeb")["state"], "unknown");
  // Back: up again, the stream resumes after event 2, and 3 and 4 come.
  peer.start();
  ASSERT_TRUE(d.wait_event("VGL0240", "", 2)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0243", "db@nodeb", 4)) << d.output();
  EXPECT_TRUE(peer.logged("stream 2")) << read_file(peer.log);
  EXPECT_EQ(d.last_event("VGL0243", "db@nodeb")["fields"]["remote_seq"], 4);
  EXPECT_TRUE(wait_for([&] { return d.watch("db@nodeb")["state"] == "running"; })) << d.output();
  EXPECT_EQ(d.stop(), 0) << d.output();
}

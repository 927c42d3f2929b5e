// The etcd adapter: EtcdClient's reading of the gateway (base64, proto3
// defaults, the next endpoint on a connection error) against a fake
// transport; EtcdCluster::check; and EtcdCluster against a REAL etcd (one
// member on loopback, two or three nodes in this process on one loop): one
// holder, a failover hands over without overlap, a node that cannot renew
// fences before another takes over, a move to a named node, and a group
// that failed everywhere stays down.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>

#include <deque>
#include <filesystem>
#include <sstream>
#include <map>
#include <memory>

#include "host/cluster/etcd_client.hpp"
#include "host/cluster/etcd_election.hpp"
#include "host/loop/event_loop.hpp"
#include "tests/unit/etcd_fixture.hpp"

using namespace vigil;
using namespace std::chrono_literals;
using testing_etcd::run_until;

namespace {

// ---- EtcdClient against a fake transport -----------------------------------

class FakeEtcdTransport : public EtcdTransport {
 public:
  struct Pending {
    HttpClientRequest request;
    std::function<void(const HttpResponse&)> done;
  };
  explicit FakeEtcdTransport(std::deque<Pending>* pending) : pending_(pending) {}
  uint64_t post(HttpClientRequest request, std::function<void(const HttpResponse&)> done) override {
    pending_->push_back({std::move(request), std::move(done)});
    return pending_->size();
  }
  void cancel(uint64_t) override {}

 private:
  std::deque<Pending>* pending_;
};

HttpResponse answer(int status, const std::string& body) {
  HttpResponse r;
  r.status = status;
  r.body = body;
  return r;
}
HttpResponse refused() {
  HttpResponse r;
  r.error = "connection refused";
  r.failure = HttpResponse::Failure::Connect;
  return r;
}

struct ClientFixture {
  std::deque<FakeEtcdTransport::Pending> pending;
  EtcdClient client;
  explicit ClientFixture(std::vector<std::string> endpoints)
      : client(options(std::move(endpoints)), std::make_unique<FakeEtcdTransport>(&pending)) {}
  static EtcdClientOptions options(std::vector<std::string> endpoints) {
    EtcdClientOptions o;
    o.endpoints = std::move(endpoints);
    return o;
  }
  // Answers the oldest request.
  FakeEtcdTransport::Pending reply(const HttpResponse& r) {
    auto p = std::move(pending.front());
    pending.pop_front();
    p.done(r);
    return p;
  }
};

TEST(EtcdClient, Base64RoundTripsAnyBytes) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", "vigil/orders", std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)).value(), s);
  EXPECT_EQ(base64_encode("nodeA"), "bm9kZUE=");
  EXPECT_FALSE(base64_decode("a").has_value());
  EXPECT_FALSE(base64_decode("bm9k*UE=").has_value());
}

TEST(EtcdClient, ReadsProto3DefaultsAndDecimalStrings) {
  ClientFixture f({"http://e1:2379"});
  bool succeeded = true, called = false;
  f.client.txn_if_created("k", 3, {EtcdOp::put("a", "b")}, [&](const EtcdResult& r, bool ok) {
    called = true;
    EXPECT_TRUE(r.ok);
    succeeded = ok;
  });
  auto sent = f.reply(answer(200, R"({"header":{"revision":"4"}})"));  // a lost txn: no "succeeded"
  EXPECT_TRUE(called);
  EXPECT_FALSE(succeeded);
  auto body = nlohmann::json::parse(sent.request.body);
  EXPECT_EQ(sent.request.url, "http://e1:2379/v3/kv/txn");
  EXPECT_EQ(body["compare"][0]["create_revision"], "3");
  EXPECT_EQ(body["compare"][0]["key"], base64_encode("k"));
  EXPECT_EQ(body["success"][0]["requestPut"]["value"], base64_encode("b"));

  int64_t ttl = -5;
  f.client.lease_keepalive(42, [&](const EtcdResult& r, int64_t t) {
    EXPECT_TRUE(r.ok);
    ttl = t;
  });
  f.reply(answer(200, R"({"result":{"header":{},"ID":"42"}})"));  // the lease is gone: no TTL
  EXPECT_EQ(ttl, 0);
  f.client.lease_keepalive(42, [&](const EtcdResult&, int64_t t) { ttl = t; });
  f.reply(answer(200, R"({"result":{"header":{},"ID":"42","TTL":"4"}})"));
  EXPECT_EQ(ttl, 4);

  EtcdLeader won;
  f.client.campaign("vigil/election/g", 42, "a", [&](const EtcdResult&, const EtcdLeader& l) { won = l; }, 1s);
  f.reply(answer(200, R"({"leader":{"name":")" + base64_encode("vigil/election/g") + R"(","key":")" +
                          base64_encode("vigil/election/g/2a") + R"(","rev":"7","lease":"42"}})"));
  EXPECT_EQ(won.key, "vigil/election/g/2a");
  EXPECT_EQ(won.rev, 7);
  EXPECT_EQ(won.lease, 42);

  bool none = false;
  f.client.leader("vigil/election/g", [&](const EtcdResult& r, const std::optional<EtcdKv>& kv) {
    none = r.ok && !kv.has_value();
  });
  f.reply(answer(500, R"({"error":"election: no leader","message":"election: no leader","code":2})"));
  EXPECT_TRUE(none);
  EXPECT_EQ(EtcdClient::prefix_end("vigil/"), "vigil0");
}

TEST(EtcdClient, TriesTheNextEndpointOnAConnectionErrorAndStaysThere) {
  ClientFixture f({"http://e1:2379", "http://e2:2379/"});
  std::string error = "unset";
  f.client.put("k", "v", 0, [&](const EtcdResult& r) { error = r.error; });
  EXPECT_EQ(f.pending.front().request.url, "http://e1:2379/v3/kv/put");
  f.reply(refused());
  ASSERT_EQ(f.pending.size(), 1u);
  EXPECT_EQ(f.pending.front().request.url, "http://e2:2379/v3/kv/put");
  f.reply(answer(200, "{}"));
  EXPECT_EQ(error, "");
  EXPECT_EQ(f.client.current_endpoint(), "http://e2:2379");

  // Both refuse: unreachable, naming each.
  EtcdResult last;
  f.client.put("k", "v", 0, [&](const EtcdResult& r) { last = r; });
  f.reply(refused());
  f.reply(refused());
  EXPECT_FALSE(last.ok);
  EXPECT_TRUE(last.unreachable);
  EXPECT_NE(last.error.find("http://e1:2379: connection refused"), std::string::npos) << last.error;
  EXPECT_NE(last.error.find("http://e2:2379: connection refused"), std::string::npos) << last.error;

  // An etcd refusal is an answer: not retried elsewhere.
  f.client.lease_revoke(9, [&](const EtcdResult& r) { last = r; });
  f.reply(answer(404, R"({"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"})"));
  EXPECT_TRUE(f.pending.empty());
  EXPECT_EQ(last.code, 5);
  EXPECT_FALSE(last.unreachable);
}

TEST(EtcdClient, ALateFailureDoesNotMoveTheClientBackOntoTheEndpointThatFailed) {
  ClientFixture f({"http://e1:2379", "http://e2:2379"});
  auto campaign = f.client.campaign("n", 1, "a", [](const EtcdResult&, const EtcdLeader&) {}, 30s);
  EXPECT_EQ(f.client.endpoint_of(campaign), "http://e1:2379");
  f.client.put("k", "v", 0, [](const EtcdResult&) {});
  auto hung = std::move(f.pending.front());
  f.pending.pop_front();
  f.reply(refused());  // the put fails on e1 and moves on
  EXPECT_EQ(f.client.current_endpoint(), "http://e2:2379");
  EXPECT_EQ(f.client.endpoint_of(campaign), "http://e1:2379");  // still waiting there: to be sent again
  // Now the campaign fails late on e1: the client stays on e2.
  hung.done(refused());
  EXPECT_EQ(f.client.current_endpoint(), "http://e2:2379");
  EXPECT_EQ(f.pending.back().request.url, "http://e2:2379/v3/election/campaign");
  EXPECT_EQ(f.client.endpoint_of(99), "");
}

// ---- check() ---------------------------------------------------------------

ClusterConfig config(const std::string& node, std::vector<std::string> endpoints, double ttl = 4) {
  ClusterConfig c;
  c.adapter = "etcd";
  c.node = node;
  c.endpoints = std::move(endpoints);
  c.ttl = ttl;
  return c;
}

TEST(EtcdCluster, CheckRefusesAConfigThatCannotFenceInTime) {
  auto ok = config("a", {"http://127.0.0.1:2379"});
  EXPECT_EQ(EtcdCluster::check(ok), "");
  FenceBudget b = EtcdCluster::budget(ok);
  EXPECT_DOUBLE_EQ(b.self_fence_after, 2);
  EXPECT_LT(b.self_fence_after + b.kill_after + b.reap + b.margin, b.ttl + 1e-9);
  EXPECT_GT(b.kill_after, 0.25);

  auto late = ok;
  late.self_fence_after = 3.5;
  EXPECT_NE(EtcdCluster::check(late).find("must stay below ttl 4s"), std::string::npos) << EtcdCluster::check(late);
  auto eager = ok;
  eager.self_fence_after = 1;
  EXPECT_NE(EtcdCluster::check(eager).find("keepalive interval"), std::string::npos);
  auto bad = ok;
  bad.endpoints = {"ftp://x"};
  EXPECT_NE(EtcdCluster::check(bad).find("ftp://x"), std::string::npos) << EtcdCluster::check(bad);
  bad.endpoints = {};
  EXPECT_NE(EtcdCluster::check(bad).find("needs endpoints"), std::string::npos);
  auto tiny = ok;
  tiny.ttl = 1;
  EXPECT_NE(EtcdCluster::check(tiny).find("ttl 1s"), std::string::npos);
}

// ---- EtcdCluster against a real etcd ---------------------------------------

double now_s() { return to_seconds(MonoClock::now().time_since_epoch()); }

// What the daemon would do with the callbacks, and a record of them: the
// group "runs" from takeover until the stop (simulated, 150 ms) is done.
struct Journal {
  struct Entry {
    double t;
    std::string node, what, group;
  };
  std::vector<Entry> entries;
  std::map<std::string, bool> running;  // node -> group g running there
  int overlaps = 0;
  void add(const std::string& node, const std::string& what, const std::string& group) {
    entries.push_back({now_s(), node, what, group});
  }
  double first(const std::string& node, const std::string& what) const {
    for (const auto& e : entries)
      if (e.node == node && e.what == what) return e.t;
    return -1;
  }
  int count(const std::string& node, const std::string& what) const {
    int n = 0;
    for (const auto& e : entries) n += e.node == node && e.what == what;
    return n;
  }
  std::string dump() const {
    std::string s;
    for (const auto& e : entries) s += std::to_string(e.t) + " " + e.node + " " + e.what + " " + e.group + "\n";
    return s;
  }
};

class RealEtcd : public testing::Test {
 protected:
  void SetUp() override {
    if (!testing_etcd::etcd_installed()) GTEST_SKIP() << "etcd is not installed (apt-get install etcd-server)";
    etcd_ = std::make_unique<testing_etcd::EtcdMember>();
    EtcdClientOptions o;
    o.endpoints = {etcd_->url()};
    EtcdClient probe(o, http_etcd_transport(loop_));
    bool ready = false;
    auto end = MonoClock::now() + 30s;
    while (!ready && MonoClock::now() < end) {
      bool answered = false;
      probe.put("vigil-test/ready", "1", 0, [&](const EtcdResult& r) {
        answered = true;
        ready = r.ok;
      });
      run_until(loop_, [&] { return answered; }, 5s);
      if (!ready) loop_.run_once(100ms);
    }
    ASSERT_TRUE(ready) << "etcd did not become writable in 30 s (log in " << etcd_->dir() << ")";
  }

  EtcdCluster& node(const std::string& name, ClusterConfig c = {}) {
    if (c.node.empty()) c = config(name, {etcd_->url()});
    ClusterCallbacks cb;
    cb.takeover = [this, name](const std::string& g, const nlohmann::json&) {
      for (auto& [n, r] : journal_.running)
        if (n != name && r) journal_.overlaps++;
      journal_.running[name] = true;
      journal_.add(name, "takeover", g);
    };
    auto stop = [this, name](const std::string& g, const std::string& what) {
      journal_.add(name, what, g);
      loop_.after(150ms, [this, name, g] {
        journal_.running[name] = false;
        journal_.add(name, "stopped", g);
        nodes_.at(name)->stopped(g);
      });
    };
    cb.lost = [stop](const std::string& g, const std::string&) { stop(g, "lost"); };
    cb.fence = [this, stop](const std::string& g, double kill_after, const std::string&, const nlohmann::json&) {
      kill_after_ = kill_after;
      stop(g, "fence");
    };
    cb.notify = [this, name](const std::string& what, const std::string& g, const nlohmann::json&) {
      journal_.add(name, what, g);
    };
    auto n = std::make_unique<EtcdCluster>(loop_, c, std::move(cb), nullptr);
    auto& ref = *n;
    nodes_[name] = std::move(n);
    return ref;
  }

  // The daemon's failover: the group is stopped completely, then handed over.
  std::string failover(const std::string& name, const std::string& to = "") {
    journal_.running[name] = false;
    journal_.add(name, "stopped", "g");
    std::string err = "pending";
    nodes_.at(name)->failover("g", "restart budget exhausted", to, [&](const std::string& e) { err = e; });
    run_until(loop_, [&] { return err != "pending"; }, 10s);
    journal_.add(name, "handed_over", "g");
    return err;
  }

  bool wait(const std::function<bool()>& pred, std::chrono::milliseconds d = 20s) {
    return run_until(loop_, pred, d);
  }

  // Node a holds "g" and b sees it so (both campaign for it).
  void a_holds_b_stands_by() {
    auto& a = node("a");
    a.set_groups({"g"});
    ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
    auto& b = node("b");
    b.set_groups({"g"});
    ASSERT_TRUE(wait([&] { return b.info("g").holder == "a"; })) << journal_.dump();
  }

  EventLoop loop_;
  std::unique_ptr<testing_etcd::EtcdMember> etcd_;
  std::map<std::string, std::unique_ptr<EtcdCluster>> nodes_;
  Journal journal_;
  double kill_after_ = -1;
};

TEST_F(RealEtcd, OneHolderAndAFailoverHandsOverWithoutOverlap) {
  ASSERT_NO_FATAL_FAILURE(a_holds_b_stands_by());
  auto& a = *nodes_.at("a");
  auto& b = *nodes_.at("b");
  EXPECT_EQ(b.info("g").role, "standby");
  EXPECT_FALSE(b.holds("g"));
  EXPECT_EQ(a.info("g").role, "active");
  EXPECT_GT(a.info("g").lease_left, 0);
  auto listed = b.nodes();
  ASSERT_EQ(listed.size(), 2u) << listed.dump();
  EXPECT_EQ(listed[0]["node"], "a");
  EXPECT_EQ(listed[0]["holds"], nlohmann::json::array({"g"}));

  // b keeps standing by over several keepalive periods.
  loop_.run_once(10ms);
  auto t0 = MonoClock::now();
  wait([&] { return MonoClock::now() - t0 > 3s; }, 5s);
  EXPECT_EQ(journal_.count("b", "takeover"), 0) << journal_.dump();

  EXPECT_EQ(failover("a"), "");
  ASSERT_TRUE(wait([&] { return b.holds("g"); })) << journal_.dump();
  EXPECT_EQ(journal_.overlaps, 0) << journal_.dump();
  EXPECT_LT(journal_.first("a", "stopped"), journal_.first("b", "takeover")) << journal_.dump();
  // a remembers its failure and does not campaign while b is eligible.
  ASSERT_TRUE(wait([&] { return a.info("g").role == "avoiding"; })) << journal_.dump();
  EXPECT_TRUE(a.info("g").failed_on.contains("a"));
  EXPECT_TRUE(wait([&] { return a.info("g").holder == "b"; })) << journal_.dump();
}

TEST_F(RealEtcd, AHolderThatCannotRenewFencesBeforeAnotherTakesOver) {
  ASSERT_NO_FATAL_FAILURE(a_holds_b_stands_by());
  auto& a = *nodes_.at("a");
  auto& b = *nodes_.at("b");

  double paused = now_s();
  a.pause_keepalives(true);
  ASSERT_TRUE(wait([&] { return b.holds("g"); }, 30s)) << journal_.dump();
  double fenced = journal_.first("a", "fence"), stopped = journal_.first("a", "stopped");
  double taken = journal_.first("b", "takeover");
  ASSERT_GT(fenced, 0) << journal_.dump();
  EXPECT_LT(fenced, taken) << journal_.dump();
  EXPECT_LT(stopped, taken) << journal_.dump();
  EXPECT_EQ(journal_.overlaps, 0) << journal_.dump();
  // Fenced within self_fence_after of the last renewal (sent at most ttl/3
  // before the pause), with a KILL deadline that fits the lease.
  EXPECT_LT(fenced - paused, 2.0 + 0.1) << journal_.dump();
  EXPECT_GT(kill_after_, 0);
  EXPECT_LT(2.0 + kill_after_, 4.0);
  EXPECT_EQ(journal_.count("b", "takeover"), 1);
}

TEST_F(RealEtcd, ALeaseEtcdNoLongerKnowsFencesAtOnce) {
  ASSERT_NO_FATAL_FAILURE(a_holds_b_stands_by());
  auto& a = *nodes_.at("a");
  auto& b = *nodes_.at("b");
  EtcdClientOptions o;
  o.endpoints = {etcd_->url()};
  EtcdClient admin(o, http_etcd_transport(loop_));
  bool revoked = false;
  double t0 = now_s();
  admin.lease_revoke(a.lease_id(), [&](const EtcdResult& r) { revoked = r.ok; });
  ASSERT_TRUE(wait([&] { return revoked; }, 5s));
  // The next keepalive (within ttl/3) hears that the lease is gone.
  ASSERT_TRUE(wait([&] { return journal_.count("a", "fence") == 1; }, 5s)) << journal_.dump();
  EXPECT_LT(journal_.first("a", "fence") - t0, 4.0 / 3 + 0.5) << journal_.dump();
  // The revoke freed the election: b may win at once, while a stops: the
  // fence is all a can do (this is what self_fence_after guards against
  // for an expiry). a then gets a new lease and stands by.
  ASSERT_TRUE(wait([&] { return b.holds("g"); })) << journal_.dump();
  // Its stop takes a while (150 ms here): "fenced" until stopped() is heard.
  ASSERT_TRUE(wait([&] { return a.lease_id() != 0 && a.info("g").holder == "b" && a.info("g").role == "standby"; }))
      << a.info("g").role << "\n"
      << journal_.dump();
  EXPECT_EQ(journal_.count("a", "stopped"), 1) << journal_.dump();
}

TEST_F(RealEtcd, ADeadHoldersLeaseExpiresAndItsSuccessorStandsBy) {
  ASSERT_NO_FATAL_FAILURE(a_holds_b_stands_by());
  auto& b = *nodes_.at("b");
  // a's vigil dies (kill -9): nothing is resigned or revoked.
  double t0 = now_s();
  nodes_.erase("a");
  ASSERT_TRUE(wait([&] { return b.holds("g"); }, 30s)) << journal_.dump();
  double taken = journal_.first("b", "takeover") - t0;
  EXPECT_GT(taken, 4.0 - 4.0 / 3 - 0.1) << journal_.dump();  // the lease ran out (last renewal <= ttl/3 before)
  EXPECT_LT(taken, 4.0 + 2) << journal_.dump();
  // a again: it stands by, b keeps the group.
  auto& a2 = node("a");
  a2.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a2.info("g").holder == "b"; })) << journal_.dump();
  auto t1 = MonoClock::now();
  wait([&] { return MonoClock::now() - t1 > 2s; }, 4s);
  EXPECT_FALSE(a2.holds("g"));
  EXPECT_EQ(a2.info("g").role, "standby");
  EXPECT_EQ(journal_.count("b", "fence") + journal_.count("b", "lost"), 0) << journal_.dump();
}

TEST_F(RealEtcd, AMoveToANamedNodeIsWonByThatNodeOnly) {
  auto& a = node("a");
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
  auto& b = node("b");
  auto& c = node("c");
  b.set_groups({"g"});
  c.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return b.info("g").holder == "a" && c.info("g").holder == "a"; })) << journal_.dump();
  ASSERT_TRUE(wait([&] { return a.nodes().size() == 3; })) << a.nodes().dump();
  EXPECT_NE(failover("a", "nosuch").find("not live"), std::string::npos);
  EXPECT_TRUE(a.holds("g"));
  journal_.running["a"] = true;
  EXPECT_EQ(failover("a", "c"), "");
  ASSERT_TRUE(wait([&] { return c.holds("g"); })) << journal_.dump();
  EXPECT_EQ(journal_.count("b", "takeover"), 0) << journal_.dump();
  EXPECT_EQ(journal_.overlaps, 0) << journal_.dump();
  // A move by hand is not a failure: a is not avoided.
  EXPECT_FALSE(a.info("g").failed_on.contains("a"));
}

// A resign that failed (a timeout under load) leaves an election key with a
// live lease that leads for nobody: here c's, put by hand in g's queue
// ahead of b, in a group c does not campaign for. When a hands over, that
// key leads; c's next poll resigns it and b takes over.
TEST_F(RealEtcd, AnElectionKeyLeftByAFailedResignIsResignedAtTheNextPoll) {
  auto& a = node("a");
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
  auto& c = node("c");
  c.set_groups({});
  ASSERT_TRUE(wait([&] { return c.lease_id() != 0; }));
  EtcdClientOptions o;
  o.endpoints = {etcd_->url()};
  EtcdClient probe(o, http_etcd_transport(loop_));
  char hex[32];
  snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(c.lease_id()));
  bool put = false;
  probe.put(ClusterConfig{}.prefix + "/election/g/" + hex, "c", c.lease_id(), [&](const EtcdResult& r) {
    put = r.ok;
  });
  ASSERT_TRUE(wait([&] { return put; }));
  auto& b = node("b");
  b.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return b.info("g").holder == "a"; })) << journal_.dump();
  EXPECT_EQ(failover("a"), "");
  ASSERT_TRUE(wait([&] { return b.holds("g"); })) << journal_.dump();
  EXPECT_EQ(journal_.overlaps, 0) << journal_.dump();
}

TEST_F(RealEtcd, AGroupThatFailedOnEveryNodeStaysDown) {
  ASSERT_NO_FATAL_FAILURE(a_holds_b_stands_by());
  auto& a = *nodes_.at("a");
  auto& b = *nodes_.at("b");
  EXPECT_EQ(failover("a"), "");
  ASSERT_TRUE(wait([&] { return b.holds("g"); })) << journal_.dump();
  EXPECT_EQ(failover("b"), "");
  ASSERT_TRUE(wait([&] { return journal_.count("a", "no_eligible_node") && journal_.count("b", "no_eligible_node"); }))
      << journal_.dump();
  // Nobody takes it for a few keepalive periods: no ping-pong.
  auto t0 = MonoClock::now();
  wait([&] { return MonoClock::now() - t0 > 3s; }, 5s);
  EXPECT_EQ(journal_.count("a", "takeover"), 1) << journal_.dump();
  EXPECT_EQ(journal_.count("b", "takeover"), 1) << journal_.dump();
  EXPECT_EQ(a.info("g").role, "down");
  EXPECT_EQ(b.info("g").holder, "");
}

TEST_F(RealEtcd, AnUnreachableEndpointIsSkippedAndNoEtcdAtAllKeepsGroupsDown) {
  ClusterConfig c = config("a", {"http://127.0.0.1:" + std::to_string(testing_etcd::free_port()), etcd_->url()});
  auto& a = node("a", c);
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();

  ClusterConfig none = config("z", {"http://127.0.0.1:" + std::to_string(testing_etcd::free_port())});
  auto& z = node("z", none);
  z.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return journal_.count("z", "cluster_unreachable") == 1; })) << journal_.dump();
  EXPECT_EQ(z.info("g").role, "down");
  // Retried with backoff, reported once.
  auto t0 = MonoClock::now();
  wait([&] { return MonoClock::now() - t0 > 2s; }, 3s);
  EXPECT_EQ(journal_.count("z", "cluster_unreachable"), 1);
  EXPECT_FALSE(z.holds("g"));
}

TEST_F(RealEtcd, AGroupLeavingTheRulesIsStoppedThenResigned) {
  ASSERT_NO_FATAL_FAILURE(a_holds_b_stands_by());
  auto& a = *nodes_.at("a");
  auto& b = *nodes_.at("b");
  a.set_groups({});
  ASSERT_TRUE(wait([&] { return b.holds("g"); })) << journal_.dump();
  EXPECT_LT(journal_.first("a", "stopped"), journal_.first("b", "takeover")) << journal_.dump();
  EXPECT_EQ(journal_.overlaps, 0);
}

}  // namespace

// ---- three etcd members in three netns on a bridge, a real partition -------
//
// RECIPES-HA §1: members m1..m3 in netns <P>e1..<P>e3 (10.203.N.1..3 on a
// bridge in <P>sw, N from the pid), node "a" in e1 and node "b" in e2,
// each a child process of this test living in its member's netns and
// talking to its member on 127.0.0.1, writing what its callbacks see (with
// CLOCK_MONOTONIC, the same in every netns) to a pipe. Partition: e1's
// link down.
namespace {

int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

class EtcdNetns : public testing::Test {
 protected:
  void SetUp() override {
    if (getuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    if (!testing_etcd::etcd_installed()) GTEST_SKIP() << "etcd is not installed";
    if (::access("/usr/sbin/ip", X_OK) != 0 && ::access("/sbin/ip", X_OK) != 0) GTEST_SKIP() << "no ip(8)";
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    p_ = "ve" + std::to_string(getpid() % 100000);
    net_ = "10." + std::to_string(200 + getpid() % 50) + "." + std::to_string(getpid() % 250) + ".";
    char tmpl[] = "/tmp/vigil-etcdns-XXXXXX";
    dir_ = ::mkdtemp(tmpl) ? tmpl : "/tmp";
    made_ = true;
    ASSERT_EQ(sh("ip netns add " + p_ + "sw"), 0) << "cannot make a netns";
    sh("ip -n " + p_ + "sw link add br0 type bridge");
    sh("ip -n " + p_ + "sw link set br0 up");
    std::string ic;
    for (int i = 1; i <= 3; i++) {
      std::string n = p_ + "e" + std::to_string(i), ip = net_ + std::to_string(i);
      ASSERT_EQ(sh("ip netns add " + n), 0);
      ASSERT_EQ(sh("ip link add " + n + "h type veth peer name " + n + "s"), 0);
      sh("ip link set " + n + "h netns " + n);
      sh("ip link set " + n + "s netns " + p_ + "sw");
      sh("ip -n " + p_ + "sw link set " + n + "s master br0");
      sh("ip -n " + p_ + "sw link set " + n + "s up");
      sh("ip -n " + n + " addr add " + ip + "/24 dev " + n + "h");
      sh("ip -n " + n + " link set " + n + "h up");
      sh("ip -n " + n + " link set lo up");
      ic += (i > 1 ? "," : "") + ("m" + std::to_string(i)) + "=http://" + ip + ":2380";
    }
    for (int i = 1; i <= 3; i++) {
      std::string n = p_ + "e" + std::to_string(i), ip = net_ + std::to_string(i);
      std::vector<std::string> args = {"/usr/sbin/ip", "netns", "exec", n, "/usr/bin/etcd",
          "--name", "m" + std::to_string(i), "--data-dir", dir_ + "/m" + std::to_string(i),
          "--listen-client-urls", "http://127.0.0.1:2379,http://" + ip + ":2379",
          "--advertise-client-urls", "http://" + ip + ":2379",
          "--listen-peer-urls", "http://" + ip + ":2380", "--initial-advertise-peer-urls", "http://" + ip + ":2380",
          "--initial-cluster", ic, "--initial-cluster-token", p_, "--initial-cluster-state", "new",
          "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn",
          // Without pre-vote (3.4's default) the healed member forces an
          // election: ~2 s without a leader, keepalives fail, and the
          // holder on the other side fences itself (seen here: b fenced).
          "--pre-vote=true"};
      pid_t pid = testing_etcd::spawn_logged(args, dir_ + "/m" + std::to_string(i) + ".log");
      members_.push_back(pid);  // ip netns exec execs etcd: this is etcd's pid
    }
    // Writable through member 1 (from its netns).
    auto end = MonoClock::now() + 40s;
    while (MonoClock::now() < end) {
      if (sh("ip netns exec " + p_ + "e1 etcdctl --endpoints=127.0.0.1:2379 --command-timeout=1s put /t/ok 1") == 0) {
        ready_ = true;
        break;
      }
      ::usleep(100 * 1000);  // polling a command that itself waits (no event to wait on)
    }
    ASSERT_TRUE(ready_) << "the 3-member etcd did not become writable (logs in " << dir_ << ")";
  }

  void TearDown() override {
    for (pid_t p : nodes_) ::kill(p, SIGKILL);
    for (pid_t p : nodes_) ::waitpid(p, nullptr, 0);
    for (pid_t p : members_) ::kill(p, SIGKILL);
    for (pid_t p : members_) ::waitpid(p, nullptr, 0);
    if (made_) {
      for (int i = 1; i <= 3; i++) sh("ip netns del " + p_ + "e" + std::to_string(i));
      sh("ip netns del " + p_ + "sw");
    }
    for (int fd : pipes_) ::close(fd);
    std::error_code ec;
    if (dir_.size() > 5) std::filesystem::remove_all(dir_, ec);
  }

  // A node in member i's netns; its callbacks' news come back on a pipe.
  // Commands on a second pipe: "failover\n".
  void start_node(const std::string& name, int member, std::vector<std::string> endpoints = {"http://127.0.0.1:2379"}) {
    int fds[2], cmd[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(cmd, O_CLOEXEC), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      ::close(cmd[1]);
      int out = fds[1];
      std::string ns = "/run/netns/" + p_ + "e" + std::to_string(member);
      int nsfd = ::open(ns.c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || ::setns(nsfd, CLONE_NEWNET) != 0) ::_exit(3);
      EventLoop loop;
      std::unique_ptr<EtcdCluster> c;
      auto say = [out](const std::string& what, const std::string& g) {
        std::string line = std::to_string(now_s()) + " " + what + " " + g + "\n";
        if (::write(out, line.data(), line.size()) < 0) ::_exit(4);
      };
      ClusterCallbacks cb;
      cb.takeover = [say](const std::string& g, const nlohmann::json&) { say("takeover", g); };
      auto stop = [&loop, &c, say](const std::string& g, const std::string& what) {
        say(what, g);
        loop.after(200ms, [&c, say, g] {
          say("stopped", g);
          c->stopped(g);
        });
      };
      cb.lost = [stop](const std::string& g, const std::string&) { stop(g, "lost"); };
      cb.fence = [stop](const std::string& g, double, const std::string&, const nlohmann::json&) { stop(g, "fence"); };
      cb.notify = [say](const std::string& what, const std::string& g, const nlohmann::json& d) {
        say(what, g.empty() ? "-" : g + (what == "holder_changed" ? ":" + d.value("to", "") : ""));
      };
      ClusterConfig cfg = config(name, endpoints);
      c = std::make_unique<EtcdCluster>(loop, cfg, std::move(cb), nullptr);
      c->set_groups({"g"});
      loop.add(cmd[0], EPOLLIN, [&c, say, fd = cmd[0]](uint32_t) {
        char buf[64];
        if (::read(fd, buf, sizeof buf) <= 0) ::_exit(0);
        say("stopped", "g");  // the daemon stopped the group, then hands it over
        c->failover("g", "test", "", [say](const std::string& err) { say(err.empty() ? "handed_over" : "failover_failed", "g"); });
      });
      loop.run();
      ::_exit(0);
    }
    ::close(fds[1]);
    ::close(cmd[0]);
    pipes_.push_back(cmd[1]);
    command_of_[name] = cmd[1];
    nodes_.push_back(pid);
    pipes_.push_back(fds[0]);
    pipe_of_[name] = fds[0];
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }

  // Reads the nodes' news until pred() holds or the deadline.
  bool wait_news(const std::function<bool()>& pred, Duration deadline) {
    auto end = MonoClock::now() + deadline;
    while (!pred()) {
      if (MonoClock::now() >= end) return false;
      std::vector<pollfd> pfds;
      for (auto& [n, fd] : pipe_of_) pfds.push_back({fd, POLLIN, 0});
      ::poll(pfds.data(), pfds.size(), 100);
      for (auto& [n, fd] : pipe_of_) {
        char buf[4096];
        ssize_t got = ::read(fd, buf, sizeof buf);
        if (got <= 0) continue;
        partial_[n].append(buf, size_t(got));
        size_t nl;
        while ((nl = partial_[n].find('\n')) != std::string::npos) {
          std::istringstream in(partial_[n].substr(0, nl));
          partial_[n].erase(0, nl + 1);
          Journal::Entry e;
          e.node = n;
          in >> e.t >> e.what >> e.group;
          journal_.entries.push_back(e);
        }
      }
    }
    return true;
  }

  std::string p_, net_, dir_;
  bool made_ = false, ready_ = false;
  std::vector<pid_t> members_, nodes_;
  std::vector<int> pipes_;
  std::map<std::string, int> pipe_of_, command_of_;
  std::map<std::string, std::string> partial_;
  Journal journal_;
};

TEST_F(EtcdNetns, APartitionedHolderFencesBeforeTheOtherSideStartsTheGroup) {
  start_node("a", 1);
  ASSERT_TRUE(wait_news([&] { return journal_.count("a", "takeover") == 1; }, 30s)) << journal_.dump();
  start_node("b", 2);
  ASSERT_TRUE(wait_news([&] {
    for (const auto& e : journal_.entries)
      if (e.node == "b" && e.what == "holder_changed" && e.group == "g:a") return true;
    return false;
  }, 30s)) << journal_.dump();
  double cut = now_s();
  ASSERT_EQ(sh("ip -n " + p_ + "e1 link set " + p_ + "e1h down"), 0);
  ASSERT_TRUE(wait_news([&] { return journal_.count("b", "takeover") == 1; }, 60s)) << journal_.dump();
  double fenced = journal_.first("a", "fence"), stopped = journal_.first("a", "stopped");
  double taken = journal_.first("b", "takeover");
  ASSERT_GT(fenced, 0) << journal_.dump();
  // self_fence_after (2 s) after the last renewal, which may come after the
  // cut: m1, if it led, renews leases alone until it steps down (election
  // timeout 1 s); the new leader's Promote extends every lease past that.
  EXPECT_LT(fenced - cut, 2.0 + 1.0 + 4.0 / 3 + 0.3) << journal_.dump();
  EXPECT_LT(stopped, taken) << journal_.dump();
  EXPECT_GT(taken - stopped, 0.2) << journal_.dump();  // a margin, not a race
  RecordProperty("partition_to_fence_s", std::to_string(fenced - cut));
  RecordProperty("partition_to_takeover_s", std::to_string(taken - cut));

  // Healed: a rejoins as standby, no fail-back.
  ASSERT_EQ(sh("ip -n " + p_ + "e1 link set " + p_ + "e1h up"), 0);
  ASSERT_TRUE(wait_news([&] {
    for (const auto& e : journal_.entries)
      if (e.node == "a" && e.what == "cluster_reachable" && e.t > cut) return true;
    return false;
  }, 60s)) << journal_.dump();
  auto t0 = MonoClock::now();
  wait_news([&] { return MonoClock::now() - t0 > 4s; }, 6s);
  EXPECT_EQ(journal_.count("a", "takeover"), 1) << journal_.dump();
  EXPECT_EQ(journal_.count("b", "fence"), 0) << journal_.dump();
  std::fprintf(stderr, "partition -> fence %.2f s, -> takeover on b %.2f s, a stopped -> b started %.2f s\n",
               fenced - cut, taken - cut, taken - stopped);
}

TEST_F(EtcdNetns, ACampaignStuckOnAHungMemberIsSentAgainOnTheNextEndpoint) {
  start_node("a", 1);
  ASSERT_TRUE(wait_news([&] { return journal_.count("a", "takeover") == 1; }, 30s)) << journal_.dump();
  // b's first endpoint: a member that is not etcd's leader (stopping the
  // leader is another test: no renewal until a new one is elected, and b,
  // holding nothing, rightly gives its lease up) and not a's.
  int hung = 0;
  for (int k = 2; k <= 3 && !hung; k++) {
    std::string cmd = "ip netns exec " + p_ + "e1 etcdctl --endpoints=http://" + net_ + std::to_string(k) +
                      ":2379 endpoint status 2>/dev/null";
    FILE* f = ::popen(cmd.c_str(), "r");
    char line[512] = {0};
    bool got = f && std::fgets(line, sizeof line, f);
    if (f) ::pclose(f);
    // "URL, ID, VERSION, SIZE, IS LEADER, IS LEARNER, ..."
    std::vector<std::string> cols;
    std::istringstream in(got ? line : "");
    for (std::string c; std::getline(in, c, ',');) cols.push_back(c);
    if (cols.size() > 4 && cols[4].find("false") != std::string::npos) hung = k;
  }
  ASSERT_NE(hung, 0) << "no follower among m2, m3";
  int other = hung == 2 ? 3 : 2;
  start_node("b", 2, {"http://" + net_ + std::to_string(hung) + ":2379", "http://" + net_ + std::to_string(other) + ":2379"});
  ASSERT_TRUE(wait_news([&] {
    for (const auto& e : journal_.entries)
      if (e.node == "b" && e.what == "holder_changed" && e.group == "g:a") return true;
    return false;
  }, 30s)) << journal_.dump();
  // b's member hangs (its campaign with it); the cluster keeps its quorum.
  ASSERT_EQ(::kill(members_[hung - 1], SIGSTOP), 0);
  // b's next keepalive times out there and moves to m3 (~ttl/3 + its timeout).
  auto t0 = MonoClock::now();
  wait_news([&] { return MonoClock::now() - t0 > 3s; }, 4s);
  double asked = now_s();
  ASSERT_EQ(::write(command_of_["a"], "failover\n", 9), 9);
  ASSERT_TRUE(wait_news([&] { return journal_.count("b", "takeover") == 1; }, 40s)) << journal_.dump();
  double taken = journal_.first("b", "takeover");
  EXPECT_LT(taken - asked, 2.0) << journal_.dump();  // not the campaign's 30 s timeout
  // b kept its lease throughout (its campaign was moved, not withdrawn).
  EXPECT_EQ(journal_.count("b", "cluster_unreachable"), 0) << journal_.dump();
  ::kill(members_[hung - 1], SIGCONT);
}

}  // namespace

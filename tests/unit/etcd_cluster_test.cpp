// The etcd adapter: EtcdClient's reading of the gateway (base64, proto3
// defaults, the next endpoint on a connection error) against a fake
// transport; EtcdCluster::check; and EtcdCluster against a REAL etcd (one
// member on loopback, two or three nodes in this process on one loop): one
// holder, a failover hands over without overlap, a node that cannot renew
// fences before another takes over, a move to a named node, and a group
// that failed everywhere stays down.
#include <gtest/gtest.h>

#include <deque>
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
    cb.takeover = [this, name](const std::string& g) {
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
    cb.fence = [this, stop](const std::string& g, double kill_after, const std::string&) {
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

  EventLoop loop_;
  std::unique_ptr<testing_etcd::EtcdMember> etcd_;
  std::map<std::string, std::unique_ptr<EtcdCluster>> nodes_;
  Journal journal_;
  double kill_after_ = -1;
};

TEST_F(RealEtcd, OneHolderAndAFailoverHandsOverWithoutOverlap) {
  auto& a = node("a");
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
  auto& b = node("b");
  b.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return b.info("g").holder == "a"; })) << journal_.dump();
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
  auto& a = node("a");
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
  auto& b = node("b");
  b.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return b.info("g").holder == "a"; })) << journal_.dump();

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

TEST_F(RealEtcd, AGroupThatFailedOnEveryNodeStaysDown) {
  auto& a = node("a");
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
  auto& b = node("b");
  b.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return b.info("g").holder == "a"; })) << journal_.dump();
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
  auto& a = node("a");
  a.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return a.holds("g"); })) << journal_.dump();
  auto& b = node("b");
  b.set_groups({"g"});
  ASSERT_TRUE(wait([&] { return b.info("g").holder == "a"; })) << journal_.dump();
  a.set_groups({});
  ASSERT_TRUE(wait([&] { return b.holds("g"); })) << journal_.dump();
  EXPECT_LT(journal_.first("a", "stopped"), journal_.first("b", "takeover")) << journal_.dump();
  EXPECT_EQ(journal_.overlaps, 0);
}

}  // namespace

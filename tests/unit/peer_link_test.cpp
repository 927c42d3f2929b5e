// PeerLink's logic against a fake transport and a fake clock: up/down by
// fails x every, the stream's reconnect backoff, resuming with
// Last-Event-ID without loss or duplicates, a gap making it read the
// status again; and RemoteHub turning that into events and readiness.
#include "host/remote/peer_link.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>

#include "host/remote/remote_hub.hpp"
#include "tests/unit/peer_fakes.hpp"

namespace vigil {
namespace {

using testing_fakes::FakeClock;
using testing_fakes::FakeTransport;

struct Recorder : PeerLink::Observer {
  std::vector<std::string> seen;
  std::vector<uint64_t> event_seqs;
  void peer_up(const PeerLink&) override { seen.push_back("up"); }
  void peer_down(const PeerLink&, double, const std::string& e) override {
    seen.push_back("down: " + e);
  }
  void remote_state(const PeerLink&, const std::string& w, const RemoteState& b,
                    const RemoteState& n) override {
    seen.push_back(w + " " + b.state + "->" + n.state + (n.ready ? " ready" : ""));
  }
  void remote_event(const PeerLink&, const std::string& w, const nlohmann::json& ev) override {
    seen.push_back("event " + w + " #" + std::to_string(ev["seq"].get<uint64_t>()));
    event_seqs.push_back(ev["seq"].get<uint64_t>());
  }
  void gap(const PeerLink&, uint64_t after) override {
    seen.push_back("gap after " + std::to_string(after));
  }
  size_t count(const std::string& s) const { return std::count(seen.begin(), seen.end(), s); }
};

nlohmann::json db(const std::string& state, bool ready) {
  return nlohmann::json::array({{{"name", "db"}, {"state", state}, {"ready", ready}, {"pid", 7}},
                                {{"name", "other"}, {"state", "running"}, {"ready", true}}});
}

struct PeerLinkTest : ::testing::Test {
  FakeClock clock;
  FakeTransport* t = nullptr;
  Recorder rec;
  std::unique_ptr<PeerLink> link;
  void make(double every = 5, int fails = 3) {
    PeerConfig c;
    c.name = "nodeb";
    c.url = "https://10.1.0.2:8443";
    c.every = every;
    c.fails = fails;
    c.timeout = 2;
    c.backoff_min = 0.5;
    c.backoff_max = 8;
    auto ft = std::make_unique<FakeTransport>();
    t = ft.get();
    link = std::make_unique<PeerLink>(c, std::move(ft), clock, rec);
    link->set_watches({"db"});
    link->start();
  }
};

TEST_F(PeerLinkTest, UpAtFirstAnswerAndStateFollowsTheRemote) {
  make();
  EXPECT_EQ(link->health(), PeerLink::Health::Unknown);
  ASSERT_TRUE(t->status(db("running", true)));
  EXPECT_EQ(link->health(), PeerLink::Health::Up);
  EXPECT_EQ(rec.seen, (std::vector<std::string>{"up", "db unknown->running ready"}));
  // The next poll comes `every` later; a change shows.
  clock.advance_s(4.9);
  EXPECT_EQ(t->count("GET"), 1u);
  clock.advance_s(0.2);
  ASSERT_EQ(t->count("GET"), 2u);
  ASSERT_TRUE(t->status(db("backoff", false)));
  EXPECT_EQ(rec.seen.back(), "db running->backoff");
  // The same state again: nothing.
  clock.advance_s(5);
  ASSERT_TRUE(t->status(db("backoff", false)));
  EXPECT_EQ(rec.seen.size(), 3u);
  // A watch the node does not have is absent.
  clock.advance_s(5);
  ASSERT_TRUE(t->status(nlohmann::json::array()));
  EXPECT_EQ(rec.seen.back(), "db backoff->absent");
}

TEST_F(PeerLinkTest, DownAfterFailsTimesEveryWithoutAnAnswerAndUpAgain) {
  make(5, 3);
  ASSERT_TRUE(t->status(db("running", true)));
  // From now on nothing answers: each poll fails.
  for (int i = 0; i < 2; ++i) {
    clock.advance_s(5);
    ASSERT_TRUE(t->fail_get());
  }
  clock.advance_s(4.9);  // 14.9 s of silence: still up
  EXPECT_EQ(link->health(), PeerLink::Health::Up);
  EXPECT_EQ(rec.count("down: GET /v1/status: connection refused"), 0u);
  clock.advance_s(0.2);  // 15.1 s: down, once, with the last error
  EXPECT_EQ(link->health(), PeerLink::Health::Down);
  ASSERT_GE(rec.seen.size(), 2u);
  EXPECT_EQ(rec.seen[rec.seen.size() - 2], "down: GET /v1/status: connection refused");
  EXPECT_EQ(rec.seen.back(), "db running->unknown");  // not ready any more
  t->fail_get();
  clock.advance_s(30);
  while (t->fail_get()) {
  }
  EXPECT_EQ(rec.count("down: GET /v1/status: connection refused"), 1u);
  EXPECT_EQ(link->health(), PeerLink::Health::Down);
  // The first answer brings it up again.
  clock.advance_s(5);
  ASSERT_TRUE(t->status(db("running", true)));
  EXPECT_EQ(link->health(), PeerLink::Health::Up);
  EXPECT_EQ(rec.count("up"), 2u);
  EXPECT_EQ(rec.seen.back(), "db unknown->running ready");
}

TEST_F(PeerLinkTest, BackByItsStreamFirstTheStatusFollowsAtOnce) {
  make(1, 2);
  ASSERT_TRUE(t->status(db("running", true)));
  t->end_stream();
  for (int i = 0; i < 4; ++i) {
    clock.advance_s(1);
    while (t->fail_get()) {
    }
    if (t->find("STREAM")) t->end_stream();
  }
  ASSERT_EQ(link->health(), PeerLink::Health::Down);
  // The stream is back before the next poll: up, and the status 0.2 s later.
  clock.advance_s(8);  // the reconnect (backoff) and the polls, all failing
  while (t->fail_get()) {
  }
  ASSERT_NE(t->find("STREAM"), 0u);
  t->lines({": hello"});
  EXPECT_EQ(link->health(), PeerLink::Health::Up);
  size_t gets = t->count("GET");
  clock.advance_s(0.21);
  EXPECT_EQ(t->count("GET"), gets + 1);
  ASSERT_TRUE(t->status(db("running", true)));
  EXPECT_EQ(rec.seen.back(), "db unknown->running ready");
}

TEST_F(PeerLinkTest, NeverAnsweringIsDownAfterTheLimitToo) {
  make(1, 2);
  clock.advance_s(1.9);
  EXPECT_EQ(link->health(), PeerLink::Health::Unknown);
  clock.advance_s(0.2);
  EXPECT_EQ(link->health(), PeerLink::Health::Down);
  EXPECT_EQ(rec.seen.front().rfind("down: ", 0), 0u);
}

TEST_F(PeerLinkTest, StreamLinesAndKeepAlivesCountAsAnswers) {
  make(1, 3);
  ASSERT_TRUE(t->status(db("running", true)));
  // Polls go unanswered, but the stream's keep-alive comments arrive.
  for (int i = 0; i < 10; ++i) {
    clock.advance_s(1);
    t->fail_get("timeout");
    t->lines({": keep-alive"});
  }
  EXPECT_EQ(link->health(), PeerLink::Health::Up);
}

TEST_F(PeerLinkTest, StreamReconnectsWithBackoffAndResumesWithoutLossOrDuplicates) {
  make();
  ASSERT_TRUE(t->status(db("running", true)));
  EXPECT_EQ(t->log.at(1), "STREAM ");  // the first stream: no Last-Event-ID
  t->event(10, "db");
  t->event(11, "other");  // not watched here: not relayed
  t->event(12, "db");
  EXPECT_EQ(link->last_seq(), 12u);
  t->end_stream();
  // Reconnects after backoff_min, resuming after #12.
  clock.advance_s(0.4);
  EXPECT_EQ(t->count("STREAM"), 1u);
  clock.advance_s(0.2);
  ASSERT_EQ(t->count("STREAM"), 2u);
  EXPECT_EQ(t->log.back(), "STREAM 12");
  // The server resends #12 (it resumed at or before it) and then #13.
  t->event(12, "db");
  t->event(13, "db");
  EXPECT_EQ(rec.event_seqs, (std::vector<uint64_t>{10, 12, 13}));
  // Failed attempts double the delay: 0.5 (it delivered before), 1, 2, 4, 8, 8.
  t->end_stream();
  std::vector<double> delays;
  double waited = 0;
  for (int attempt = 0; attempt < 6; ++attempt) {
    size_t before = t->count("STREAM");
    double d = 0;
    while (t->count("STREAM") == before && d < 20) {
      clock.advance_s(0.1);
      d += 0.1;
    }
    delays.push_back(std::round(d * 10) / 10);
    waited += d;
    EXPECT_EQ(t->log.back(), "STREAM 13");
    t->end_stream(0, "connection refused");
  }
  EXPECT_EQ(delays, (std::vector<double>{0.5, 1, 2, 4, 8, 8}));
  // A stream that delivers resets the backoff.
  clock.advance_s(8);
  t->lines({": hello"});
  t->end_stream();
  size_t before = t->count("STREAM");
  clock.advance_s(0.6);
  EXPECT_EQ(t->count("STREAM"), before + 1);
}

TEST_F(PeerLinkTest, APeerThatNumbersItsEventsAnewIsAGapNotDuplicates) {
  make();
  ASSERT_TRUE(t->status(db("running", true)));
  t->event(500, "db");
  t->end_stream();
  clock.advance_s(0.6);
  ASSERT_EQ(t->log.back(), "STREAM 500");
  // Its history was removed: the resumed stream starts at #3.
  t->event(3, "db");
  t->event(4, "db");
  EXPECT_EQ(rec.event_seqs, (std::vector<uint64_t>{500, 3, 4}));
  EXPECT_EQ(rec.count("gap after 500"), 1u);
  EXPECT_EQ(link->last_seq(), 4u);
}

TEST_F(PeerLinkTest, EventsOfAWatchedWatchRefetchTheStatusOnceABurst) {
  make();
  ASSERT_TRUE(t->status(db("running", true)));
  size_t gets = t->count("GET");
  t->event(5, "db");
  t->event(6, "other");  // not followed: no fetch for it
  EXPECT_EQ(t->count("GET"), gets);
  clock.advance_s(0.19);
  EXPECT_EQ(t->count("GET"), gets);
  clock.advance_s(0.02);  // 0.2 s after the event, not at the next poll (5 s)
  ASSERT_EQ(t->count("GET"), gets + 1);
  ASSERT_TRUE(t->status(db("backoff", false)));
  EXPECT_EQ(rec.seen.back(), "db running->backoff");
  // A burst: one fetch for all of it.
  for (uint64_t s = 7; s < 57; ++s) t->event(s, "db");
  clock.advance_s(0.21);
  EXPECT_EQ(t->count("GET"), gets + 2);
  EXPECT_EQ(rec.event_seqs.size(), 51u);  // every event relayed all the same
  // An event while a fetch is in flight: one more after its answer.
  t->event(57, "db");
  clock.advance_s(0.21);
  EXPECT_EQ(t->count("GET"), gets + 2);
  ASSERT_TRUE(t->status(db("backoff", false)));
  EXPECT_EQ(t->count("GET"), gets + 3);
}

TEST_F(PeerLinkTest, GapRefetchesTheStatus) {
  make();
  ASSERT_TRUE(t->status(db("running", true)));
  t->event(3, "db");
  clock.advance_s(0.3);  // the fetch the event asked for
  ASSERT_TRUE(t->status(db("running", true)));
  size_t gets = t->count("GET");
  t->lines({"event: gap", "id: 40", "data: {\"lost\": true}", ""});
  EXPECT_EQ(rec.seen.back(), "gap after 3");
  EXPECT_EQ(t->count("GET"), gets + 1);
  EXPECT_EQ(link->last_seq(), 40u);
  ASSERT_TRUE(t->status(db("stopped", false)));
  EXPECT_EQ(rec.seen.back(), "db running->stopped");
  t->event(41, "db");
  EXPECT_EQ(rec.event_seqs.back(), 41u);
}

// The server's gap carries no id (host/api/event_stream.cpp): it is not
// taken for an event seen before (the SSE parser would give it the
// previous event's id), and the events after it are relayed.
TEST_F(PeerLinkTest, AGapWithoutAnIdIsNotADuplicate) {
  make();
  ASSERT_TRUE(t->status(db("running", true)));
  t->event(7, "db");
  clock.advance_s(0.3);  // the fetch the event asked for
  ASSERT_TRUE(t->status(db("running", true)));
  size_t gets = t->count("GET");
  t->lines({"event: gap", "data: {\"after\":7,\"oldest\":20}", ""});
  EXPECT_EQ(rec.count("gap after 7"), 1u);
  EXPECT_EQ(t->count("GET"), gets + 1);
  EXPECT_EQ(link->last_seq(), 7u);
  ASSERT_TRUE(t->status(db("stopped", false)));
  EXPECT_EQ(rec.seen.back(), "db running->stopped");
  t->event(20, "db");
  EXPECT_EQ(rec.event_seqs, (std::vector<uint64_t>{7, 20}));
  EXPECT_EQ(rec.count("gap after 7"), 1u) << "the next event is no renumbering";
  EXPECT_EQ(link->last_seq(), 20u);
  // Resumed: a replayed event is dropped, a gap without id is still one.
  t->end_stream();
  clock.advance_s(0.6);
  ASSERT_EQ(t->log.back(), "STREAM 20");
  t->event(20, "db");
  t->lines({"event: gap", "data: {\"after\":20,\"oldest\":30}", ""});
  EXPECT_EQ(rec.event_seqs, (std::vector<uint64_t>{7, 20}));
  EXPECT_EQ(rec.count("gap after 20"), 1u);
  // An event without an id line has no number of its own: relayed, not
  // taken for the replayed #20 whose id the parser still holds.
  t->lines({"data: {\"seq\":0,\"watch\":\"db\",\"message\":\"m\"}", ""});
  EXPECT_EQ(rec.event_seqs, (std::vector<uint64_t>{7, 20, 0}));
  EXPECT_EQ(link->last_seq(), 20u);
}

// A stream cut in the middle of an event: the next stream does not
// complete it with its own lines.
TEST_F(PeerLinkTest, AnEventCutByTheStreamsEndIsDropped) {
  make();
  ASSERT_TRUE(t->status(db("running", true)));
  t->lines({"id: 9", "data: {\"watch\":"});
  t->end_stream();
  clock.advance_s(0.6);
  ASSERT_EQ(t->log.back(), "STREAM ");
  t->event(10, "db");
  EXPECT_EQ(rec.event_seqs, (std::vector<uint64_t>{10}));
  EXPECT_EQ(link->last_seq(), 10u);
}

TEST_F(PeerLinkTest, BadRepliesAreNoAnswer) {
  make(1, 2);
  ASSERT_TRUE(t->answer("GET", {200, "not json", ""}));
  EXPECT_EQ(link->health(), PeerLink::Health::Unknown);
  EXPECT_NE(link->last_error().find("not a status reply"), std::string::npos);
  t->lines({"id: 1", "data: {broken", ""});  // a line is an answer; the event is dropped
  EXPECT_EQ(link->health(), PeerLink::Health::Up);
  EXPECT_TRUE(rec.event_seqs.empty());
  EXPECT_EQ(link->last_seq(), 1u);
  // An HTTP error is an answer (the node is there) but shows no watches.
  clock.advance_s(1);
  ASSERT_TRUE(t->answer("GET", {401, "{\"ok\":false}", ""}));
  EXPECT_EQ(link->last_error(), "GET /v1/status: HTTP 401");
  EXPECT_EQ(link->watch("db")->state, "unknown");
}

TEST_F(PeerLinkTest, ActPostsAndReportsTheReply) {
  make();
  std::vector<int> got;
  link->act("db", "restart", [&](const PeerTransport::Reply& r) { got.push_back(r.status); });
  EXPECT_EQ(t->log.back(), "POST /v1/watches/db/restart");
  ASSERT_TRUE(t->answer("POST", {403, "{\"ok\":false,\"error\":\"read only\"}", ""}));
  EXPECT_EQ(got, (std::vector<int>{403}));
  // Destroyed with a request open: nothing is called.
  link->act("db", "stop", [&](const PeerTransport::Reply& r) { got.push_back(r.status); });
  link.reset();
  EXPECT_EQ(got.size(), 1u);
}

TEST(PeerConfig, FromTheRulesTable) {
  PeerConfig c = PeerConfig::from_json({{"name", "nodeb"}, {"url", "https://h:1"}, {"every", 2},
                                        {"fails", 4}, {"timeout", 1}, {"ca", "/ca.pem"}});
  EXPECT_EQ(c.name, "nodeb");
  EXPECT_EQ(c.url, "https://h:1");
  EXPECT_EQ(c.every, 2);
  EXPECT_EQ(c.fails, 4);
  EXPECT_EQ(c.ca, "/ca.pem");
  EXPECT_EQ(c.backoff_max, 8);  // never longer than it takes to call the peer down
}

}  // namespace
}  // namespace vigil

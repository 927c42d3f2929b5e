// EventLog::restore and since(): sequence numbers that mean the same event
// across a restart of vigil (what an event stream's Last-Event-ID resumes).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "host/core/events.hpp"
#include "host/core/json_read.hpp"

namespace vigil {
namespace {

std::string line(uint64_t seq, const std::string& watch) {
  return nlohmann::json{{"seq", seq}, {"id", "VGL0101"}, {"watch", watch}, {"message", "m"}}.dump();
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/vigil-history-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { (void)system(("rm -rf " + path).c_str()); }
};

LogOptions quiet(size_t capacity = 1024) {
  LogOptions o;
  o.console = false;
  o.ring_capacity = capacity;
  return o;
}

TEST(EventHistory, RestoreContinuesTheSequenceAndRefillsTheRing) {
  TempDir d;
  {
    std::ofstream rotated(d.path + "/events.jsonl.1");
    for (uint64_t s = 1; s <= 5; ++s) rotated << line(s, "a") << "\n";
    std::ofstream cur(d.path + "/events.jsonl");
    for (uint64_t s = 6; s <= 9; ++s) cur << line(s, s % 2 ? "a" : "b") << "\n";
    cur << "{not json\n" << line(10, "b") << "\n" << "{\"seq\": 11, \"id\": \"VGL01";  // cut by a crash
  }
  EventLog log(quiet());
  EXPECT_EQ(log.restore({d.path + "/events.jsonl", d.path + "/events.jsonl.1"}), 10u);
  EXPECT_EQ(log.oldest_seq(), 1u);
  EXPECT_EQ(log.last_seq(), 10u);
  auto after7 = log.since(7, 100);
  ASSERT_EQ(after7.size(), 3u);
  EXPECT_EQ(field(nlohmann::json::parse(after7[0]), "seq"), 8);
  EXPECT_EQ(log.since(7, 100, "b").size(), 2u);  // 8 and 10
  EXPECT_EQ(log.since(0, 2).size(), 2u);
  log.emit(Msg::DaemonStarted, "", {});
  EXPECT_EQ(log.last_seq(), 11u);  // the cut line was never an event
  auto last = log.since(10, 10);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(field(nlohmann::json::parse(last[0]), "seq"), 11);
  EXPECT_EQ(log.restore({d.path + "/events.jsonl"}), 0u) << "only before the first event";
}

TEST(EventHistory, RestoreKeepsTheNewestWithinTheRingAndSurvivesJunk) {
  TempDir d;
  {
    std::ofstream cur(d.path + "/events.jsonl");
    for (uint64_t s = 1; s <= 50; ++s) cur << line(s, "a") << "\n";
  }
  EventLog small(quiet(8));
  EXPECT_EQ(small.restore({d.path + "/events.jsonl"}), 8u);
  EXPECT_EQ(small.oldest_seq(), 43u);
  EXPECT_EQ(small.last_seq(), 50u);

  {
    std::ofstream junk(d.path + "/junk");
    junk << "\x01\x02 garbage\n[1,2]\n{\"seq\": -3, \"id\": \"x\"}\n";
  }
  EventLog fresh(quiet());
  EXPECT_EQ(fresh.restore({d.path + "/junk", d.path + "/missing"}), 0u);
  fresh.emit(Msg::DaemonStarted, "", {});
  EXPECT_EQ(fresh.last_seq(), 1u);
}

}  // namespace
}  // namespace vigil

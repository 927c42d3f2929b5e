// SseParser (host/net/http_client.hpp) on lines given by hand: ids kept
// across events, and whether an event had an id line of its own.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "host/net/http_client.hpp"

namespace vigil {
namespace {

struct Collect {
  std::vector<SseParser::Event> events;
  SseParser sse{[this](const SseParser::Event& e) { events.push_back(e); }};
  void lines(std::initializer_list<std::string> ls) {
    for (const auto& l : ls) sse.line(l);
  }
};

TEST(SseParser, AnEventWithoutAnIdLineInheritsTheIdButNotAsItsOwn) {
  Collect c;
  c.lines({"id: 5", "data: {\"seq\":5}", "",
           "event: gap", "data: {\"after\":5}", "",
           ": keep-alive", "",
           "id: 6", "data: a", "data: b", ""});
  ASSERT_EQ(c.events.size(), 3u);
  EXPECT_EQ(c.events[0].id, "5");
  EXPECT_TRUE(c.events[0].own_id);
  EXPECT_EQ(c.events[0].type, "message");
  EXPECT_EQ(c.events[1].id, "5") << "the last id, for Last-Event-ID";
  EXPECT_FALSE(c.events[1].own_id);
  EXPECT_EQ(c.events[1].type, "gap");
  EXPECT_EQ(c.events[1].data, "{\"after\":5}");
  EXPECT_EQ(c.events[2].id, "6");
  EXPECT_TRUE(c.events[2].own_id);
  EXPECT_EQ(c.events[2].data, "a\nb");
  EXPECT_EQ(c.sse.last_id(), "6");
}

TEST(SseParser, AnIdLineOfAMessageWithoutDataDoesNotMarkTheNextEvent) {
  Collect c;
  // An id without data dispatches nothing but sets the last id; the next
  // event, without an id line, has it inherited, not its own.
  c.lines({"id: 3", "", "data: x", "", "id:", "data: y", "", "retry: 1500", "data: z", ""});
  ASSERT_EQ(c.events.size(), 3u);
  EXPECT_EQ(c.events[0].id, "3");
  EXPECT_FALSE(c.events[0].own_id);
  EXPECT_EQ(c.events[1].id, "") << "an empty id line resets the last id";
  EXPECT_TRUE(c.events[1].own_id);
  EXPECT_EQ(c.events[2].id, "");
  EXPECT_FALSE(c.events[2].own_id);
  EXPECT_EQ(c.sse.retry_ms(), 1500);
}

}  // namespace
}  // namespace vigil

// JsonText writes what nlohmann would dump, and a unit's status object is
// the same whether it is built as a tree (to_json) or written as text
// (write_json, the status reply).
#include "host/core/json_out.hpp"

#include <gtest/gtest.h>

#include "host/core/json_read.hpp"
#include "host/supervise/supervisor.hpp"

using namespace vigil;

namespace {
std::string text_of(const std::string& s) {
  std::string out;
  JsonText(out).str(s);
  return out;
}
std::string dumped(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

TEST(JsonOut, StringsAreEscapedAsNlohmannDumpsThem) {
  for (std::string s :
       {std::string("plain"), std::string("quote \" backslash \\ slash /"),
        std::string("\b\f\n\r\t and \x01\x1f\x7f"), std::string("caf\xc3\xa9 \xe2\x82\xac"),
        std::string("\xf0\x9f\x98\x80 emoji"), std::string("nul \0 inside", 12)})
    EXPECT_EQ(text_of(s), dumped(s)) << s;
  // Not UTF-8: replaced, and still valid JSON that parses back.
  for (std::string s : {std::string("bad \xff byte"), std::string("cut \xe2\x82"),
                        std::string("overlong \xc0\xaf"), std::string("surrogate \xed\xa0\x80")}) {
    auto j = nlohmann::json::parse(text_of(s), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text_of(s);
    EXPECT_NE(j.get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
  }
}

TEST(JsonOut, NumbersAndNestingParseBackToTheSameValue) {
  std::string out;
  JsonText w(out);
  w.begin_object();
  w.key("i").num(int64_t{-42});
  w.key("u").num(uint64_t{18446744073709551615u});
  w.key("d").num(0.1);
  w.key("whole").num(3.0);
  w.key("inf").num(1.0 / 0.0);
  w.key("list").begin_array();
  w.num(1);
  w.begin_object();
  w.end_object();
  w.null();
  w.end_array();
  w.key("b").boolean(false);
  w.end_object();
  JsonTree t;
  t.begin_object();
  t.key("i").num(int64_t{-42});
  t.key("u").num(uint64_t{18446744073709551615u});
  t.key("d").num(0.1);
  t.key("whole").num(3.0);
  t.key("inf").null();
  t.key("list").begin_array();
  t.num(1);
  t.begin_object();
  t.end_object();
  t.null();
  t.end_array();
  t.key("b").boolean(false);
  t.end_object();
  nlohmann::json parsed = nlohmann::json::parse(out);
  EXPECT_EQ(parsed, t.take()) << out;
  EXPECT_TRUE(parsed["whole"].is_number_float()) << out;
}

TEST(JsonOut, UnitStatusIsTheSameAsTextAndAsTree) {
  Unit u;
  u.name = "api \"v2\"";
  u.where = "/etc/vigil/rules/api.lua:3";
  u.state = UnitState::Waiting;
  u.queued = true;
  u.restarts = 7;
  u.since = 1.5e9;
  u.after = {"db", "cache"};
  u.waiting_for = {"db"};
  u.group = "tier";
  u.overrides["restart.limit"] = "9";
  ExitInfo e;
  e.pid = 1234;
  e.uptime = 0.25;
  e.wall = 1.5e9 + 1;
  e.status.known = true;
  e.status.code = 3;
  e.error = "exec: \xff not utf-8";
  u.last_exit = e;
  std::string out;
  u.write_json(out);
  auto parsed = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << out;
  nlohmann::json tree = u.to_json();
  // Strings that are not UTF-8 are replaced in the text only (the tree
  // keeps the bytes until it is dumped): compare dumps.
  EXPECT_EQ(parsed.dump(), nlohmann::json::parse(
                               tree.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
                               .dump());
  EXPECT_EQ(parsed["last_exit"]["code"], 3);
  EXPECT_EQ(parsed["waiting_for"], nlohmann::json::array({"db"}));
}

// field() (host/core/json_read.hpp): what came from outside is read
// without undefined behaviour when a key is absent or the value is not
// an object; a get<>() of what is not there throws json::type_error.
TEST(JsonRead, AbsentKeysAndNonObjectsReadAsNull) {
  const nlohmann::json j = nlohmann::json::parse(R"({"name":5,"list":"none"})");
  EXPECT_EQ(field(j, "name"), 5);
  EXPECT_TRUE(field(j, "pid").is_null());
  EXPECT_TRUE(field(field(j, "list"), "x").is_null());
  EXPECT_TRUE(field(nlohmann::json(), "x").is_null());
  EXPECT_THROW(field(j, "pid").get<std::string>(), nlohmann::json::type_error);
}

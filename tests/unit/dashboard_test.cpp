// The dashboard's pieces that need no daemon: rule file names, error
// parsing, the embedded files.
#include "host/api/dashboard.hpp"

#include <gtest/gtest.h>

#include <set>

namespace vigil {
namespace {

TEST(DashboardNames, OnlyPlainLuaFileNamesInTheRulesDirectory) {
  for (const char* ok : {"web.lua", "a-b_c9.lua", "x.lua"}) EXPECT_TRUE(valid_rule_file_name(ok)) << ok;
  for (const char* bad : {"", ".lua", "../x.lua", "lib/x.lua", "/etc/x.lua", "X.lua", "x.txt",
                          "x.lua/", "x.lua.bak", "x .lua", "x\n.lua", "..lua"})
    EXPECT_FALSE(valid_rule_file_name(bad)) << bad;
  EXPECT_FALSE(valid_rule_file_name(std::string(200, 'a') + ".lua"));
}

TEST(DashboardErrors, FileLineAndTheKeysPath) {
  auto e = parse_rule_error("/etc/vigil/rules/web.lua:3: watch 'web'.restart.limit: expected an integer, got abc");
  EXPECT_EQ(e["file"], "web.lua");
  EXPECT_EQ(e["line"], 3);
  EXPECT_EQ(e["key"], "restart.limit");
  EXPECT_EQ(e["message"], "watch 'web'.restart.limit: expected an integer, got abc");
  e = parse_rule_error("/r/web.lua:1: watch 'web'.probes[1].url: expected a URL");
  EXPECT_EQ(e["key"], "probes[1].url");
  e = parse_rule_error("/r/web.lua:1: watch 'web': 'kill' is for adopted processes");
  EXPECT_EQ(e["key"], "kill");
  e = parse_rule_error("/r/x.lua:7: unexpected symbol near '}'");
  EXPECT_EQ(e["line"], 7);
  EXPECT_EQ(e["key"], "");
  e = parse_rule_error("cannot load the standard rule library");
  EXPECT_EQ(e["line"], 0);
  EXPECT_EQ(e["message"], "cannot load the standard rule library");
  // A long error (a rule's message of a megabyte) is parsed, not recursed on.
  std::string big = "/r/x.lua:2: " + std::string(1 << 20, 'x');
  e = parse_rule_error(big);
  EXPECT_EQ(e["line"], 2);
  EXPECT_EQ(e["message"].get<std::string>().size(), size_t{1} << 20);
  e = parse_rule_error("/r/a.lua:: b.lua:9: m");
  EXPECT_EQ(e["line"], 9) << "the first .lua: that a line number follows";
  EXPECT_EQ(e["message"], "m");
}

TEST(DashboardFiles, EmbeddedWithoutInlineScriptsOrStyles) {
  std::set<std::string> names;
  for (const auto& a : web_assets()) {
    names.insert(std::string(a.name));
    EXPECT_FALSE(a.body.empty()) << a.name;
  }
  EXPECT_EQ(names, (std::set<std::string>{"index.html", "app.css", "app.js"}));
  for (const auto& a : web_assets()) {
    if (a.name != "index.html") continue;
    EXPECT_EQ(a.body.find("<script>"), std::string_view::npos);
    EXPECT_EQ(a.body.find("style="), std::string_view::npos);
    EXPECT_EQ(a.body.find("<style"), std::string_view::npos);
    EXPECT_EQ(a.body.find("http"), std::string_view::npos) << "no CDN";
  }
  EXPECT_TRUE(dashboard_public("GET", "/"));
  EXPECT_TRUE(dashboard_public("GET", "/ui/app.js"));
  EXPECT_FALSE(dashboard_public("POST", "/ui/app.js"));
  EXPECT_FALSE(dashboard_public("GET", "/v1/status"));
  EXPECT_FALSE(dashboard_public("GET", "/uix"));
}

}  // namespace
}  // namespace vigil

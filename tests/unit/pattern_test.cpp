// Vigil's bounded pattern matcher against the stock Lua one: hand cases
// for every feature of Lua 5.4 patterns, then a few thousand generated
// pattern/subject pairs. Any difference in results or error messages fails.
#include <gtest/gtest.h>

#include <random>

#include "lua/pattern.hpp"

using vigil::lua_pattern_differential;

namespace {
void expect_same(const std::string& pattern, const std::string& subject) {
  std::string diff;
  EXPECT_TRUE(lua_pattern_differential(pattern, subject, &diff)) << diff;
}
}  // namespace

TEST(PatternDifferential, HandCases) {
  // These outlive the table (ASan: a temporary's c_str() dangled).
  const std::string kLong(300, 'x');
  const std::string kNul("a\0b", 3);
  const std::pair<const char*, const char*> cases[] = {
      {"o w", "hello world"},
      {"^(%w+)%s*=%s*(%w+)()$", "key = value"},
      {"(%w+)=(%w+)", "a=1, b=2, c=3"},
      {"%w", "abc"},
      {"%((%a+)%)", "THE (quick) fox"},
      {"%b()", "f(a(b)c)d"},
      {"%b", "x"},
      {"%bx", "x"},
      {"%f[%a]%a+", "THE (quick) fox"},
      {"%f[%w]%w+%f[%W]", "hello, world!"},
      {"%f%a", "x"},
      {"", "abc"},
      {"", ""},
      {"^", "abc"},
      {"$", "abc"},
      {"^$", ""},
      {"a$b", "a$b"},
      {"(a)(b)(c)%3%2%1", "abccba"},
      {"(a)%2", "aa"},
      {"%1", "aa"},
      {"(()a)", "xa"},
      {"()", "abc"},
      {"(", "abc"},
      {")", "abc"},
      {"(()", "abc"},
      {"%", "abc"},
      {"[a", "abc"},
      {"[]", "]"},
      {"[]]", "]"},
      {"[^]]", "a]"},
      {"[%]]", "]"},
      {"[a-]", "-"},
      {"[-a]", "-"},
      {"[a-c-e]", "d-e"},
      {"[%a-z]", "-"},
      {"[^%s]+", "  word  "},
      {"%d+%.?%d*", "x 3.14 y"},
      {"%u%l*", "Hello World"},
      {"%x+", "0xDEADbeef"},
      {"%p+", "a,.;b"},
      {"%c", "a\tb"},
      {"%g+", " \x01" "abc"},
      {"%z", kNul.c_str()},
      {".-b", "aaab"},
      {"a-", "aaa"},
      {"a-$", "aaa"},
      {"a*", "aaa"},
      {"a+", "baaa"},
      {"a?a?a", "aa"},
      {"[%w_]+", "foo_bar baz"},
      {"%s*(.-)%s*$", "  trim me  "},
      {"^(%d+)(%a+)()", "12ms rest"},
      {"^(%[[^%]]+%])(.*)$", "[::1]:80"},
      {"IdleWorkers:%s*(%d+)", "BusyWorkers: 3\nIdleWorkers: 7\n"},
      {"((a)(b))", "ab"},
      {"(a*(.)%w(%s*))", "aaab  c"},
      {"%a+", kLong.c_str()},
      {"(.)%1", "abccd"},
      {"[\xff-\xfe]", "\xff"},
      {"[\x80-\xff]+", "a\x90\xa0" "b"},
  };
  for (const auto& [p, s] : cases) expect_same(p, s);
  expect_same(std::string("a\0b", 3), std::string("xa\0by", 5));
  expect_same(std::string("[\0]", 3), std::string("x\0", 2));
  expect_same("(((((((((((((((((((((((((((((((((x)))))))))))))))))))))))))))))))))", "x");  // 33
  expect_same(std::string(300, 'a') + "b", std::string(300, 'a'));  // deep, then too complex?
  expect_same("(a" + std::string(250, '?') + ")", "aaa");
}

TEST(PatternDifferential, GeneratedPairs) {
  // Atoms that exercise every construct, and subjects over a small
  // alphabet so that matches happen often.
  const char* atoms[] = {"a",   "b",     ".",     "%a",   "%d",   "%s",   "%w",  "%A",  "%%",
                         "%.",  "[ab]",  "[^a]",  "[a-c]", "[%d%s]", "[]]", "*",   "+",   "-",
                         "?",   "(",     ")",     "()",   "%1",   "%2",   "%b()", "%bab", "%f[%a]",
                         "%f[^a]", "^",  "$",     "x",    " ",    "[",    "%",   "1",   "(a)",
                         "(.-)", "(%a+)", ".-",   "a*",   "b+",   "%S+",  "[%a_]", "[a-]"};
  const char alphabet[] = "aab b1(x) ab.%-[]";
  std::mt19937 rng(20261202);
  int compared = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string pattern;
    int n = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < n; ++k) pattern += atoms[rng() % (sizeof atoms / sizeof *atoms)];
    std::string subject;
    int m = static_cast<int>(rng() % 24);
    for (int k = 0; k < m; ++k) subject += alphabet[rng() % (sizeof alphabet - 1)];
    std::string diff;
    ASSERT_TRUE(lua_pattern_differential(pattern, subject, &diff))
        << "pattern '" << pattern << "' subject '" << subject << "': " << diff;
    ++compared;
  }
  EXPECT_EQ(compared, 3000);
}

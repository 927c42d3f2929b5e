// env_file: systemd's EnvironmentFile= syntax, and what vigil refuses
// that systemd would skip with a warning (issue 14 item 4).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "host/supervise/env_file.hpp"

using namespace vigil;

namespace {

EnvList parse(const std::string& text) {
  EnvList out;
  auto err = parse_env_text(text, "f", out);
  EXPECT_FALSE(err) << *err;
  return out;
}

std::string error_of(const std::string& text) {
  EnvList out;
  auto err = parse_env_text(text, "/etc/default/x", out);
  return err ? *err : "(no error)";
}

}  // namespace

TEST(EnvFile, PlainLinesCommentsAndBlanks) {
  auto e = parse("# a comment\n; another\n\nA=1\n  B = two words  \nC=\n");
  EnvList want{{"A", "1"}, {"B", "two words"}, {"C", ""}};
  EXPECT_EQ(e, want);
}

TEST(EnvFile, QuotesAsSystemdReadsThem) {
  auto e = parse(
      "S='single $HOME \\n kept'\n"
      "D=\"double \\\"q\\\" \\\\ \\$x \\a\"\n"
      "M='two\nlines'\n"
      "J='a' \"b\"\n"           // parts after a closing quote join
      "I=in\"side'quotes\n"     // quotes inside a bare value are kept
      "T=  'padded '  \n");
  EnvList want{{"S", "single $HOME \\n kept"},
               {"D", "double \"q\" \\ $x \\a"},
               {"M", "two\nlines"},
               {"J", "ab"},
               {"I", "in\"side'quotes"},
               {"T", "padded "}};
  EXPECT_EQ(e, want);
}

TEST(EnvFile, BackslashesAndContinuations) {
  auto e = parse("A=one\\\ntwo\nB=x\\ \nC=\"l1\\\nl2\"\n# comment \\\nNOT=seen\nD=a\\\\b\n");
  EnvList want{{"A", "onetwo"}, {"B", "x "}, {"C", "l1l2"}, {"D", "a\\b"}};
  EXPECT_EQ(e, want);
}

TEST(EnvFile, LaterAssignmentWinsAndCrlfIsBlank) {
  auto e = parse("A=1\r\nA=2\r\nB=3");
  EnvList want{{"A", "2"}, {"B", "3"}};
  EXPECT_EQ(e, want);
}

TEST(EnvFile, BadLinesNameTheFileAndLine) {
  EXPECT_EQ(error_of("A=1\n\nnot an assignment\n"), "/etc/default/x:3: expected KEY=VALUE");
  EXPECT_EQ(error_of("A=1\n1BAD=x\n"), "/etc/default/x:2: '1BAD' is not a variable name");
  EXPECT_EQ(error_of("export A=1\n"), "/etc/default/x:1: 'export A' is not a variable name");
  EXPECT_EQ(error_of("A='x\ny\n"), "/etc/default/x:1: unterminated ' quote");
  // Lines are counted across a quoted value that spans lines.
  EXPECT_EQ(error_of("A=\"x\ny\"\nB\n"), "/etc/default/x:3: expected KEY=VALUE");
}

TEST(EnvFile, ReadMissingOptionalDirectory) {
  char tmpl[] = "/tmp/vigil-envfile-XXXXXX";
  ASSERT_TRUE(mkdtemp(tmpl));
  std::string dir = tmpl;
  EnvList out;
  auto err = read_env_file(dir + "/none", out);
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, dir + "/none: No such file or directory");
  EXPECT_FALSE(read_env_file("-" + dir + "/none", out));  // optional
  EXPECT_TRUE(out.empty());
  err = read_env_file(dir, out);
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, dir + ": is a directory");
  // An optional file that is there is read, and its errors count.
  std::ofstream(dir + "/f") << "A=1\nbad\n";
  err = read_env_file("-" + dir + "/f", out);
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, dir + "/f:2: expected KEY=VALUE");
  std::ofstream(dir + "/f") << "A=1\n";
  out.clear();
  EXPECT_FALSE(read_env_file(dir + "/f", out));
  EXPECT_EQ(out, (EnvList{{"A", "1"}}));
  unlink((dir + "/f").c_str());
  rmdir(dir.c_str());
}

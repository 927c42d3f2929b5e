// The process journal's reader: whatever is in the file, what parses is
// kept and the first bad line is named.
#include "host/supervise/journal.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vigil-journal-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

void put(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Journal, GoodLinesAreKeptAndTheLastForANameWins) {
  TempDir d;
  std::string p = d.path + "/processes.journal";
  put(p, "a\t10\t100\ts\t7\nb\t11\t110\ta\t8\na\t12\t120\ts\t9\nb\t0\t0\ta\t0\n");
  vigil::Journal j(p);
  auto l = j.load();
  EXPECT_TRUE(l.unreadable.empty());
  EXPECT_EQ(l.bad_lines, 0u);
  ASSERT_EQ(l.entries.size(), 1u);
  EXPECT_EQ(l.entries["a"].pid, 12);
  EXPECT_EQ(l.entries["a"].start_time, 120u);
  EXPECT_TRUE(l.entries["a"].spawned);
  EXPECT_EQ(l.entries["a"].spec_hash, 9u);
  // Rewritten compactly, nothing moved aside.
  EXPECT_EQ(slurp(p), "a\t12\t120\ts\t9\n");
  EXPECT_FALSE(std::filesystem::exists(p + ".damaged"));
  EXPECT_FALSE(std::filesystem::exists(p + ".new"));
}

TEST(Journal, DamageIsNamedByLineAndWhatParsesIsKept) {
  struct Case {
    std::string text;
    std::string damage;
    size_t kept;
  };
  const Case cases[] = {
      {"hello world\n", "line 1: 1 fields instead of 5", 0},
      {"a\t10\t100\ts\t7\nb\t11\t1", "line 2: truncated (no newline at the end)", 1},
      {"a\t10\t100\ts\t7\n" + std::string("\x00\x01\xff\n", 4), "line 2: binary data", 1},
      {"a\tten\t100\ts\t7\n", "line 1: bad pid", 0},
      {"a\t10\t-1\ts\t7\n", "line 1: bad start time", 0},
      {"a\t10\t100\tx\t7\n", "line 1: bad kind (expected s or a)", 0},
      {"a\t10\t100\ts\t7\t8\n", "line 1: more than 5 fields", 0},
      {"a\t99999999999999999999\t1\ts\t7\n", "line 1: bad pid", 0},
      {"\n\nb\t11\t110\ta\t8\n", "line 1: 1 fields instead of 5 (and 1 more)", 1},
  };
  for (const auto& c : cases) {
    TempDir d;
    std::string p = d.path + "/processes.journal";
    put(p, c.text);
    vigil::Journal j(p);
    auto l = j.load();
    EXPECT_EQ(l.damage, c.damage) << c.text;
    EXPECT_EQ(l.entries.size(), c.kept) << c.text;
    EXPECT_EQ(l.moved_to, p + ".damaged");
    EXPECT_EQ(slurp(p + ".damaged"), c.text);
  }
}

TEST(Journal, WhatIsNotAFileIsUnreadableAndReplaced) {
  TempDir d;
  std::string p = d.path + "/processes.journal";
  std::filesystem::create_directory(p);
  {
    vigil::Journal j(p);
    auto l = j.load();
    EXPECT_EQ(l.unreadable, "it is a directory");
    EXPECT_TRUE(std::filesystem::is_directory(p + ".damaged"));
    EXPECT_TRUE(std::filesystem::is_regular_file(p)) << "a fresh journal takes its place";
  }
  std::filesystem::remove(p);
  ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
  vigil::Journal j(p);
  auto l = j.load();  // must not block on the FIFO
  EXPECT_EQ(l.unreadable, "it is not a regular file");
  EXPECT_TRUE(std::filesystem::is_regular_file(p));
}

TEST(Journal, NoJournalIsNotAnError) {
  TempDir d;
  vigil::Journal j(d.path + "/processes.journal");
  auto l = j.load();
  EXPECT_TRUE(l.unreadable.empty());
  EXPECT_EQ(l.bad_lines, 0u);
  EXPECT_TRUE(l.entries.empty());
}

TEST(Journal, InstanceIdFollowsTheRealPath) {
  TempDir d;
  std::filesystem::create_directory(d.path + "/a");
  std::filesystem::create_directory_symlink(d.path + "/a", d.path + "/link");
  EXPECT_EQ(vigil::instance_id(d.path + "/a"), vigil::instance_id(d.path + "/link"));
  EXPECT_NE(vigil::instance_id(d.path + "/a"), vigil::instance_id(d.path));
  EXPECT_EQ(vigil::instance_id(d.path).size(), 16u);
}

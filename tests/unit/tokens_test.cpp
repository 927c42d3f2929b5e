// TokenFile: the API's hashed bearer tokens.
#include "host/api/tokens.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "host/net/tls.hpp"

namespace vigil {
namespace {

class Tokens : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string e;
    if (!tls_available(e)) GTEST_SKIP() << "OpenSSL cannot be loaded: " << e;
    char tmpl[] = "/tmp/vigil-tokens-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/tokens";
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void write(const std::string& text, mode_t mode) {
    std::ofstream(path_) << text;
    ASSERT_EQ(chmod(path_.c_str(), mode), 0);
  }
  std::string dir_, path_;
};

TEST_F(Tokens, AddThenVerifyThenRemove) {
  std::string t1, t2, e;
  ASSERT_TRUE(TokenFile::add(path_, "deploy", t1, e)) << e;
  ASSERT_TRUE(TokenFile::add(path_, "alice@ops", t2, e)) << e;
  EXPECT_EQ(t1.rfind("vgl_", 0), 0u);
  EXPECT_EQ(t1.size(), 4u + 64u);
  EXPECT_NE(t1, t2);
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Only hashes are stored.
  std::ifstream in(path_);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text.find(t1), std::string::npos);

  TokenFile f;
  ASSERT_TRUE(f.load(path_, e)) << e;
  EXPECT_EQ(f.size(), 2u);
  EXPECT_EQ(f.verify(t1), "deploy");
  EXPECT_EQ(f.verify(t2), "alice@ops");
  EXPECT_EQ(f.verify(""), "");
  EXPECT_EQ(f.verify(t1.substr(0, t1.size() - 1)), "");
  std::string wrong = t1;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  EXPECT_EQ(f.verify(wrong), "");

  EXPECT_FALSE(TokenFile::add(path_, "deploy", t1, e));
  EXPECT_NE(e.find("exists"), std::string::npos) << e;
  ASSERT_TRUE(TokenFile::remove(path_, "deploy", e)) << e;
  ASSERT_TRUE(f.load(path_, e)) << e;
  EXPECT_EQ(f.verify(t1), "");
  EXPECT_EQ(f.verify(t2), "alice@ops");
  EXPECT_FALSE(TokenFile::remove(path_, "deploy", e));
}

TEST_F(Tokens, RefusesAFileOthersCanRead) {
  write("deploy " + std::string(64, 'a') + "\n", 0644);
  TokenFile f;
  std::string e;
  EXPECT_FALSE(f.load(path_, e));
  EXPECT_NE(e.find(path_), std::string::npos) << e;
  EXPECT_NE(e.find("0644"), std::string::npos) << e;
  std::string t;
  EXPECT_FALSE(TokenFile::add(path_, "other", t, e)) << "add must refuse it too";
}

TEST_F(Tokens, NamesTheLineOfABadEntry) {
  write("# people\n\ndeploy " + std::string(64, 'a') + "\nalice notahash\n", 0600);
  TokenFile f;
  std::string e;
  EXPECT_FALSE(f.load(path_, e));
  EXPECT_NE(e.find(path_ + ":4:"), std::string::npos) << e;
  write("a b c\n", 0600);
  EXPECT_FALSE(f.load(path_, e));
  EXPECT_NE(e.find(":1:"), std::string::npos) << e;
  write("x " + std::string(64, 'b') + "\nx " + std::string(64, 'c') + "\n", 0600);
  EXPECT_FALSE(f.load(path_, e));
  EXPECT_NE(e.find("twice"), std::string::npos) << e;
  EXPECT_FALSE(f.load(dir_ + "/missing", e));
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
  std::string t;
  EXPECT_FALSE(TokenFile::add(path_, "bad name", t, e));
}

}  // namespace
}  // namespace vigil

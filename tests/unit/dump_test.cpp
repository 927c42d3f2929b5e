// Evidence dump pieces: the byte budget, output tails, the fd list of a
// real socket, retention.
#include "host/supervise/dump.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "host/core/fd.hpp"

using namespace vigil;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/vigil-dump-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};
std::string slurp(const std::string& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST(Dump, WriterCutsFilesAtTheBudgetAndSaysSo) {
  TempDir t;
  DumpWriter w(t.path, 10);
  EXPECT_TRUE(w.put("a", "123456"));
  EXPECT_TRUE(w.put("b", "abcdefgh"));
  EXPECT_EQ(slurp(t.path + "/a"), "123456");
  EXPECT_EQ(slurp(t.path + "/b"), "abcd");
  EXPECT_EQ(w.bytes(), 10u);
  EXPECT_NE(w.manifest().find("b 4 cut"), std::string::npos) << w.manifest();
  EXPECT_FALSE(w.put("../x/y", "z"));  // a directory that is not there
  EXPECT_NE(w.manifest().find("error: ../x/y"), std::string::npos);
}

TEST(Dump, TailKeepsTheLastLines) {
  TempDir t;
  std::string p = t.path + "/log";
  std::ofstream(p) << "1\n2\n3\n4\n";
  EXPECT_EQ(tail_lines(p, 2), "3\n4\n");
  EXPECT_EQ(tail_lines(p, 10), "1\n2\n3\n4\n");
  std::ofstream(p) << "a\nno newline at the end";
  EXPECT_EQ(tail_lines(p, 1), "no newline at the end");
  EXPECT_EQ(tail_lines(t.path + "/missing", 5), "");
}

TEST(Dump, FdListNamesAListeningSocketAndItsPort) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(s.get(), 4), 0);
  socklen_t len = sizeof a;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  std::string text = describe_fds(getpid());
  std::string want = std::to_string(s.get()) + " -> socket:[";
  EXPECT_NE(text.find(want), std::string::npos) << text;
  EXPECT_NE(text.find("tcp LISTEN port " + std::to_string(ntohs(a.sin_port)) + " backlog 0"),
            std::string::npos)
      << text;
}

TEST(Dump, PruneRemovesTheOldest) {
  TempDir t;
  for (const char* n :
       {"2026-01-01T00-00-00.000Z", "2026-01-02T00-00-00.000Z", "2026-01-03T00-00-00.000Z"})
    fs::create_directories(t.path + "/" + n);
  prune_dumps(t.path, 2);
  EXPECT_FALSE(fs::exists(t.path + "/2026-01-01T00-00-00.000Z"));
  EXPECT_TRUE(fs::exists(t.path + "/2026-01-02T00-00-00.000Z"));
  EXPECT_TRUE(fs::exists(t.path + "/2026-01-03T00-00-00.000Z"));
}

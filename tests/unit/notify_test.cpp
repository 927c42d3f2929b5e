#include "host/probe/notify.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

void send_to(const std::string& address, const std::string& msg) {
  Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  ASSERT_EQ(address[0], '@');
  memcpy(sa.sun_path + 1, address.data() + 1, address.size() - 1);
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  ASSERT_EQ(sendto(s.get(), msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&sa), len),
            static_cast<ssize_t>(msg.size()));
}

}  // namespace

TEST(Notify, ParsesKeyValueLines) {
  NotifyMessage m = parse_notify(42, "READY=1\nSTATUS=serving 3 clients\ngarbage\n=x\nWATCHDOG=1");
  EXPECT_EQ(m.pid, 42);
  ASSERT_EQ(m.fields.size(), 3u);
  ASSERT_NE(m.get("STATUS"), nullptr);
  EXPECT_EQ(*m.get("STATUS"), "serving 3 clients");
  EXPECT_EQ(*m.get("READY"), "1");
  EXPECT_EQ(*m.get("WATCHDOG"), "1");
  EXPECT_EQ(m.get("MAINPID"), nullptr);
  // The last value of a key wins.
  EXPECT_EQ(*parse_notify(1, "STATUS=a\nSTATUS=b").get("STATUS"), "b");
}

TEST(Notify, ReceivesWithTheSendersPid) {
  EventLoop loop;
  NotifySocket sock(loop);
  std::string err;
  std::string dir = "/tmp/vigil-notify-test-" + std::to_string(getpid());
  ASSERT_TRUE(sock.open(dir, err)) << err;
  EXPECT_EQ(sock.address(), "@vigil-notify" + dir);
  std::vector<NotifyMessage> got;
  sock.set_handler([&](const NotifyMessage& m) { got.push_back(m); });
  send_to(sock.address(), "READY=1\nSTATUS=up");
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.empty() && std::chrono::steady_clock::now() < deadline) loop.run_once(100ms);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].pid, getpid());  // from the kernel, not from the message
  EXPECT_EQ(*got[0].get("STATUS"), "up");
  // A second socket on the same state directory is refused: one daemon.
  NotifySocket again(loop);
  EXPECT_FALSE(again.open(dir, err));
  EXPECT_NE(err.find("bind"), std::string::npos) << err;
}

TEST(Notify, LongStateDirectoriesGetAHashedName) {
  EventLoop loop;
  NotifySocket sock(loop);
  std::string err;
  ASSERT_TRUE(sock.open("/" + std::string(200, 'x') + std::to_string(getpid()), err)) << err;
  EXPECT_LT(sock.address().size(), 108u);
  EXPECT_EQ(sock.address().rfind("@vigil-notify-", 0), 0u);
}

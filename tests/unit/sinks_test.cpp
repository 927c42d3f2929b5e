// The sinks' wire formats (RFC 5424, RFC 6587 framing, journald native
// protocol) and the socket sink's queue against a real unix socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "host/core/fd.hpp"
#include "host/log/formats.hpp"
#include "host/log/sink.hpp"
#include "host/loop/event_loop.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

Event exit_event() {
  Event ev;
  ev.seq = 7;
  ev.time = 1795000000.25;  // 2026-11-18T...
  ev.msg = Msg::ProcessExited;
  ev.severity = Severity::Warning;
  ev.watch = "api";
  ev.fields = {{"watch", "api"}, {"pid", 123}, {"how", "exited 3"}, {"signal", nullptr}};
  ev.text = "api: pid 123 exited 3 after 1s";
  return ev;
}

}  // namespace

TEST(SyslogFormat, EscapesSdParamValues) {
  EXPECT_EQ(sd_escape(R"(a"b\c]d)"), R"(a\"b\\c\]d)");
  EXPECT_EQ(sd_escape("plain [x] = y"), "plain [x\\] = y");
  EXPECT_EQ(sd_escape("bad \xff utf8"), "bad \xEF\xBF\xBD utf8");
  EXPECT_EQ(sd_escape("ok \xc3\xa9"), "ok \xc3\xa9");
}

// Found by tests/fuzz/formats_fuzz: the check took any lead byte with the
// right number of continuation bytes, so overlong forms, surrogates and
// code points above U+10FFFF went out as "valid" UTF-8.
TEST(SyslogFormat, EveryKindOfInvalidUtf8IsReplaced) {
  const std::string bad[] = {
      "\xC0\x80",          // overlong NUL
      "\xC1\xBF",          // overlong '\x7F'
      "\xE0\x80\xAF",      // overlong '/'
      "\xED\xA0\x80",      // surrogate U+D800
      "\xF0\x80\x80\xAF",  // overlong '/' in four bytes
      "\xF4\x90\x80\x80",  // U+110000
      "\xF8\x88\x80\x80\x80",
      "\xE2\x82",          // truncated
  };
  for (const auto& b : bad) {
    std::string out = sd_escape("a" + b + "z");
    EXPECT_EQ(out.front(), 'a');
    EXPECT_EQ(out.back(), 'z');
    EXPECT_EQ(out.find(b), std::string::npos) << "kept invalid bytes";
    EXPECT_NE(out.find("\xEF\xBF\xBD"), std::string::npos) << out;
  }
  // The largest and the smallest of each length stay.
  for (std::string ok : {"\x7F", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF",
                         "\xEE\x80\x80", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF"})
    EXPECT_EQ(sd_escape(ok), ok);
}

TEST(SyslogFormat, SdNamesAreSanitized) {
  EXPECT_EQ(sd_name("per_minute"), "per_minute");
  EXPECT_EQ(sd_name("a b=c]\"d"), "a_b_c__d");
  EXPECT_EQ(sd_name(std::string(40, 'x')), std::string(32, 'x'));
}

TEST(SyslogFormat, Rfc5424LineHasPriMsgidAndStructuredData) {
  SyslogHeader h;
  h.facility = 3;
  h.hostname = "node1";
  h.pid = 42;
  Event ev = exit_event();
  ev.fields["reason"] = "quote \" and ] end";
  std::string line = format_rfc5424(ev, h, ev.text);
  // daemon(3)*8 + warning(4) = 28
  EXPECT_EQ(line.rfind("<28>1 2026-", 0), 0u) << line;
  EXPECT_NE(line.find(".250000Z node1 vigil 42 VGL0102 [vigil@32473 id=\"VGL0102\" "
                      "event=\"process_exited\" severity=\"warning\" watch=\"api\" "),
            std::string::npos)
      << line;
  EXPECT_NE(line.find(" how=\"exited 3\""), std::string::npos) << line;
  EXPECT_NE(line.find(" pid=\"123\""), std::string::npos) << line;
  EXPECT_NE(line.find(R"( reason="quote \" and \] end")"), std::string::npos) << line;
  EXPECT_EQ(line.find("signal="), std::string::npos) << "null fields are left out: " << line;
  EXPECT_TRUE(line.ends_with("] api: pid 123 exited 3 after 1s")) << line;
  h.facility = 16;  // local0
  ev.severity = Severity::Critical;
  EXPECT_EQ(format_rfc5424(ev, h, "x").rfind("<130>1 ", 0), 0u);
}

TEST(SyslogFormat, OctetCountingFraming) {
  EXPECT_EQ(octet_frame("<13>1 - - - - - hi"), "18 <13>1 - - - - - hi");
  EXPECT_EQ(octet_frame(""), "0 ");
  std::string utf8 = "\xc3\xa9";  // counts octets, not characters
  EXPECT_EQ(octet_frame(utf8), "2 " + utf8);
}

TEST(JournalFormat, PlainAndBinaryFields) {
  std::string out;
  journal_append(out, "MESSAGE", "hello");
  EXPECT_EQ(out, "MESSAGE=hello\n");
  out.clear();
  journal_append(out, "MESSAGE", "two\nlines");
  std::string expected = "MESSAGE\n";
  expected += std::string("\x09\0\0\0\0\0\0\0", 8);
  expected += "two\nlines\n";
  EXPECT_EQ(out, expected);
}

TEST(JournalFormat, FieldNamesAndEntry) {
  EXPECT_EQ(journal_field_name("per-minute"), "PER_MINUTE");
  EXPECT_EQ(journal_field_name("_secret"), "SECRET");
  EXPECT_EQ(journal_field_name("9lives"), "LIVES");
  Event ev = exit_event();
  std::string e = journal_entry(ev, 3, ev.text);
  EXPECT_EQ(e.rfind("MESSAGE=api: pid 123 exited 3 after 1s\n", 0), 0u) << e;
  EXPECT_NE(e.find("\nPRIORITY=4\n"), std::string::npos) << e;
  EXPECT_NE(e.find("\nSYSLOG_IDENTIFIER=vigil\n"), std::string::npos) << e;
  EXPECT_NE(e.find("\nMESSAGE_ID=5d1e2a8c9f4b47e3a6c0b7d200000066\n"), std::string::npos) << e;
  EXPECT_NE(e.find("\nVIGIL_ID=VGL0102\n"), std::string::npos) << e;
  EXPECT_NE(e.find("\nVIGIL_WATCH=api\n"), std::string::npos) << e;
  EXPECT_NE(e.find("\nVIGIL_PID=123\n"), std::string::npos) << e;
  EXPECT_NE(e.find("\nVIGIL_HOW=exited 3\n"), std::string::npos) << e;
  EXPECT_EQ(e.find("VIGIL_SIGNAL"), std::string::npos) << e;
}

// Found writing tests/fuzz/formats_fuzz's journald check: a 64-character
// field name became
// VIGIL_ + 64 = 70 characters, over journald's limit of 64 (it drops the
// field, or with some versions the whole entry).
TEST(JournalFormat, PrefixedFieldNamesStayWithinJournaldsLimit) {
  Event ev = exit_event();
  ev.fields[std::string(100, 'k')] = "v";
  std::string e = journal_entry(ev, 3, ev.text);
  std::string expected = "\nVIGIL_" + std::string(58, 'K') + "=v\n";
  EXPECT_NE(e.find(expected), std::string::npos) << e;
  for (size_t at = 0; at < e.size();) {
    size_t end = e.find_first_of("=\n", at);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - at, 64u) << e.substr(at, end - at);
    if (e[end] == '\n') break;  // the binary MESSAGE form does not occur here
    at = e.find('\n', end) + 1;
  }
}

TEST(JournalFormat, MessageIdsAreStableAndDistinct) {
  std::set<std::string> seen;
  for (const auto& d : message_catalog()) {
    std::string id = journal_message_id(d);
    EXPECT_EQ(id.size(), 32u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    EXPECT_TRUE(seen.insert(id).second) << d.id;
  }
  EXPECT_EQ(journal_message_id(message_def(Msg::DaemonStarted)),
            "5d1e2a8c9f4b47e3a6c0b7d200000001");
}

namespace {

// A unix datagram receiver at a path in a temp dir.
struct Receiver {
  std::string dir =
      std::filesystem::temp_directory_path() / ("vigil-sink-" + std::to_string(getpid()));
  std::string path = dir + "/log.sock";
  Fd fd;
  Receiver() { std::filesystem::create_directories(dir); }
  ~Receiver() { std::filesystem::remove_all(dir); }
  void bind_now() {
    fd = Fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, path.c_str());
    ASSERT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&un), sizeof un), 0);
    int small = 4096;  // a tiny queue: EAGAIN comes quickly
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  std::vector<std::string> drain() {
    std::vector<std::string> out;
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0) out.emplace_back(buf, n);
    return out;
  }
};

bool run_until(EventLoop& loop, const std::function<bool()>& cond, Duration limit = 5s) {
  MonoTime end = MonoClock::now() + limit;
  while (!cond()) {
    if (MonoClock::now() > end) return false;
    loop.run_once(10ms);
  }
  return true;
}

}  // namespace

TEST(SocketSink, QueuesWhileUnreachableThenDeliversInOrder) {
  Receiver r;
  EventLoop loop;
  std::vector<std::pair<Msg, nlohmann::json>> reports;
  SinkSpec spec;
  spec.kind = "syslog";
  spec.address = "unix:" + r.path;
  std::string error;
  auto sink = make_sink(
      spec, &loop, [&](Msg m, nlohmann::json f) { reports.emplace_back(m, std::move(f)); }, error);
  ASSERT_TRUE(sink) << error;
  ASSERT_EQ(reports.size(), 1u) << "nothing listens yet: one VGL0012";
  EXPECT_EQ(reports[0].first, Msg::SinkUnreachable);
  Event ev = exit_event();
  for (int i = 0; i < 3; ++i) {
    ev.text = "event " + std::to_string(i);
    sink->write(ev, nullptr);
  }
  EXPECT_EQ(reports.size(), 1u) << "reported once, not per event";
  r.bind_now();
  std::vector<std::string> got;
  ASSERT_TRUE(run_until(loop, [&] {
    for (auto& m : r.drain()) got.push_back(m);
    return got.size() >= 3;
  })) << got.size();
  EXPECT_TRUE(got[0].ends_with("event 0"));
  EXPECT_TRUE(got[2].ends_with("event 2"));
  // Recovered after a second of working delivery.
  ASSERT_TRUE(run_until(loop, [&] { return reports.size() >= 2; }));
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[1].first, Msg::SinkRecovered);
  EXPECT_EQ(reports[1].second["queued"], 3);
}

TEST(SocketSink, FullQueueDropsOldestAndCountsThem) {
  Receiver r;
  EventLoop loop;
  std::vector<std::pair<Msg, nlohmann::json>> reports;
  SinkSpec spec;
  spec.kind = "syslog";
  spec.address = r.path;
  spec.queue = 5;
  std::string error;
  auto sink = make_sink(
      spec, &loop, [&](Msg m, nlohmann::json f) { reports.emplace_back(m, std::move(f)); }, error);
  ASSERT_TRUE(sink) << error;
  Event ev = exit_event();
  for (int i = 0; i < 12; ++i) {
    ev.text = "event " + std::to_string(i);
    sink->write(ev, nullptr);
  }
  r.bind_now();
  std::vector<std::string> got;
  ASSERT_TRUE(run_until(loop, [&] {
    for (auto& m : r.drain()) got.push_back(m);
    for (auto& [m, f] : reports)
      if (m == Msg::EventsDropped) return got.size() >= 5;
    return false;
  })) << got.size();
  ASSERT_EQ(got.size(), 5u);
  EXPECT_TRUE(got[0].ends_with("event 7")) << got[0];
  for (auto& [m, f] : reports)
    if (m == Msg::EventsDropped) {
      EXPECT_EQ(f["count"], 7);
    }
}

TEST(SocketSink, UdpToAClosedPortIsReportedOnceNotPerRetry) {
  EventLoop loop;
  // A port with nothing behind it: bound, then closed.
  Fd probe(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof in;
  ASSERT_EQ(bind(probe.get(), reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  getsockname(probe.get(), reinterpret_cast<sockaddr*>(&in), &len);
  probe.reset();
  std::vector<Msg> reports;
  SinkSpec spec;
  spec.kind = "syslog";
  spec.address = "udp:127.0.0.1:" + std::to_string(ntohs(in.sin_port));
  std::string error;
  auto sink = make_sink(
      spec, &loop, [&](Msg m, nlohmann::json) { reports.push_back(m); }, error);
  ASSERT_TRUE(sink) << error;
  Event ev = exit_event();
  MonoTime end = MonoClock::now() + 3s;
  while (MonoClock::now() < end) {
    sink->write(ev, nullptr);
    loop.run_once(20ms);
  }
  EXPECT_EQ(std::count(reports.begin(), reports.end(), Msg::SinkUnreachable), 1);
  EXPECT_EQ(std::count(reports.begin(), reports.end(), Msg::SinkRecovered), 0);
}

TEST(SocketSink, NeverBlocksWhenTheReceiverIsFull) {
  Receiver r;
  r.bind_now();  // bound, never read: its queue fills
  EventLoop loop;
  std::vector<Msg> reports;
  SinkSpec spec;
  spec.kind = "syslog";
  spec.address = r.path;
  spec.queue = 100;
  std::string error;
  auto sink = make_sink(
      spec, &loop, [&](Msg m, nlohmann::json) { reports.push_back(m); }, error);
  ASSERT_TRUE(sink) << error;
  Event ev = exit_event();
  MonoTime t0 = MonoClock::now();
  for (int i = 0; i < 20000; ++i) sink->write(ev, nullptr);
  EXPECT_LT(to_seconds(MonoClock::now() - t0), 5.0);
  ASSERT_TRUE(run_until(
      loop,
      [&] {
        return std::find(reports.begin(), reports.end(), Msg::EventsDropped) != reports.end();
      },
      10s));
}

// A syslog host name is resolved off the loop, before each connection:
// making the sink never waits for DNS, events queue meanwhile, and a name
// that does not resolve is reported (VGL0012, in words) and retried.
TEST(SocketSink, TcpHostNameResolvedWithoutBlockingTheLoop) {
  Fd srv(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof in;
  ASSERT_EQ(bind(srv.get(), reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  ASSERT_EQ(listen(srv.get(), 4), 0);
  getsockname(srv.get(), reinterpret_cast<sockaddr*>(&in), &len);
  EventLoop loop;
  std::vector<std::pair<Msg, nlohmann::json>> reports;
  auto report = [&](Msg m, nlohmann::json f) { reports.emplace_back(m, std::move(f)); };
  SinkSpec spec;
  spec.kind = "syslog";
  spec.address = "tcp:localhost:" + std::to_string(ntohs(in.sin_port));
  std::string error;
  auto sink = make_sink(spec, &loop, report, error);
  ASSERT_TRUE(sink) << error;
  Event ev = exit_event();
  ev.text = "resolved and delivered";
  sink->write(ev, nullptr);
  std::string got;
  Fd conn;
  ASSERT_TRUE(run_until(loop, [&] {
    if (!conn) conn = Fd(accept4(srv.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    char buf[4096];
    ssize_t n = conn ? recv(conn.get(), buf, sizeof buf, 0) : -1;
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    return got.find("resolved and delivered") != std::string::npos;
  })) << got;
  EXPECT_TRUE(reports.empty()) << reports.size();

  spec.address = "udp:no-such-host.invalid:514";
  reports.clear();
  MonoTime t0 = MonoClock::now();
  auto lost = make_sink(spec, &loop, report, error);
  ASSERT_TRUE(lost) << error;
  EXPECT_LT(MonoClock::now() - t0, 50ms) << "made without a lookup";
  lost->write(ev, nullptr);
  ASSERT_TRUE(run_until(loop, [&] { return !reports.empty(); }, 30s));
  EXPECT_EQ(reports[0].first, Msg::SinkUnreachable);
  std::string why = reports[0].second["error"];
  EXPECT_NE(why.find("no-such-host.invalid"), std::string::npos) << why;
  EXPECT_LT(loop.worst_iteration(), 100ms);

  spec.address = "tcp:nohost";
  EXPECT_FALSE(make_sink(spec, &loop, report, error));
  EXPECT_EQ(error, "syslog sink: expected host:port, got 'nohost'");
}

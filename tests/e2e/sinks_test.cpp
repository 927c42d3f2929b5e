// End-to-end: event sinks against real log servers. rsyslogd runs in the
// foreground with a private config (a unix socket, UDP and TCP inputs, an
// RFC 5424 output file); journald runs in a private mount namespace. The
// daemon's watches really exit; the test waits for the lines to arrive.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

bool have(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

// rsyslogd -n with a private config in `dir`: a unix socket dir/log.sock,
// UDP and TCP on `port` (when > 0), everything to dir/all.log as RFC 5424.
class Rsyslog {
 public:
  // `rules`: the filter part of the config; by default everything to
  // dir/all.log as RFC 5424.
  Rsyslog(const std::string& dir, int port, const std::string& rules = "") : dir_(dir) {
    std::filesystem::create_directories(dir);
    std::string conf = "global(workDirectory=\"" + dir + "\")\n" +
                       "module(load=\"imuxsock\" SysSock.Use=\"off\")\n" +
                       "input(type=\"imuxsock\" Socket=\"" + socket() +
                       "\" CreatePath=\"on\" UseSpecialParser=\"off\" ParseHostname=\"on\")\n";
    if (port > 0) {
      std::string p = std::to_string(port);
      conf += "module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"" + p +
              "\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"" +
              p + "\")\n";
    }
    if (!rules.empty()) conf += rules;
    if (rules.empty())
      conf +=
          "template(name=\"rfc5424\" type=\"string\" string=\"<%PRI%>1 "
          "%TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID% "
          "%STRUCTURED-DATA% %msg%\\n\")\n"
          "*.* action(type=\"omfile\" file=\"" +
          log() + "\" template=\"rfc5424\")\n";
    write_file(dir + "/rsyslog.conf", conf);
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      freopen((dir + "/rsyslogd.out").c_str(), "w", stdout);
      freopen((dir + "/rsyslogd.out").c_str(), "a", stderr);
      execlp("rsyslogd", "rsyslogd", "-n", "-f", (dir + "/rsyslog.conf").c_str(), "-i",
             (dir + "/rsyslogd.pid").c_str(), nullptr);
      _exit(127);
    }
  }
  ~Rsyslog() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      if (!reap(pid_, 10s)) {
        kill(pid_, SIGKILL);
        reap(pid_);
      }
    }
  }
  std::string socket() const { return dir_ + "/log.sock"; }
  std::string log() const { return dir_ + "/all.log"; }
  bool ready() const {
    return wait_for([&] { return std::filesystem::exists(socket()); }, 10s);
  }
  // A line of the output containing every needle.
  std::string line_with(const std::vector<std::string>& needles) const {
    std::istringstream in(read_file(log()));
    for (std::string line; std::getline(in, line);) {
      bool all = true;
      for (const auto& n : needles) all = all && line.find(n) != std::string::npos;
      if (all) return line;
    }
    return "";
  }
  bool wait_line(const std::vector<std::string>& needles,
                 std::chrono::milliseconds timeout = 15s) const {
    return wait_for([&] { return !line_with(needles).empty(); }, timeout);
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

const char* kCrash =
    "watch \"crash\" { start = { \"/bin/sh\", \"-c\", \"sleep 0.2; exit 3\" },\n"
    "  restart = { limit = 1000, within = \"1m\", backoff = \"100ms\" } }\n";

#define NEED_RSYSLOG()             \
  if (!have("/usr/sbin/rsyslogd")) \
  GTEST_SKIP() << "rsyslogd is not installed (.ci/deps installs rsyslog)"

}  // namespace

TEST(Sinks, RsyslogReceivesRfc5424OverUnixUdpAndTcp) {
  NEED_RSYSLOG();
  Daemon d;
  int port = free_port();
  Rsyslog rs(d.dir() + "/syslog", port);
  ASSERT_TRUE(rs.ready()) << read_file(d.dir() + "/syslog/rsyslogd.out");
  std::string p = std::to_string(port);
  d.write_rule("a.lua", std::string(kCrash) +
                            "vigil.log.sink { kind = \"syslog\", address = \"udp:127.0.0.1:" + p +
                            "\", facility = \"local3\", format = function(ev) return \"UDP \" .. "
                            "ev.message end }\n"
                            "vigil.log.sink { kind = \"syslog\", address = \"tcp:127.0.0.1:" +
                            p +
                            "\", format = function(ev) return \"TCP \" .. ev.id .. \" \" .. "
                            "(ev.watch or \"-\") end }\n");
  ASSERT_TRUE(d.start({"--syslog-address", "unix:" + rs.socket()})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0102", "crash", 1, 15s)) << d.output();
  // The unix socket (command line): default text, facility daemon (3*8+4).
  EXPECT_TRUE(rs.wait_line({"<28>1 ", " vigil ", " VGL0102 [vigil@32473 id=\"VGL0102\"",
                            "event=\"process_exited\"", "watch=\"crash\"", "how=\"exited 3\"",
                            "] crash: pid "}))
      << read_file(rs.log());
  // UDP: local3 (19*8+4 = 156) and the formatter's text.
  EXPECT_TRUE(rs.wait_line({"<156>1 ", " VGL0102 [vigil@32473 ", "] UDP crash: pid "}))
      << read_file(rs.log());
  // TCP: octet-counted frames arrive whole, one per line.
  EXPECT_TRUE(rs.wait_line({"<28>1 ", " VGL0102 [vigil@32473 ", "] TCP VGL0102 crash"}))
      << read_file(rs.log());
  EXPECT_EQ(d.count_events("VGL0012"), 0) << d.output();
}

TEST(Sinks, ExampleRsyslogFilterRoutesByMsgidAndSeverity) {
  NEED_RSYSLOG();
  Daemon d;
  std::string dir = d.dir() + "/syslog";
  std::string example =
      read_file(std::string(VIGIL_SOURCE_DIR) + "/examples/integrations/rsyslog-vigil.conf");
  ASSERT_FALSE(example.empty());
  for (size_t at; (at = example.find("/var/log/vigil/")) != std::string::npos;)
    example.replace(at, 15, dir + "/");
  Rsyslog rs(dir, 0, example);
  ASSERT_TRUE(rs.ready()) << read_file(dir + "/rsyslogd.out");
  // Quick failures exhaust the budget: VGL0105 is critical.
  d.write_rule("a.lua",
               "watch \"api\" { start = { \"/bin/sh\", \"-c\", \"exit 3\" },\n"
               "  restart = { limit = 2, within = \"1m\", backoff = \"10ms\" } }\n");
  ASSERT_TRUE(d.start({"--syslog", "--syslog-address", "unix:" + rs.socket()})) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0105", "api", 1, 15s)) << d.output();
  auto has = [&](const std::string& file, const std::string& needle) {
    return read_file(dir + "/" + file).find(needle) != std::string::npos;
  };
  EXPECT_TRUE(wait_for([&] { return has("critical.log", " VGL0105 [vigil@32473 "); }, 15s))
      << read_file(dir + "/critical.log") << read_file(dir + "/rsyslogd.out");
  EXPECT_FALSE(has("critical.log", " VGL0101 ")) << "info events are not critical";
  EXPECT_TRUE(wait_for([&] { return has("deaths.log", " VGL0102 "); }, 15s));
  EXPECT_FALSE(has("deaths.log", " VGL0105 "));
  EXPECT_TRUE(wait_for([&] { return has("api.log", " VGL0101 "); }, 15s));
  EXPECT_TRUE(wait_for([&] { return has("all.log", " VGL0001 "); }, 15s));
}

TEST(Sinks, UnreachableSyslogIsReportedAndRestartsGoOn) {
  Daemon d;
  int refused = free_port();  // nothing listens there
  d.write_rule("a.lua", std::string(kCrash) +
                            "vigil.log.sink { kind = \"syslog\", address = \"tcp:127.0.0.1:" +
                            std::to_string(refused) + "\", queue = 10 }\n");
  ASSERT_TRUE(d.start({"--syslog-address", "unix:" + d.dir() + "/nobody/log.sock"})) << d.output();
  ASSERT_TRUE(wait_for([&] { return d.count_events("VGL0012") >= 2; }, 15s)) << d.output();
  auto events = d.events();
  bool unix_seen = false, tcp_seen = false;
  for (const auto& e : events) {
    if (e["id"] != "VGL0012") continue;
    std::string sink = e["fields"]["sink"];
    unix_seen = unix_seen || sink.find("nobody/log.sock") != std::string::npos;
    tcp_seen =
        tcp_seen || sink.find("tcp:127.0.0.1:" + std::to_string(refused)) != std::string::npos;
  }
  EXPECT_TRUE(unix_seen && tcp_seen) << events.dump(1);
  // Supervision does not wait for the log: the watch keeps being restarted.
  ASSERT_TRUE(d.wait_event("VGL0101", "crash", 4, 20s)) << d.output();
  // Reported once per sink, not per event (and reconnect attempts do not
  // repeat it).
  EXPECT_EQ(d.count_events("VGL0012"), 2) << d.events().dump(1);
  // The small queue overflows: a counted notice.
  EXPECT_TRUE(d.wait_event("VGL0014", "", 1, 20s)) << d.output();
  auto dropped = d.last_event("VGL0014");
  EXPECT_GT(dropped["fields"]["count"].get<int>(), 0) << dropped.dump();
  // The notice does not feed itself: with the watch quiet, no more come.
  ASSERT_EQ(d.cli({"stop", "crash"}).code, 0);
  int notices = d.count_events("VGL0014");
  EXPECT_FALSE(d.wait_event("VGL0014", "", notices + 2, 14s)) << d.events().dump(1);
}

TEST(Sinks, TcpSinkReconnectsAndSendsWhatWasQueued) {
  NEED_RSYSLOG();
  Daemon d;
  int port = free_port();
  d.write_rule("a.lua", std::string(kCrash) +
                            "vigil.log.sink { kind = \"syslog\", address = \"tcp:127.0.0.1:" +
                            std::to_string(port) + "\" }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0012", "", 1, 15s)) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0102", "crash", 1, 15s)) << d.output();
  // The first exit happened while nothing listened; the server comes up.
  Rsyslog rs(d.dir() + "/syslog", port);
  ASSERT_TRUE(rs.ready());
  ASSERT_TRUE(d.wait_event("VGL0013", "", 1, 40s)) << d.output();
  EXPECT_TRUE(rs.wait_line({" VGL0001 [vigil@32473 ", "event=\"daemon_started\""}))
      << "events from before the server was up arrive: " << read_file(rs.log());
  EXPECT_TRUE(rs.wait_line({" VGL0012 [vigil@32473 ", "event=\"sink_unreachable\""}))
      << read_file(rs.log());
}

TEST(Sinks, FormatterErrorFallsBackAndIsReportedOnce) {
  Daemon d;
  std::string json = d.dir() + "/out.jsonl";
  d.write_rule("a.lua", std::string(kCrash) + "vigil.log.sink { kind = \"json\", path = \"" + json +
                            "\", format = function(ev)\n"
                            "  if ev.id == \"VGL0102\" then error(\"no template for exits\") end\n"
                            "  return \"CLASSIC \" .. ev.severity .. \" \" .. ev.id .. \" \" .. "
                            "ev.message end }\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0102", "crash", 3, 20s)) << d.output();
  EXPECT_EQ(d.count_events("VGL0016"), 1) << d.events().dump(1);
  auto failed = d.last_event("VGL0016");
  EXPECT_NE(failed["fields"]["error"].get<std::string>().find("no template for exits"),
            std::string::npos)
      << failed.dump();
  std::string out = read_file(json);
  EXPECT_NE(out.find("CLASSIC info VGL0101 crash: started pid "), std::string::npos) << out;
  // The exits fell back to the default JSON object.
  EXPECT_NE(out.find("\"id\":\"VGL0102\""), std::string::npos) << out;
}

TEST(Sinks, EventsSinceReadsTheHistoryBeyondTheRing) {
  Daemon d;
  // 1500 rule messages at load: more than the ring's 1024.
  d.write_rule("a.lua",
               std::string(kCrash) + "for i = 1, 1500 do vigil.log.info(\"spam \" .. i) end\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0102", "crash", 2, 20s)) << d.output();
  auto r = d.cli({"events", "--since", "1h", "--id", "VGL0900", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto spam = nlohmann::json::parse(r.out);
  ASSERT_EQ(spam.size(), 1500u) << "the ring alone holds 1024";
  EXPECT_EQ(spam[0]["message"], "spam 1");
  r = d.cli({"events", "--since", "1h", "--watch", "crash", "--id", "VGL0102", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto exits = nlohmann::json::parse(r.out);
  ASSERT_GE(exits.size(), 2u) << r.out;
  for (const auto& e : exits) {
    EXPECT_EQ(e["id"], "VGL0102");
    EXPECT_EQ(e["watch"], "crash");
  }
  r = d.cli({"events", "--since", "1h", "-n", "3", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 3u);
  // The ring query takes --id too.
  r = d.cli({"events", "--id", "VGL0102", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const auto& e : nlohmann::json::parse(r.out)) EXPECT_EQ(e["id"], "VGL0102");
  EXPECT_NE(d.cli({"events", "--since", "soon"}).code, 0);
  // With the daemon gone, the history is still there.
  ASSERT_EQ(d.stop(), 0) << d.output().substr(d.output().size() > 3000 ? d.output().size() - 3000
                                                                       : 0);
  r = d.cli({"events", "--since", "1h", "--id", "VGL0002", "--state-dir", d.state_dir(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto stopping = nlohmann::json::parse(r.out);
  ASSERT_EQ(stopping.size(), 1u) << r.out;
  EXPECT_EQ(stopping[0]["event"], "daemon_stopping");
}

TEST(Sinks, FullDiskIsOneErrorAndMonitoringGoesOn) {
  Daemon d;
  std::string mnt = d.dir() + "/small";
  std::filesystem::create_directories(mnt);
  // A 16 KiB tmpfs in the daemon's own mount namespace.
  d.set_prefix({"unshare", "--mount", "--propagation", "private", "sh", "-c",
                "mount -t tmpfs -o size=16k tmpfs " + mnt + " && exec \"$@\"", "sh"});
  d.write_rule("a.lua", std::string(kCrash) + "vigil.log.sink { kind = \"json\", path = \"" + mnt +
                            "/events.jsonl\", max_size = 0 }\n" +
                            "for i = 1, 200 do vigil.log.info(\"fill \" .. i .. \" " +
                            std::string(100, 'x') + "\") end\n");
  ASSERT_TRUE(d.start()) << d.output();
  ASSERT_TRUE(d.wait_event("VGL0015", "", 1, 15s)) << d.output();
  auto e = d.last_event("VGL0015");
  EXPECT_NE(e["fields"]["error"].get<std::string>().find("space"), std::string::npos) << e.dump();
  ASSERT_TRUE(d.wait_event("VGL0101", "crash", 3, 20s)) << d.output();
  EXPECT_EQ(d.count_events("VGL0015"), 1);
}

TEST(Sinks, JournaldReceivesNativeEntries) {
  if (!have("/lib/systemd/systemd-journald") || !have("/usr/bin/journalctl"))
    GTEST_SKIP() << "systemd-journald is not installed";
  Daemon d;
  // journald and vigil share a private mount namespace with their own
  // /run/systemd and /run/log; journald's socket appears there.
  std::string script =
      "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/journal /run/log && "
      "mount -t tmpfs tmpfs /run/log && { /lib/systemd/systemd-journald >" +
      d.dir() + "/journald.out 2>&1 & echo $! >" + d.dir() +
      "/journald.pid; } && "
      "i=0; until [ -S /run/systemd/journal/socket ]; do i=$((i+1)); [ $i -gt 200 ] && exit 9; "
      "sleep 0.05; done; exec \"$@\"";
  d.set_prefix({"unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"});
  // journald outlives the namespace's other processes: stop it by its pid.
  struct StopJournald {
    std::string pidfile;
    ~StopJournald() {
      pid_t p = atoi(read_file(pidfile).c_str());
      if (p > 0) kill(p, SIGTERM);
    }
  } stop{d.dir() + "/journald.pid"};
  d.write_rule("a.lua", std::string(kCrash) +
                            "vigil.log.sink { kind = \"journald\", format = function(ev)\n"
                            "  if ev.id == \"VGL0101\" then return string.rep(\"x\", 400000) end\n"
                            "  return \"J \" .. ev.message .. \"\\nsecond line\" end }\n");
  ASSERT_TRUE(d.start()) << d.output() << read_file(d.dir() + "/journald.out");
  ASSERT_TRUE(d.wait_event("VGL0102", "crash", 1, 15s)) << d.output();
  std::string pid = std::to_string(d.pid());
  std::string found;
  bool ok = wait_for(
      [&] {
        auto r = run_command({"/usr/bin/nsenter", "-t", pid, "-m", "journalctl", "-D",
                              "/run/log/journal", "--no-pager", "-o", "json", "VIGIL_ID=VGL0102"});
        found = r.out + r.err;
        return r.out.find("\"VIGIL_WATCH\":\"crash\"") != std::string::npos;
      },
      20s);
  ASSERT_TRUE(ok) << found << read_file(d.dir() + "/journald.out");
  EXPECT_NE(found.find("\"MESSAGE_ID\":\"5d1e2a8c9f4b47e3a6c0b7d200000066\""), std::string::npos)
      << found;
  EXPECT_NE(found.find("\"PRIORITY\":\"4\""), std::string::npos) << found;
  EXPECT_NE(found.find("\"SYSLOG_IDENTIFIER\":\"vigil\""), std::string::npos) << found;
  EXPECT_NE(found.find("\"VIGIL_HOW\":\"exited 3\""), std::string::npos) << found;
  EXPECT_NE(found.find("second line"), std::string::npos) << "a multi-line MESSAGE: " << found;
  EXPECT_EQ(d.count_events("VGL0012"), 0) << d.output();
  // 400 KB is more than a datagram can carry: it went as a sealed memfd.
  auto big = run_command({"/usr/bin/nsenter", "-t", pid, "-m", "journalctl", "-D",
                          "/run/log/journal", "--no-pager", "-o", "json", "--all",
                          "--output-fields=VIGIL_ID,MESSAGE", "VIGIL_ID=VGL0101"});
  EXPECT_NE(big.out.find(std::string(1000, 'x')), std::string::npos)
      << big.out.substr(0, 500) << big.err;
}

TEST(Sinks, ReloadSwapsTheFormatterOfAKeptSink) {
  Daemon d;
  std::string json = d.dir() + "/out.log";
  auto rules = [&](const std::string& tag) {
    return std::string(kCrash) + "vigil.log.sink { kind = \"file\", path = \"" + json +
           "\", format = function(ev) return \"" + tag + " \" .. ev.id end }\n";
  };
  d.write_rule("a.lua", rules("FIRST"));
  ASSERT_TRUE(d.start({"--no-watch-rules"})) << d.output();
  ASSERT_TRUE(
      wait_for([&] { return read_file(json).find("FIRST VGL0101") != std::string::npos; }, 15s))
      << read_file(json);
  d.write_rule("a.lua", rules("SECOND"));
  auto r = d.cli({"reload"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(
      wait_for([&] { return read_file(json).find("SECOND VGL0101") != std::string::npos; }, 15s))
      << read_file(json);
  EXPECT_EQ(d.count_events("VGL0016"), 0) << d.events().dump(1);
  EXPECT_EQ(d.count_events("VGL0017"), 0);
}

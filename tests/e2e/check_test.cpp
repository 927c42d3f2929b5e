// End-to-end: `vigil check` shows every error of a rule file with its
// line, and refuses durations that would overflow (issue 11, items 5 and
// 17); `vigil set` refuses them on a running daemon.
#include <gtest/gtest.h>

#include <sstream>

#include "tests/e2e/harness.hpp"

using namespace vigil::test;

namespace {
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}
}  // namespace

TEST(Check, ShowsEveryErrorWithItsLine) {
  Daemon d;
  d.write_rule("bad.lua",
               "watch \"a\" { start = 42 }\n"                               // 1
               "watch \"ok\" { start = { \"sleep\", \"1\" } }\n"            // 2
               "watch \"b\" { start = \"true\", restart = { limt = 3 } }\n"  // 3
               "\n"                                                         // 4
               "watch \"c\" { match = { nmae = \"x\" } }\n");               // 5
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir() + "/bad.lua"});
  EXPECT_EQ(r.code, 1);
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 3u) << r.err;
  EXPECT_NE(lines[0].find("bad.lua:1: watch 'a'.start"), std::string::npos) << r.err;
  EXPECT_NE(lines[1].find("bad.lua:3: watch 'b'.restart: unknown key 'limt' (did you mean 'limit'?)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(lines[2].find("bad.lua:5: watch 'c'.match: unknown key 'nmae' (did you mean 'name'?)"),
            std::string::npos)
      << r.err;
}

TEST(Check, EveryFileIsCheckedAndASyntaxErrorStopsOnlyItsFile) {
  Daemon d;
  d.write_rule("a.lua", "watch \"a\" { start = 1 }\nwatch \"a2\" { start = 2 }\n");
  d.write_rule("b.lua", "watch \"b\" { start = \n");
  d.write_rule("c.lua", "group \"g\" { }\nvigil.on(\"no_such_event\", function() end)\n");
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir()});
  EXPECT_EQ(r.code, 1);
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 5u) << r.err;
  EXPECT_NE(lines[0].find("a.lua:1: watch 'a'.start"), std::string::npos) << r.err;
  EXPECT_NE(lines[1].find("a.lua:2: watch 'a2'.start"), std::string::npos) << r.err;
  EXPECT_NE(lines[2].find("b.lua:"), std::string::npos) << r.err;
  EXPECT_NE(lines[3].find("c.lua:1: group 'g': no members"), std::string::npos) << r.err;
  EXPECT_NE(lines[4].find("c.lua:2: vigil.on: unknown event 'no_such_event'"), std::string::npos)
      << r.err;
}

TEST(Check, ErrorsAreCappedAt50) {
  Daemon d;
  std::string text;
  for (int i = 0; i < 120; ++i) text += "watch \"w" + std::to_string(i) + "\" { start = 1 }\n";
  d.write_rule("many.lua", text);
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir()});
  EXPECT_EQ(r.code, 1);
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 51u) << r.err;
  EXPECT_NE(lines[49].find("many.lua:50:"), std::string::npos) << lines[49];
  EXPECT_NE(lines[50].find("more than 50 errors"), std::string::npos) << lines[50];
}

// Issue 11 item 5: these passed `vigil check` and then restarted at once.
TEST(Check, RefusesOverflowingDurations) {
  struct Case {
    const char* rule;
    const char* expect;
  };
  const Case cases[] = {
      {"restart = { delay = 2^63 }", "watch 'w'.restart.delay: duration"},
      {"restart = { delay = \"99999999999d\" }",
       "watch 'w'.restart.delay: duration \"99999999999d\" is longer than the maximum of 100 days"},
      {"restart = { backoff = math.maxinteger }", "watch 'w'.restart.backoff: duration"},
      {"restart = { backoff = \"1s..2^70s\" }", "watch 'w'.restart.backoff: bad duration"},
      {"restart = { within = 1/0 }", "watch 'w'.restart.within: duration must be a finite number"},
      {"restart = { reset = 0/0 }", "watch 'w'.restart.reset: duration must be a finite number"},
      {"restart = { within = -5 }", "watch 'w'.restart.within: duration must be >= 0"},
      {"rearm = \"1e400s\"", "watch 'w'.rearm: bad duration \"1e400s\""},
      {"settle = 1e300", "watch 'w'.settle: duration"},
      {"stop = { timeout = \"101d\" }", "watch 'w'.stop.timeout: duration \"101d\" is longer"},
      {"probes = { tcp { port = 1, every = \"99999999999d\" } }", "tcp.every: duration"},
      {"escalate = { { \"restart\", within = 2^70 } }", "watch 'w'.escalate[1].within: duration"},
      {"dump = { timeout = 1/0 }", "watch 'w'.dump.timeout: duration"},
  };
  for (const auto& c : cases) {
    Daemon d;
    d.write_rule("bad.lua", std::string("watch \"w\" { start = { \"sleep\", \"1\" }, ") + c.rule + " }\n");
    auto r = run_command({VIGIL_BINARY, "check", d.rules_dir() + "/bad.lua"});
    EXPECT_EQ(r.code, 1) << c.rule;
    EXPECT_NE(r.err.find(std::string("bad.lua:1: ")), std::string::npos) << c.rule << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << "rule: " << c.rule << "\nerr: " << r.err;
  }
  // A group's and a check's durations too; the 100-day maximum itself is fine.
  Daemon d;
  d.write_rule("ok.lua", "watch \"w\" { start = { \"sleep\", \"1\" }, rearm = \"100d\" }\n");
  EXPECT_EQ(run_command({VIGIL_BINARY, "check", d.rules_dir() + "/ok.lua"}).code, 0);
  d.write_rule("g.lua",
               "watch \"w\" { start = { \"sleep\", \"1\" } }\n"
               "group \"g\" { coalesce = \"99999999999d\", \"w\" }\n"
               "watch \"m\" { match = { name = \"x\" }, checks = { every = 2^63 } }\n");
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir() + "/g.lua"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("g.lua:2: group 'g'.coalesce: duration"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("g.lua:3: watch 'm'.checks.every: duration"), std::string::npos) << r.err;
}

TEST(Check, TimersRefuseOverflowingDelays) {
  for (const char* v : {"1/0", "0/0", "2^63", "-1", "1e300"}) {
    Daemon d;
    d.write_rule("t.lua", std::string("vigil.timer.after(") + v + ", function() end)\n");
    auto r = run_command({VIGIL_BINARY, "check", d.rules_dir()});
    EXPECT_EQ(r.code, 1) << v;
    EXPECT_NE(r.err.find("t.lua:1: vigil.timer: delay"), std::string::npos) << v << "\n" << r.err;
  }
}

TEST(Control, SetRefusesOverflowingDurations) {
  Daemon d;
  d.write_rule("a.lua", R"(watch "s" { start = { "sleep", "1000" } })");
  ASSERT_TRUE(d.start()) << d.output();
  for (const char* key : {"restart.delay", "restart.within", "restart.reset", "restart.backoff", "rearm"}) {
    for (const char* v : {"99999999999d", "inf", "nan", "9223372036854775807", "1e400s"}) {
      auto r = d.cli({"set", "s", key, v});
      EXPECT_EQ(r.code, 1) << key << " " << v << ": " << r.out;
    }
  }
  auto r = d.cli({"set", "s", "restart.delay", "99999999999d"});
  EXPECT_NE(r.err.find("longer than the maximum of 100 days"), std::string::npos) << r.err;
  EXPECT_EQ(d.cli({"set", "s", "restart.delay", "100d"}).code, 0);
}

TEST(Check, ALibraryDeclarationPointsAtTheRuleThatCalledIt) {
  Daemon d;
  d.write_rule("lib/pool.lua",
               "local M = {}\n"
               "function M.make(name, n, spec)\n"
               "  for i = 1, n do watch(name .. i)(spec) end\n"
               "end\n"
               "return M\n");
  d.write_rule("workers.lua",
               "local pool = require 'pool'\n"
               "pool.make('w', 2, { start = 'true', restart = { limt = 1 } })\n");
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir()});
  EXPECT_EQ(r.code, 1);
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 2u) << r.err;
  for (const auto& l : lines) {
    EXPECT_NE(l.find("workers.lua:2: watch 'w"), std::string::npos) << l;
    EXPECT_NE(l.find("(declared at "), std::string::npos) << l;
    EXPECT_NE(l.find("lib/pool.lua:3)"), std::string::npos) << l;
  }
}

// The same class on the command line: seconds and sizes that are NaN,
// infinite or huge are usage errors (NaN passed `< min` checks: a NaN
// --scan-interval rescanned /proc in a tight loop, a NaN --rule-budget cut
// every callback off, --metrics-max-bytes 1e300 overflowed its cast). The
// rules path does not exist, so an accepted value exits 1, never hangs.
TEST(Cli, SecondsAndSizesRefuseNanAndHugeValues) {
  Daemon d;
  for (const char* opt : {"--scan-interval", "--reboot-interval", "--rule-budget",
                          "--metrics-interval", "--metrics-max-bytes"}) {
    for (const char* v : {"nan", "inf", "1e300", "-inf"}) {
      auto r = run_command({VIGIL_BINARY, "--socket", d.socket(), "run", "--rules",
                            d.dir() + "/no-rules", "--state-dir", d.state_dir(), opt, v});
      EXPECT_EQ(r.code, 2) << opt << " " << v << ": " << r.err;
      EXPECT_NE(r.err.find(opt), std::string::npos) << opt << " " << v << ": " << r.err;
    }
  }
}

// Issue 12 item 6: state checks sample one process; on a set they would
// pass `vigil check` and never run, so they are refused with file:line.
TEST(Check, StateChecksOnACountedWatchAreRefused) {
  Daemon d;
  d.write_rule(
      "c.lua",
      "watch \"ok\" { match = { name = \"x\" }, count = { max = 2 }, checks = false }\n"  // 1
      "watch \"cnt\" { match = { name = \"x\" }, count = { max = 2 },\n"                  // 2
      "  checks = { stopped = \"5s\" } }\n"                                               // 3
      "watch \"all\" { match = { name = \"y\", select = \"all\" }, on_state = \"alert\" }\n");
  auto r = run_command({VIGIL_BINARY, "check", d.rules_dir() + "/c.lua"});
  EXPECT_EQ(r.code, 1);
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 2u) << r.err;
  EXPECT_NE(
      lines[0].find("c.lua:2: watch 'cnt': 'checks' watch one process; this watch counts several"),
      std::string::npos)
      << r.err;
  EXPECT_NE(lines[1].find("c.lua:4: watch 'all': 'on_state' watches one process"),
            std::string::npos)
      << r.err;
}

// vigil.log.sink (the Lua side: schema, formatter crossing) and the file
// sinks (size rotation, reopening after logrotate moved the file).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "host/log/sink.hpp"
#include "host/loop/event_loop.hpp"
#include "lua/runtime.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

std::string temp_dir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("vigil-logsink-" + tag + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

RuntimeOptions opts() {
  RuntimeOptions o;
  o.stdlib_dir = VIGIL_SOURCE_DIR "/stdlib";
  o.callback_budget = 0.2;
  o.load_budget = 0.5;
  return o;
}

LoadResult load(RuleRuntime& rt, const std::string& dir, const std::string& text) {
  std::ofstream(dir + "/r.lua") << text;
  return rt.load(dir + "/r.lua");
}

Event sample() {
  Event ev;
  ev.time = 1795000000;
  ev.msg = Msg::ProcessStarted;
  ev.severity = Severity::Info;
  ev.watch = "api";
  ev.fields = {{"watch", "api"}, {"pid", 42}};
  ev.text = "api: started pid 42";
  return ev;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), {}};
}

}  // namespace

TEST(LogSinkLua, UnknownKeyIsAnErrorAtItsLine) {
  std::string dir = temp_dir("schema");
  RuleRuntime rt(opts(), HostContext{});
  auto res = load(rt, dir, "\nvigil.log.sink { kind = \"syslog\", adress = \"/dev/log\" }\n");
  ASSERT_FALSE(res.ok);
  EXPECT_NE(res.errors[0].find("r.lua:2:"), std::string::npos) << res.errors[0];
  EXPECT_NE(res.errors[0].find("unknown key 'adress'"), std::string::npos) << res.errors[0];
}

TEST(LogSinkLua, BadValuesAreRejected) {
  std::string dir = temp_dir("values");
  for (const char* bad : {"{ kind = \"sylog\" }", "{ kind = \"syslog\", address = \"host:514\" }",
                          "{ kind = \"syslog\", facility = \"local9\" }",
                          "{ kind = \"json\", path = \"relative.jsonl\" }",
                          "{ kind = \"json\", path = \"/x\", level = \"loud\" }",
                          "{ kind = \"console\", format = \"%s\" }"}) {
    RuleRuntime rt(opts(), HostContext{});
    EXPECT_FALSE(load(rt, dir, std::string("vigil.log.sink ") + bad + "\n").ok) << bad;
  }
}

TEST(LogSinkLua, FormatterRunsOnceLiveAndReportsErrors) {
  std::string dir = temp_dir("format");
  RuleRuntime rt(opts(), HostContext{});
  auto res =
      load(rt, dir,
           "vigil.log.sink { kind = \"syslog\", address = \"udp:127.0.0.1:514\", "
           "facility = \"local3\", queue = 50, level = \"warning\",\n"
           "  format = function(ev)\n"
           "    if ev.pid == 0 then error(\"no pid\") end\n"
           "    return ev.id .. \"|\" .. ev.watch .. \"|\" .. ev.pid .. \"|\" .. ev.message\n"
           "  end }\n");
  ASSERT_TRUE(res.ok) << res.errors[0];
  auto sinks = rt.take_sinks();
  ASSERT_EQ(sinks.size(), 1u);
  const SinkSpec& s = sinks[0];
  EXPECT_EQ(s.kind, "syslog");
  EXPECT_EQ(s.facility, "local3");
  EXPECT_EQ(s.queue, 50u);
  EXPECT_EQ(s.min_severity, Severity::Warning);
  EXPECT_NE(s.where.find("r.lua:1"), std::string::npos) << s.where;
  ASSERT_TRUE(s.format);
  std::string out, err;
  EXPECT_FALSE(s.format(sample(), out, err)) << "not live yet: no rule code runs";
  EXPECT_TRUE(err.empty());
  rt.go_live();
  ASSERT_TRUE(s.format(sample(), out, err)) << err;
  EXPECT_EQ(out, "VGL0101|api|42|api: started pid 42");
  Event bad = sample();
  bad.fields["pid"] = 0;
  EXPECT_FALSE(s.format(bad, out, err));
  EXPECT_NE(err.find("no pid"), std::string::npos) << err;
  std::string e2;
  EXPECT_FALSE(rt.run_string("vigil.log.sink { kind = \"console\" }", "=live", e2));
  EXPECT_NE(e2.find("while the rules load"), std::string::npos) << e2;
}

TEST(FileSink, RotatesBySizeKeepingK) {
  std::string dir = temp_dir("rotate");
  SinkSpec spec;
  spec.kind = "json";
  spec.path = dir + "/e.jsonl";
  spec.max_bytes = 1000;
  spec.keep = 2;
  std::string error;
  auto sink = make_sink(
      spec, nullptr, [](Msg, nlohmann::json) {}, error);
  ASSERT_TRUE(sink) << error;
  for (int i = 0; i < 40; ++i) sink->write(sample(), nullptr);
  EXPECT_TRUE(std::filesystem::exists(spec.path + ".1"));
  EXPECT_TRUE(std::filesystem::exists(spec.path + ".2"));
  EXPECT_FALSE(std::filesystem::exists(spec.path + ".3"));
  EXPECT_LE(std::filesystem::file_size(spec.path), 1000u);
  auto line = slurp(spec.path + ".1");
  EXPECT_NE(line.find("\"id\":\"VGL0101\""), std::string::npos) << line;
}

TEST(FileSink, ReopensAFileMovedAway) {
  std::string dir = temp_dir("reopen");
  SinkSpec spec;
  spec.kind = "file";
  spec.path = dir + "/vigil.log";
  std::string error;
  auto sink = make_sink(
      spec, nullptr, [](Msg, nlohmann::json) {}, error);
  ASSERT_TRUE(sink) << error;
  sink->write(sample(), nullptr);
  std::filesystem::rename(spec.path, spec.path + ".old");  // what logrotate does
  // The sink notices within about a second: write until the new file shows.
  auto end = std::chrono::steady_clock::now() + 5s;
  while (!std::filesystem::exists(spec.path) && std::chrono::steady_clock::now() < end) {
    sink->write(sample(), nullptr);
    std::this_thread::yield();
  }
  ASSERT_TRUE(std::filesystem::exists(spec.path));
  EXPECT_NE(slurp(spec.path).find(" info VGL0101 api: started pid 42"), std::string::npos);
}

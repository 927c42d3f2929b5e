// The rule runtime: budget, memory cap, sandbox, error locations, and the
// restart policy run inside the real runtime against replayed histories.
#include "lua/runtime.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "host/loop/event_loop.hpp"

using namespace vigil;

namespace {
RuntimeOptions opts() {
  RuntimeOptions o;
  o.stdlib_dir = VIGIL_SOURCE_DIR "/stdlib";
  o.callback_budget = 0.2;
  o.load_budget = 0.5;
  return o;
}

std::string write_rules(const std::string& name, const std::string& text) {
  auto dir = std::filesystem::temp_directory_path() / ("vigil-rt-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name) << text;
  return (dir / name).string();
}

// A runtime with its prelude loaded (an empty rule file).
struct Loaded {
  RuleRuntime rt{opts(), HostContext{}};
  Loaded() {
    auto res = rt.load(write_rules("empty.lua", "-- nothing\n"));
    EXPECT_TRUE(res.ok) << (res.errors.empty() ? "" : res.errors[0]);
  }
};
}  // namespace

TEST(Runtime, InfiniteLoopIsCutOffWithLocation) {
  Loaded l;
  std::string err;
  EXPECT_FALSE(l.rt.run_string("local x = 0\nwhile true do x = x + 1 end", "=loop.lua", err));
  EXPECT_NE(err.find("loop.lua:2:"), std::string::npos) << err;
  EXPECT_NE(err.find("budget"), std::string::npos) << err;
  // The state is still usable afterwards.
  EXPECT_TRUE(l.rt.run_string("return 1", "=after", err)) << err;
}

TEST(Runtime, PcallCannotSwallowTheBudget) {
  Loaded l;
  std::string err;
  EXPECT_FALSE(l.rt.run_string("for i = 1, 100 do pcall(function() while true do end end) end",
                               "=swallow", err));
  EXPECT_NE(err.find("budget"), std::string::npos) << err;
}

TEST(Runtime, MemoryIsCapped) {
  RuntimeOptions o = opts();
  o.memory_limit = 8u << 20;
  o.callback_budget = 10;  // only the memory cap may stop it, however loaded the machine
  RuleRuntime rt(o, HostContext{});
  ASSERT_TRUE(rt.load(write_rules("empty.lua", "")).ok);
  std::string err;
  EXPECT_FALSE(rt.run_string("local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 4096) .. i end",
                             "=hog", err));
  EXPECT_NE(err.find("memory"), std::string::npos) << err;
  EXPECT_LE(rt.memory_used(), 8u << 20);
  EXPECT_TRUE(rt.run_string("collectgarbage() return 1", "=after", err)) << err;
}

TEST(Runtime, SandboxRemovesDangerousFunctions) {
  Loaded l;
  std::string err;
  for (const char* probe :
       {"assert(os.exit == nil)", "assert(os.execute == nil)", "assert(io.popen == nil)",
        "assert(package.loadlib == nil)", "assert(dofile == nil)", "assert(loadfile == nil)",
        "assert(debug == nil)", "assert(string.dump == nil)",
        "assert(package.cpath == '')"}) {
    EXPECT_TRUE(l.rt.run_string(probe, "=probe", err)) << probe << ": " << err;
  }
  EXPECT_FALSE(l.rt.run_string("require 'socket.core'", "=c", err));
}

TEST(Runtime, ActionsAreRefusedWhileValidating) {
  Loaded l;
  std::string err;
  EXPECT_FALSE(l.rt.run_string("vigil.exec.restart_later('x', 0)", "=act", err));
  EXPECT_NE(err.find("not allowed while rules are being loaded"), std::string::npos) << err;
  EXPECT_FALSE(l.rt.run_string("vigil.exec.run({'/bin/true'})", "=act", err));
}

TEST(Runtime, LoadErrorsNameFileAndLine) {
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(write_rules(
      "bad.lua",
      "\n\nwatch \"w\" {\n  start = { \"sleep\", \"1\" },\n  restart = { limt = 3 },\n}\n"));
  ASSERT_FALSE(res.ok);
  ASSERT_EQ(res.errors.size(), 1u);
  EXPECT_NE(res.errors[0].find(
                "bad.lua:3: watch 'w'.restart: unknown key 'limt' (did you mean 'limit'?)"),
            std::string::npos)
      << res.errors[0];
}

TEST(Runtime, DeclarationsCarryTheNormalizedSpec) {
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(write_rules("spec.lua", R"(
watch "w" {
  start = "echo hi",
  env = { A = "1", N = 2 },
  umask = "027",
  stop = { signal = "INT", timeout = "1m30s", command = { "kill", "-INT", "1" } },
  log = { max_size = "2MB", keep = 5 },
})"));
  ASSERT_TRUE(res.ok) << res.errors[0];
  ASSERT_EQ(rt.declarations().size(), 1u);
  const auto& d = rt.declarations()[0];
  EXPECT_EQ(d.name, "w");
  EXPECT_EQ(d.spec.argv, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
  EXPECT_EQ(d.spec.env, (std::vector<std::pair<std::string, std::string>>{{"A", "1"}, {"N", "2"}}));
  EXPECT_EQ(d.spec.umask, 027);
  EXPECT_EQ(d.spec.stop_signal, 2);
  EXPECT_DOUBLE_EQ(d.spec.stop_timeout, 90);
  ASSERT_EQ(d.spec.stop_command.size(), 3u);
  EXPECT_TRUE(d.spec.stop_command[0].ends_with("/kill")) << d.spec.stop_command[0];  // resolved
  EXPECT_EQ(d.spec.stop_command[2], "1");
  EXPECT_EQ(d.spec.log_max_bytes, 2u << 20);
  EXPECT_EQ(d.spec.log_keep, 5);
  EXPECT_NE(d.where.find("spec.lua:2"), std::string::npos) << d.where;
}

// The Lua tests in tests/lua/ run inside the real runtime; each file
// raises on the first failed assertion.
class LuaSuite : public ::testing::TestWithParam<std::string> {};

TEST_P(LuaSuite, Passes) {
  RuntimeOptions o = opts();
  o.load_budget = 5;
  RuleRuntime rt(o, HostContext{});
  auto res = rt.load(std::string(VIGIL_SOURCE_DIR "/tests/lua/") + GetParam());
  EXPECT_TRUE(res.ok) << (res.errors.empty() ? "" : res.errors[0]);
}

INSTANTIATE_TEST_SUITE_P(Lua, LuaSuite,
                         ::testing::Values("policy_test.lua", "duration_test.lua",
                                           "schema_test.lua"),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.find('.'));
                           return n;
                         });

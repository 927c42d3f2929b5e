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

// A check shows every error: the declarations record theirs and the file
// goes on; each error keeps its own line. (The Lua tests in tests/lua/
// run as their own ctest tests: tests/lua/CMakeLists.txt.)
TEST(Runtime, LoadReportsEveryBadDeclaration) {
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(write_rules("three.lua",
                                 "watch \"a\" { start = 1 }\n"
                                 "watch \"ok\" { start = \"true\" }\n"
                                 "watch \"b\" { start = \"true\", rearm = 2^63 }\n"
                                 "group \"g\" { }\n"));
  ASSERT_FALSE(res.ok);
  ASSERT_EQ(res.errors.size(), 3u);
  EXPECT_NE(res.errors[0].find("three.lua:1: watch 'a'.start"), std::string::npos) << res.errors[0];
  EXPECT_NE(res.errors[1].find("three.lua:3: watch 'b'.rearm: duration"), std::string::npos)
      << res.errors[1];
  EXPECT_NE(res.errors[2].find("three.lua:4: group 'g': no members"), std::string::npos)
      << res.errors[2];
}

// A watch a library in lib/ declares: the error is at the rule file's
// line that called the library (the line to fix), and names the
// library's line too; `where` is the rule file's.
TEST(Runtime, LibraryDeclarationsPointAtTheCallingRule) {
  std::string rules = write_rules("libcall.lua",
                                  "local pool = require 'pool'\n"
                                  "pool.make('ok', { start = 'true' })\n"
                                  "pool.make('bad', { start = 'true', rearm = 'soon' })\n");
  std::string dir = rules.substr(0, rules.rfind('/'));
  std::filesystem::create_directories(dir + "/lib");
  std::ofstream(dir + "/lib/pool.lua") << "local M = {}\n"
                                          "function M.make(name, spec)\n"
                                          "  watch(name)(spec)\n"
                                          "end\n"
                                          "return M\n";
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(rules);
  ASSERT_FALSE(res.ok);
  ASSERT_EQ(res.errors.size(), 1u);
  EXPECT_NE(res.errors[0].find("libcall.lua:3: watch 'bad'.rearm: bad duration \"soon\""),
            std::string::npos)
      << res.errors[0];
  EXPECT_NE(res.errors[0].find("(declared at " + dir + "/lib/pool.lua:3)"), std::string::npos)
      << res.errors[0];
  ASSERT_EQ(rt.declarations().size(), 1u);
  EXPECT_NE(rt.declarations()[0].where.find("libcall.lua:2"), std::string::npos)
      << rt.declarations()[0].where;
  std::filesystem::remove_all(dir + "/lib");
}

// The cross-checks after the last file record every error too.
TEST(Runtime, LoadReportsEveryCrossCheckError) {
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(write_rules("cross.lua",
                                 "watch \"a\" { start = \"true\" }\n"
                                 "group \"g1\" { \"a\", \"nope\" }\n"
                                 "group \"g2\" { \"a\" }\n"));
  ASSERT_FALSE(res.ok);
  ASSERT_EQ(res.errors.size(), 2u) << res.errors[0];
  EXPECT_NE(res.errors[0].find("cross.lua:2: group 'g1': no watch or group named 'nope'"),
            std::string::npos)
      << res.errors[0];
  EXPECT_NE(res.errors[1].find("cross.lua:3: group 'g2': 'a' is already a member of group 'g1'"),
            std::string::npos)
      << res.errors[1];
}

TEST(Runtime, TimersRefuseNonFiniteAndHugeDelays) {
  Loaded l;
  std::string err;
  for (const char* v : {"1/0", "-1/0", "0/0", "2^63", "math.maxinteger", "-1", "1e300"}) {
    EXPECT_FALSE(l.rt.run_string(std::string("vigil.timer.after(") + v + ", function() end)", "=t", err))
        << v;
    EXPECT_NE(err.find("vigil.timer: delay"), std::string::npos) << v << ": " << err;
    EXPECT_FALSE(l.rt.run_string(std::string("vigil.timer.every(") + v + ", function() end)", "=t", err))
        << v;
  }
  EXPECT_TRUE(l.rt.run_string("vigil.timer.after(8640000, function() end)", "=t", err)) << err;
}

// What the host reads of api { } and peer declarations, and the
// authorization hook crossing: a hook that fails, answers a non-boolean
// or overruns its budget denies.
TEST(Runtime, ApiPeersAndTheAuthorizeHook) {
  {
    Loaded none;
    EXPECT_TRUE(none.rt.api().is_null());
    EXPECT_EQ(none.rt.peers(), nlohmann::json::array());
  }
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(write_rules("api.lua", R"(
api { listen = "127.0.0.1:9443", cert = "/e/c.pem", key = "/e/k.pem", operators = { "ops" } }
peer "nodeb" { url = "https://10.1.0.2:8443", ca = "/e/ca.pem" }
peer "nodec" { url = "https://10.1.0.3:8443", ca = "/e/ca.pem", every = "2s" }
)"));
  ASSERT_TRUE(res.ok) << res.errors[0];
  auto api = rt.api();
  EXPECT_EQ(api.value("listen", ""), "127.0.0.1:9443");
  EXPECT_EQ(api["operators"], nlohmann::json::array({"ops"}));
  auto peers = rt.peers();
  ASSERT_EQ(peers.size(), 2u);
  EXPECT_EQ(peers[1].value("name", ""), "nodec");
  EXPECT_EQ(peers[1].value("every", 0.0), 2.0);

  nlohmann::json reader = {{"kind", "certificate"}, {"name", "console-1"}, {"tls", true}};
  nlohmann::json ops = {{"kind", "token"}, {"name", "ops"}, {"tls", true}};
  EXPECT_TRUE(rt.authorize(reader, "GET", "/v1/status").allowed);
  auto no = rt.authorize(reader, "POST", "/v1/watches/db/restart");
  EXPECT_FALSE(no.allowed);
  EXPECT_NE(no.reason.find("may read only"), std::string::npos) << no.reason;
  EXPECT_TRUE(rt.authorize(ops, "POST", "/v1/watches/db/restart").allowed);

  std::string err;
  for (const char* hook : {"function vigil.api.authorize() error('boom') end",
                           "function vigil.api.authorize() return 'yes' end",
                           "function vigil.api.authorize() while true do end end"}) {
    ASSERT_TRUE(rt.run_string(hook, "hook", err)) << err;
    auto v = rt.authorize(ops, "GET", "/v1/status");
    EXPECT_FALSE(v.allowed) << hook;
    EXPECT_FALSE(v.reason.empty()) << hook;
  }
}

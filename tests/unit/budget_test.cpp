// The rule runtime's promises against rules that try to get round them:
// the time budget cannot be escaped (pcall, xpcall, __tostring, __gc,
// __close, coroutines, long C calls), every chunk is loaded as text, and a
// state that is not live changes nothing. All run in the real runtime.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "host/loop/event_loop.hpp"
#include "lua/runtime.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

RuntimeOptions opts() {
  RuntimeOptions o;
  o.stdlib_dir = VIGIL_SOURCE_DIR "/stdlib";
  o.callback_budget = 0.2;
  o.load_budget = 0.5;
  return o;
}

std::string test_dir() {
  auto dir = std::filesystem::temp_directory_path() / ("vigil-budget-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string write_rules(const std::string& name, const std::string& text) {
  auto path = std::filesystem::path(test_dir()) / name;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
  return path.string();
}

// A test that would hang on a regression fails instead: past `limit` the
// process reports what it was doing and exits (ctest runs each test in
// its own process).
class HangGuard {
 public:
  explicit HangGuard(std::string what, std::chrono::seconds limit = 20s)
      : what_(std::move(what)), thread_([this, limit] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            fprintf(stderr, "HANG: %s did not return within %lds\n", what_.c_str(),
                    static_cast<long>(limit.count()));
            fflush(stderr);
            _exit(3);
          }
        }) {}
  ~HangGuard() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// A runtime with its prelude loaded (an empty rule file).
struct Loaded {
  RuleRuntime rt;
  explicit Loaded(RuntimeOptions o = opts()) : rt(o, HostContext{}) {
    auto res = rt.load(write_rules("empty.lua", "-- nothing\n"));
    EXPECT_TRUE(res.ok) << (res.errors.empty() ? "" : res.errors[0]);
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs `code` as a callback that must be cut off by the budget; returns
// the error. The state must still work afterwards.
std::string expect_cut(const std::string& code, double max_seconds = 5) {
  HangGuard guard(code);
  std::string err;
  {
    Loaded l;
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(l.rt.run_string(code, "=escape.lua", err)) << code;
    double took = seconds_since(t0);
    EXPECT_LT(took, max_seconds) << code;
    EXPECT_NE(err.find("budget"), std::string::npos) << code << "\n-> " << err;
    std::string after;
    EXPECT_TRUE(l.rt.run_string("local n = 0 for i = 1, 1000 do n = n + i end return n", "=after",
                                after))
        << code << "\n-> " << after;
  }  // and closing the state does not hang either
  return err;
}

// Runs `code`, which must fail with an error containing `needle`.
void expect_error(Loaded& l, const std::string& code, const std::string& needle,
                  const std::string& name = "=t.lua") {
  std::string err;
  EXPECT_FALSE(l.rt.run_string(code, name, err)) << code;
  EXPECT_NE(err.find(needle), std::string::npos) << code << "\n-> " << err;
}

}  // namespace

TEST(Budget, PcallInALoopCannotSwallowTheCut) {
  expect_cut("while true do pcall(function() while true do end end) end");
}

TEST(Budget, XpcallInALoopCannotSwallowTheCut) {
  expect_cut("while true do xpcall(function() while true do end end, function(m) return m end) end");
}

TEST(Budget, XpcallHandlerThatLoopsIsCut) {
  expect_cut("while true do xpcall(function() error('x') end, function() while true do end end) end");
  expect_cut("xpcall(function() while true do end end, function() while true do end end)");
}

TEST(Budget, ErrorObjectWhoseTostringLoopsIsCut) {
  // The host's traceback handler converts the error object: it must not
  // run the metamethod unbudgeted.
  std::string err = expect_cut(
      "local o = setmetatable({}, {__tostring = function() while true do end end})\nerror(o)");
  EXPECT_NE(err.find("escape.lua:1:"), std::string::npos) << err;
  expect_cut(
      "while true do pcall(error, setmetatable({}, {__tostring = function() while true do end "
      "end})) end");
}

TEST(Budget, ErrorObjectWithTostringIsStillShownBeforeExpiry) {
  Loaded l;
  std::string err;
  EXPECT_FALSE(l.rt.run_string("error(setmetatable({}, {__tostring = function() return 'mine' end}))",
                               "=obj", err));
  EXPECT_NE(err.find("mine"), std::string::npos) << err;
}

TEST(Budget, CloseVariablesThatLoopAreCut) {
  expect_cut(
      "while true do pcall(function()\n"
      "  local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
      "end) end");
}

TEST(Budget, FinalizersWrittenInLuaAreRefused) {
  // Lua runs __gc with hooks off (at any allocation, at collectgarbage,
  // at lua_close): no budget could stop one, so rules cannot set one.
  HangGuard guard("__gc");
  {
    Loaded l;
    std::string err;
    EXPECT_FALSE(l.rt.run_string(
        "setmetatable({}, {__gc = function() while true do end end}) collectgarbage()", "=gc.lua",
        err));
    EXPECT_NE(err.find("gc.lua:1:"), std::string::npos) << err;
    EXPECT_NE(err.find("__gc"), std::string::npos) << err;
    // Nor through the metatable of a userdata the host made.
    EXPECT_FALSE(l.rt.run_string(
        "getmetatable(io.stdout).__gc = function() while true do end end", "=ud.lua", err));
    EXPECT_TRUE(l.rt.run_string("assert(getmetatable(io.stdout) == false)", "=ud2.lua", err))
        << err;
    EXPECT_TRUE(l.rt.run_string("local f = io.open('/dev/null') f = nil collectgarbage()",
                                "=ud3.lua", err))
        << err;
    // Ordinary metatables still work.
    EXPECT_TRUE(l.rt.run_string(
        "local t = setmetatable({}, {__index = function() return 7 end}) assert(t.x == 7)",
        "=mt.lua", err))
        << err;
    expect_error(l, "setmetatable(setmetatable({}, {__metatable = 1}), {})", "protected metatable",
                 "=p.lua");
  }
}

TEST(Budget, FinalizerAtLoadIsRefusedWithFileLine) {
  HangGuard guard("__gc at load");
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(write_rules("gc_rule.lua", "\nlocal keep = setmetatable({}, {__gc = function() "
                                                "while true do end end})\n"));
  ASSERT_FALSE(res.ok);
  EXPECT_NE(res.errors[0].find("gc_rule.lua:2:"), std::string::npos) << res.errors[0];
}

TEST(Budget, CoroutineMadeBeforeExpiryCannotSwallowTheCut) {
  expect_cut(
      "local co = coroutine.create(function() while true do pcall(function() while true do end "
      "end) end end)\ncoroutine.resume(co)");
  expect_cut(
      "local co = coroutine.wrap(function() while true do pcall(function() while true do end end) "
      "end end)\nco()");
  // The main thread keeps making fresh coroutines that loop under pcall.
  expect_cut(
      "while true do coroutine.resume(coroutine.create(function() while true do end end)) end");
  // A coroutine made long before, resumed after the cut, runs no further.
  expect_cut(
      "local co = coroutine.create(function() while true do pcall(string.rep, 'x', 1e6) "
      "coroutine.yield() end end)\n"
      "while true do pcall(function() while true do end end) coroutine.resume(co) end");
}

TEST(Budget, LongCCallsInALoopAreCutNearTheDeadline) {
  // Each string.rep takes milliseconds: 1000 instructions between two
  // count hooks would be seconds. The cut must come close to the budget.
  expect_cut("while true do pcall(string.rep, 'x', 1 << 25) end", 1.0);
  expect_cut("local t = {} for i = 1, 512 do t[i] = string.rep('y', 1 << 16) end\n"
             "while true do pcall(table.concat, t) end",
             1.0);
}

// Single C calls of the standard library that loop over a count the rule
// chooses, touching no Lua function on the way (so no hook can fire
// inside them): each runs under the budget, checked every few thousand
// iterations, or refuses an absurd count. On the stock functions each of
// these ran for hours (2^63 iterations) or seconds.
TEST(Budget, StringRepOfEmptyPiecesReturnsAtOnce) {
  HangGuard guard("string.rep of empty pieces");
  Loaded l;
  std::string err;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(l.rt.run_string("assert(string.rep('', math.maxinteger) == '')\n"
                              "assert(string.rep('', math.maxinteger, '') == '')\n"
                              "assert(('x'):rep(3, '') == 'xxx' and ('ab'):rep(3, ', ') == 'ab, ab, ab')\n"
                              "assert(('x'):rep(0) == '' and ('x'):rep(-1, 'y') == '' and ('x'):rep(1, 'y') == 'x')\n"
                              "assert(('-'):rep(100000) == ('-'):rep(50000):rep(2))",
                              "=rep.lua", err))
      << err;
  EXPECT_LT(seconds_since(t0), 1.0);
  // Still refused like stock Lua: too large, or over the memory cap.
  expect_error(l, "string.rep('xx', math.maxinteger)", "resulting string too large", "=rep.lua");
  expect_error(l, "string.rep('x', 1 << 40)", "not enough memory", "=rep.lua");
  expect_error(l, "string.rep({}, 2)", "bad argument #1 to 'rep'", "=rep.lua");
  // A loop of large reps is cut near the deadline.
  expect_cut("while true do local s = ('ab'):rep(1 << 24, 'c') end", 1.0);
}

TEST(Budget, TableMoveOverAHugeRangeIsCut) {
  expect_cut("table.move({}, 1, math.maxinteger - 1, 2)", 1.0);  // overlapping: from the end
  expect_cut("table.move({}, 2, math.maxinteger - 1, 1)", 1.0);
  expect_cut("table.move({}, 1, math.maxinteger - 1, 2, {})", 1.0);
  Loaded l;
  std::string err;
  EXPECT_TRUE(l.rt.run_string(
      "local a = table.move({1, 2, 3}, 1, 3, 2) assert(a[1] == 1 and a[2] == 1 and a[3] == 2 and a[4] == 3)\n"
      "local b = table.move({1, 2, 3}, 2, 3, 1) assert(b[1] == 2 and b[2] == 3 and b[3] == 3)\n"
      "local c = {} assert(table.move({7, 8}, 1, 2, 5, c) == c and c[5] == 7 and c[6] == 8)\n"
      "assert(#table.move({1}, 3, 2, 1) == 1)\n"
      "local log = {} local p = setmetatable({}, {__index = function(_, k) return k * 10 end,\n"
      "  __newindex = function(_, k, v) log[#log + 1] = k .. '=' .. v end})\n"
      "table.move(p, 1, 2, 3) assert(table.concat(log, ',') == '3=10,4=20')",
      "=move.lua", err))
      << err;
  expect_error(l, "table.move({}, -1, math.maxinteger, 1)", "too many elements to move", "=m.lua");
  expect_error(l, "table.move({}, 1, 2, math.maxinteger)", "destination wrap around", "=m.lua");
  expect_error(l, "table.move(1, 1, 2, 3)",
               "bad argument #1 to 'move' (table expected, got number)", "=m.lua");
}

TEST(Budget, TableInsertAndRemoveUnderAHugeLengthAreCut) {
  const std::string huge = "local t = setmetatable({}, {__len = function() return math.maxinteger - 1 end})\n";
  expect_cut(huge + "table.insert(t, 1, 'x')", 1.0);
  expect_cut(huge + "table.remove(t, 1)", 1.0);
  Loaded l;
  std::string err;
  EXPECT_TRUE(l.rt.run_string(
      "local t = {1, 2, 3} table.insert(t, 4) table.insert(t, 1, 0) table.insert(t, 3, 1.5)\n"
      "assert(table.concat(t, ',') == '0,1,1.5,2,3,4')\n"
      "assert(table.remove(t) == 4 and table.remove(t, 1) == 0 and table.concat(t, ',') == '1,1.5,2,3')\n"
      "assert(table.remove({}) == nil and table.remove({}, 0) == nil and #t == 4)\n"
      "local e = {} assert(table.remove(e, #e + 1) == nil)",
      "=ins.lua", err))
      << err;
  expect_error(l, "table.insert({}, 5, 'x')",
               "bad argument #2 to 'insert' (position out of bounds)", "=i.lua");
  expect_error(l, "table.insert({}, 1, 2, 3)", "wrong number of arguments to 'insert'", "=i.lua");
  expect_error(l, "table.remove({1}, 5)", "bad argument #2 to 'remove' (position out of bounds)",
               "=r.lua");
}

TEST(Budget, TableSortOfAHugeTableIsCut) {
  // The table is built at load time (a longer budget, a larger cap); the
  // sort of its 8 million numbers took seconds in one C call.
  HangGuard guard("table.sort");
  RuntimeOptions o = opts();
  o.load_budget = 30;
  o.memory_limit = 1024u << 20;
  RuleRuntime rt(o, HostContext{});
  auto res = rt.load(write_rules(
      "big_table.lua", "big = {} for i = 1, 8000000 do big[i] = (i * 7919) % 1000003 end\n"));
  ASSERT_TRUE(res.ok) << (res.errors.empty() ? "" : res.errors[0]);
  std::string err;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(rt.run_string("\ntable.sort(big)", "=sort.lua", err));
  EXPECT_LT(seconds_since(t0), 1.0);
  EXPECT_NE(err.find("sort.lua:2: rule budget exceeded"), std::string::npos) << err;
  // Sorting still sorts, with and without an order function, and refuses
  // what stock Lua refuses.
  EXPECT_TRUE(rt.run_string(
      "big = nil collectgarbage()\n"
      "local t = {} for i = 1, 2000 do t[i] = (i * 7919) % 1009 end table.sort(t)\n"
      "for i = 2, #t do assert(t[i - 1] <= t[i]) end\n"
      "table.sort(t, function(a, b) return a > b end) for i = 2, #t do assert(t[i - 1] >= t[i]) end\n"
      "local s = {'b', 'c', 'a'} table.sort(s) assert(table.concat(s) == 'abc')\n"
      "local one = {1} table.sort(one) table.sort({})",
      "=sort.lua", err))
      << err;
  EXPECT_FALSE(rt.run_string("table.sort({1, 'a', 2})", "=s.lua", err));
  EXPECT_NE(err.find("attempt to compare"), std::string::npos) << err;
  EXPECT_FALSE(rt.run_string("table.sort({2, 1}, 3)", "=s.lua", err));
  EXPECT_NE(err.find("bad argument #2 to 'sort' (function expected, got number)"), std::string::npos)
      << err;
  EXPECT_FALSE(rt.run_string(
      "table.sort(setmetatable({}, {__len = function() return math.maxinteger end}))", "=s.lua", err));
  EXPECT_NE(err.find("array too big"), std::string::npos) << err;
}

TEST(Budget, RequireOverAHugePackagePathIsCut) {
  // package.searchpath tries every template of package.path: millions of
  // them are millions of open() calls in one C call (seconds).
  std::string err = expect_cut("package.path = ('/n/?;'):rep(2000000)\nrequire 'nothing'", 1.0);
  EXPECT_NE(err.find("escape.lua:2:"), std::string::npos) << err;
  err = expect_cut("local p = ('/n/?;'):rep(4000000)\npackage.searchpath('x', p)", 1.0);
  EXPECT_NE(err.find("escape.lua:2:"), std::string::npos) << err;
}

TEST(Budget, CCallsThroughMetamethodsAreCut) {
  // A loop inside a C function that calls a metamethod for each item is
  // cut at the call after the deadline, even when the metamethod is C.
  const std::string idx = "local t = setmetatable({}, {__index = type})\n";
  expect_cut(idx + "table.concat(t, '', 1, math.maxinteger)", 1.0);
}

TEST(Budget, ParsingAHugeChunkIsCutNearTheDeadline) {
  // One load of tens of megabytes of source is seconds inside the parser.
  std::string err = expect_cut(
      "local src = string.rep('a = 1 ', 8e6)\nwhile true do local f = load(src) end", 1.0);
  // Line 2, or line 1 when the machine is so busy that string.rep takes the budget.
  EXPECT_NE(err.find("escape.lua:"), std::string::npos) << err;
}

TEST(Budget, RequiringAHugeFileIsCutNearTheDeadline) {
  HangGuard guard("huge require");
  Loaded l;  // its rules' lib/ is test_dir()/lib
  std::string huge = test_dir() + "/lib/huge.lua";
  std::filesystem::create_directories(test_dir() + "/lib");
  {
    std::ofstream f(huge);
    std::string line;
    for (int i = 0; i < 680; ++i) line += "a = 1 ";
    line += "\n";
    for (int i = 0; i < 12000; ++i) f << line;  // 48 MiB of statements
  }
  std::string err;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(l.rt.run_string("\nwhile true do pcall(require, 'huge') end", "=req.lua", err));
  EXPECT_LT(seconds_since(t0), 1.0);
  EXPECT_NE(err.find("budget"), std::string::npos) << err;
  std::filesystem::remove(huge);
}

TEST(Budget, CutAtLoadTimeEvenWhenCaught) {
  HangGuard guard("load");
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(
      write_rules("loop_rule.lua", "while true do pcall(function() while true do end end) end\n"));
  ASSERT_FALSE(res.ok);
  EXPECT_NE(res.errors[0].find("budget"), std::string::npos) << res.errors[0];
  EXPECT_NE(res.errors[0].find("loop_rule.lua:1:"), std::string::npos) << res.errors[0];
}

// Text only: require, load and every other way in refuse bytecode.
namespace {
// "return 'bytecode ran'" compiled by Lua 5.4 (x86-64): what a rule could
// have written with string.dump.
const char kBytecodeBytes[] = "\x1b\x4c\x75\x61\x54\x00\x19\x93\x0d\x0a\x1a\x0a\x04\x08\x08\x78\x56\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x28\x77\x40\x01\x80\x80\x80\x00\x01\x02\x84\x51\x00\x00\x00\x03\x00\x00\x00\x46\x00\x02\x01\x46\x00\x01\x01\x81\x04\x8d\x62\x79\x74\x65\x63\x6f\x64\x65\x20\x72\x61\x6e\x81\x01\x00\x00\x80\x80\x80\x80\x80";
const std::string kBytecode(kBytecodeBytes, sizeof kBytecodeBytes - 1);
}  // namespace

TEST(Sandbox, RequireRefusesBytecodeNamingTheFile) {
  HangGuard guard("require bytecode");
  std::string dir = test_dir() + "/bc";
  std::filesystem::create_directories(dir + "/lib");
  std::ofstream(dir + "/lib/evil.lua", std::ios::binary) << kBytecode;
  std::ofstream(dir + "/a.lua") << "\nlocal m = require 'evil'\nassert(m ~= 'bytecode ran')\n";
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(dir + "/a.lua");
  ASSERT_FALSE(res.ok);
  EXPECT_NE(res.errors[0].find("a.lua:2:"), std::string::npos) << res.errors[0];
  EXPECT_NE(res.errors[0].find("lib/evil.lua"), std::string::npos) << res.errors[0];
  EXPECT_NE(res.errors[0].find("binary chunk"), std::string::npos) << res.errors[0];
}

TEST(Sandbox, MutatedBytecodeIsRefusedCleanly) {
  HangGuard guard("mutated bytecode");
  std::string dir = test_dir() + "/bcm";
  std::filesystem::create_directories(dir + "/lib");
  std::ofstream(dir + "/a.lua") << "require 'mut'\n";
  uint32_t seed = 12345;
  for (int round = 0; round < 60; ++round) {
    std::string b = kBytecode;
    for (int k = 0; k < 1 + round % 4; ++k) {
      seed = seed * 1103515245 + 12345;
      size_t at = 1 + (seed >> 8) % (b.size() - 1);  // keep the signature byte
      b[at] = static_cast<char>(seed >> 24);
    }
    std::ofstream(dir + "/lib/mut.lua", std::ios::binary | std::ios::trunc) << b;
    RuleRuntime rt(opts(), HostContext{});
    auto res = rt.load(dir + "/a.lua");
    ASSERT_FALSE(res.ok) << round;
    EXPECT_NE(res.errors[0].find("binary chunk"), std::string::npos) << res.errors[0];
  }
}

TEST(Sandbox, LoadIsTextOnlyWhateverTheMode) {
  Loaded l;
  std::string err;
  std::string code = "local bc = ...\n";
  // run_string has no arguments: pass the bytecode through a global.
  std::string esc;
  for (unsigned char c : kBytecode) {
    char buf[8];
    snprintf(buf, sizeof buf, "\\%03u", c);
    esc += buf;
  }
  for (const char* mode : {"nil", "'b'", "'bt'", "'t'"}) {
    std::string probe = "local f, e = load('" + esc + "', 'bc', " + mode +
                        ")\nassert(f == nil, 'bytecode loaded')\nassert(e:find('binary chunk'), e)";
    EXPECT_TRUE(l.rt.run_string(probe, "=load", err)) << mode << ": " << err;
  }
  // A text chunk still sees the globals when no env is given.
  EXPECT_TRUE(l.rt.run_string("assert(load('return print')() == print)", "=env", err)) << err;
  EXPECT_TRUE(l.rt.run_string("local t = {x = 1} assert(load('return x', 'c', 't', t)() == 1)",
                              "=env2", err))
      << err;
  // A searcher a rule adds can only load text either.
  EXPECT_TRUE(l.rt.run_string("table.insert(package.searchers, 1, function(n) return load('" + esc +
                                  "', n, 'b') end)\nlocal ok, e = pcall(require, 'nothing')\n"
                                  "assert(not ok)",
                              "=searcher", err))
      << err;
}

// A state that is not live (vigil check, a reload candidate) changes nothing.
TEST(Sandbox, NothingIsWrittenWhileNotLive) {
  HangGuard guard("writes");
  std::string target = test_dir() + "/written-by-rule";
  std::filesystem::remove(target);
  Loaded l;
  std::string err;
  for (std::string mode : {"w", "a", "r+", "w+", "a+", "wb"}) {
    EXPECT_FALSE(l.rt.run_string("io.open('" + target + "', '" + mode + "')", "=w.lua", err))
        << mode;
    EXPECT_NE(err.find("w.lua:1: io.open('" + target + "', '" + mode +
                       "') is not allowed while rules are being loaded or checked"),
              std::string::npos)
        << err;
  }
  EXPECT_FALSE(std::filesystem::exists(target));
  expect_error(l, "io.write('x')", "io.write is not allowed while rules are being loaded",
               "=w.lua");
  expect_error(l, "io.stdout:write('x')", "file:write is not allowed while rules are being loaded",
               "=w.lua");
  EXPECT_FALSE(l.rt.run_string("local w = io.stderr.write w(io.stderr, 'x')", "=w.lua", err));
  EXPECT_FALSE(l.rt.run_string("package.loaded.io.open('" + target + "', 'w')", "=w.lua", err));
  // What the sandbox removed is not reachable another way.
  for (const char* probe :
       {"assert(package.loaded.os.remove == nil and package.loaded.os.rename == nil)",
        "assert(package.loaded.os.execute == nil and package.loaded.io.popen == nil)",
        "assert(io.output == nil and io.stdin == nil and getmetatable(io.stdout) == false)"})
    EXPECT_TRUE(l.rt.run_string(probe, "=p", err)) << probe << ": " << err;
  // Reading is fine.
  EXPECT_TRUE(l.rt.run_string("local f = assert(io.open('" VIGIL_SOURCE_DIR
                              "/CMakeLists.txt')) assert(#f:read('a') > 0) f:close()",
                              "=r", err))
      << err;
  // Once live, rules may write files.
  l.rt.go_live();
  EXPECT_TRUE(l.rt.run_string("local f = assert(io.open('" + target +
                                  "', 'w')) f:write('ok') f:close()",
                              "=live", err))
      << err;
  EXPECT_TRUE(std::filesystem::exists(target));
}

TEST(Sandbox, NothingBlocksOnStdinOrAFifo) {
  HangGuard guard("stdin / fifo");
  std::string fifo = test_dir() + "/fifo";
  std::filesystem::remove(fifo);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Loaded l;
  std::string err;
  EXPECT_TRUE(l.rt.run_string("local f, e = io.open('" + fifo +
                                  "')\nassert(f == nil and e:find('not a regular file'), e)",
                              "=fifo", err))
      << err;
  expect_error(l, "for l in io.lines('" + fifo + "') do end", "not a regular file", "=fifo.lua");
  expect_error(l, "io.read()", "standard input", "=stdin.lua");
  expect_error(l, "for l in io.lines() do end", "standard input", "=stdin.lua");
  EXPECT_TRUE(l.rt.run_string("assert(io.open('/dev/null'))", "=null", err)) << err;
  std::filesystem::remove(fifo);
}

// Every file the Lua layer opens (rule files, require's search and load,
// io.open and io.lines) is opened without blocking and refused, naming
// the path, unless it is a regular file: a FIFO would block the daemon in
// open() until a writer came, and a read of it until one wrote.
TEST(Sandbox, ARuleFileThatIsAFifoIsRefusedNamingIt) {
  HangGuard guard("a rule file that is a FIFO");
  std::string dir = test_dir() + "/fiforules";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/a.lua") << "-- fine\n";
  ASSERT_EQ(mkfifo((dir + "/b.lua").c_str(), 0600), 0);
  RuleRuntime rt(opts(), HostContext{});
  auto res = rt.load(dir);
  ASSERT_FALSE(res.ok);
  ASSERT_EQ(res.errors.size(), 1u);
  EXPECT_NE(res.errors[0].find("cannot open " + dir + "/b.lua: not a regular file (a FIFO)"),
            std::string::npos)
      << res.errors[0];
  // Named alone, too.
  RuleRuntime rt2(opts(), HostContext{});
  res = rt2.load(dir + "/b.lua");
  ASSERT_FALSE(res.ok);
  EXPECT_NE(res.errors[0].find("b.lua: not a regular file"), std::string::npos) << res.errors[0];
  std::filesystem::remove_all(dir);
}

TEST(Sandbox, RequireOfAFifoIsRefusedNamingIt) {
  HangGuard guard("require of a FIFO");
  Loaded l;  // its rules' lib/ is test_dir()/lib
  std::filesystem::create_directories(test_dir() + "/lib");
  std::string fifo = test_dir() + "/lib/fifomod.lua";
  std::filesystem::remove(fifo);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string err;
  EXPECT_FALSE(l.rt.run_string("\nrequire 'fifomod'", "=req.lua", err));
  EXPECT_NE(err.find("req.lua:2: error loading module 'fifomod' from file '" + fifo +
                     "': cannot open " + fifo + ": not a regular file (a FIFO)"),
            std::string::npos)
      << err;
  // A package.path template that names the FIFO itself (no '?').
  expect_error(l, "package.path = '" + fifo + "'\nrequire 'anything'", "not a regular file",
               "=req.lua");
  // package.searchpath finds it without opening it; what is not there is
  // reported as stock Lua does.
  EXPECT_TRUE(l.rt.run_string(
      "assert(package.searchpath('fifomod', '" + test_dir() + "/lib/?.lua') == '" + fifo + "')\n"
      "local f, e = package.searchpath('a.b', '/nonexistent/?.lua;/n2/?/init.lua')\n"
      "assert(f == nil and e == \"no file '/nonexistent/a/b.lua'\\n\\tno file '/n2/a/b/init.lua'\", e)\n"
      "assert(package.searchpath('a.b', '/x/?', '.', '_') == nil)\n"
      "assert(select(2, package.searchpath('a.b', '/x/?', '.', '_')) == \"no file '/x/a_b'\")\n"
      "assert(package.searchpath('empty', '" + test_dir() + "/?.lua') == '" + test_dir() + "/empty.lua')",
      "=search.lua", err))
      << err;
  std::filesystem::remove(fifo);
}

TEST(Sandbox, FilesAreOpenedWithoutBlocking) {
  HangGuard guard("io on FIFOs and /proc/kmsg");
  std::string fifo = test_dir() + "/iofifo";
  std::filesystem::remove(fifo);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string link = test_dir() + "/iofifo-link";
  std::filesystem::remove(link);
  std::filesystem::create_symlink(fifo, link);
  Loaded l;
  l.rt.go_live();  // write modes too
  std::string err;
  for (std::string path : {fifo, link}) {
    for (const char* mode : {"r", "w", "a", "r+"}) {
      EXPECT_TRUE(l.rt.run_string("local f, e = io.open('" + path + "', '" + mode +
                                      "')\nassert(f == nil and e == '" + path +
                                      ": not a regular file (a FIFO)', e)",
                                  "=fifo", err))
          << path << " " << mode << ": " << err;
    }
    EXPECT_FALSE(l.rt.run_string("for l in io.lines('" + path + "') do end", "=fifo.lua", err));
    EXPECT_NE(err.find("fifo.lua:1: cannot open file '" + path + "': not a regular file (a FIFO)"),
              std::string::npos)
        << err;
  }
  // Devices other than /dev/null, and sockets: refused too.
  EXPECT_TRUE(l.rt.run_string("local f, e = io.open('/dev/zero') assert(f == nil and e:find('character device'), e)\n"
                              "local g, e2 = io.open('/dev/tty') assert(g == nil, e2)\n"
                              "assert(io.open('/dev/null')):close()",
                              "=dev", err))
      << err;
  // /proc/kmsg is a "regular" file whose read waits for the next kernel
  // message: opened without blocking, a read returns what is there, or
  // nil and EAGAIN.
  if (access("/proc/kmsg", R_OK) == 0) {
    EXPECT_TRUE(l.rt.run_string("local f = io.open('/proc/kmsg')\n"
                                "if f then for i = 1, 100000 do if not f:read('l') then break end end f:close() end",
                                "=kmsg", err))
        << err;
  }
  // What rules do with files still works: read, lines, write, modes.
  std::string file = test_dir() + "/plain.txt";
  EXPECT_TRUE(l.rt.run_string(
      "local f = assert(io.open('" + file + "', 'w')) assert(io.type(f) == 'file')\n"
      "f:write('one\\ntwo\\n', 3, '\\n') f:close() assert(io.type(f) == 'closed file')\n"
      "local t = {} for line in io.lines('" + file + "') do t[#t + 1] = line end\n"
      "assert(table.concat(t, ',') == 'one,two,3', table.concat(t, ','))\n"
      "for a, b in io.lines('" + file + "', 1, 'l') do assert(a == 'o' and b == 'ne') break end\n"
      "local g = assert(io.open('" + file + "', 'a+')) g:write('x') g:seek('set') assert(g:read('a') == 'one\\ntwo\\n3\\nx') g:close()\n"
      "local h = assert(io.open('" + file + "', 'rb')) assert(h:read('n') == nil) h:close()\n"
      "local n, e = io.open('/nonexistent/x') assert(n == nil and e == '/nonexistent/x: No such file or directory', e)\n"
      "assert(not pcall(io.open, '" + file + "', 'rw'))\n"
      "local ok, e2 = pcall(io.lines, '/nonexistent/x') assert(not ok and e2:find(\"cannot open file '/nonexistent/x'\"), e2)\n"
      "local d = assert(io.open('" + test_dir() + "')) assert(d:read('a') == nil) d:close()",
      "=files.lua", err))
      << err;
  std::filesystem::remove(link);
  std::filesystem::remove(fifo);
}

// Pattern matching runs in Vigil's own step-counted matcher, so a
// pathological pattern is cut by the budget with the rule's file:line.
TEST(Pattern, PathologicalPatternsAreCutWithFileLine) {
  for (const char* code : {
           "local s = string.rep('a', 30000)\nreturn string.find(s, ('a*'):rep(10) .. 'b')",
           "local s = string.rep('a', 30000)\nreturn s:match(('.-'):rep(4) .. 'x')",
           "local s = string.rep('a', 30000)\nfor x in s:gmatch(('a-'):rep(6) .. 'b') do end",
           "local s = string.rep('a', 30000)\nreturn (s:gsub(('a*'):rep(8) .. 'c', 'x'))",
           "local s = string.rep('a', 30000)\n"
           "while true do pcall(string.find, s, ('a*'):rep(10) .. 'b') end",
       }) {
    std::string err = expect_cut(code, 2.0);
    EXPECT_NE(err.find("escape.lua:2:"), std::string::npos) << code << "\n-> " << err;
  }
}

TEST(Pattern, OrdinaryPatternsBehaveAsStock) {
  Loaded l;
  std::string err;
  const char* cases[] = {
      "assert(('hello world'):find('o w') == 5)",
      "assert(select('#', ('hello'):find('l')) == 2)",
      "local a, b, c = ('key = value'):match('^(%w+)%s*=%s*(%w+)()$') assert(a == 'key' and b == "
      "'value' and c == 12)",
      "local t = {} for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do t[#t + 1] = k .. v end "
      "assert(table.concat(t, ',') == 'a1,b2')",
      "assert(('abc'):gsub('%w', '%0%0') == 'aabbcc')",
      "assert(('hello world'):gsub('o', {o = '0'}) == 'hell0 w0rld')",
      "assert(('abc'):gsub('(b)', function(x) return x:upper() end) == 'aBc')",
      "assert(('THE (quick) fox'):find('%((%a+)%)') == 5)",
      "assert(('f(a(b)c)d'):match('%b()') == '(a(b)c)')",
      "assert(('THE (quick) fox'):gsub('%f[%a]%a+', 'W') == 'W (W) W')",
      "assert(not pcall(string.find, 'a', '(%'))",
      "assert(select(2, pcall(string.find, 'a', '[a')):find('malformed pattern'))",
      "assert(('x'):rep(3):gsub('', '-') == '-x-x-x-')",
      "local n = 0 for w in ('one two'):gmatch('%a+', 4) do n = n + 1 end assert(n == 1)",
  };
  for (const char* c : cases) EXPECT_TRUE(l.rt.run_string(c, "=case", err)) << c << ": " << err;
}

// Resolver (host/net/resolver.hpp): names looked up off the loop, numeric
// addresses without a lookup, cancellation, errors in words.
#include "host/net/resolver.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <optional>

using namespace vigil;
using namespace std::chrono_literals;

namespace {

bool run_until(EventLoop& loop, const std::function<bool()>& done, Duration limit = 20s) {
  MonoTime end = MonoClock::now() + limit;
  while (!done()) {
    if (MonoClock::now() > end) return false;
    loop.run_once(20ms);
  }
  return true;
}

ResolveResult resolve(EventLoop& loop, Resolver& r, const std::string& host, uint16_t port,
                      Resolver::Options options = {}) {
  std::optional<ResolveResult> got;
  r.resolve(host, port, options, [&](const ResolveResult& res) { got = res; });
  EXPECT_FALSE(got) << "answered from inside resolve()";
  EXPECT_TRUE(run_until(loop, [&] { return got.has_value(); }));
  return got.value_or(ResolveResult{});
}

}  // namespace

TEST(Resolver, NumericAddressesWithoutALookup) {
  EventLoop loop;
  Resolver r(loop);
  ResolveResult a = resolve(loop, r, "127.0.0.1", 514);
  ASSERT_TRUE(a.ok()) << a.error;
  ASSERT_EQ(a.addresses.size(), 1u);
  EXPECT_EQ(a.addresses[0].text(), "127.0.0.1:514");
  EXPECT_EQ(resolve(loop, r, "::1", 8443).addresses.at(0).text(), "[::1]:8443");
  EXPECT_EQ(resolve(loop, r, "[::1]", 8443).addresses.at(0).text(), "[::1]:8443");
  EXPECT_TRUE(numeric_address("10.1.0.2", 80));
  EXPECT_FALSE(numeric_address("nodeb", 80));
}

TEST(Resolver, ANameOffTheLoopAndAnUnresolvableOne) {
  EventLoop loop;
  auto r = Resolver::for_loop(loop);
  EXPECT_EQ(r, Resolver::for_loop(loop)) << "one resolver per loop";
  // A 10 ms timer keeps firing while names are looked up.
  int ticks = 0;
  bool stop = false;
  std::function<void()> tick = [&] {
    ++ticks;
    if (!stop) loop.after(10ms, tick);
  };
  loop.after(10ms, tick);
  ResolveResult local = resolve(loop, *r, "localhost", 25);
  ASSERT_TRUE(local.ok()) << local.error;
  ASSERT_FALSE(local.addresses.empty());
  std::string text = local.addresses[0].text();
  EXPECT_TRUE(text == "127.0.0.1:25" || text == "[::1]:25") << text;

  ResolveResult bad = resolve(loop, *r, "no-such-host.invalid", 25);
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(bad.error.starts_with("cannot resolve host 'no-such-host.invalid': ") ||
              bad.error.starts_with("resolving 'no-such-host.invalid' timed out"))
      << bad.error;
  EXPECT_TRUE(bad.addresses.empty());
  EXPECT_EQ(resolve(loop, *r, "", 25).error, "cannot resolve an empty host name");
  stop = true;
  EXPECT_LT(loop.worst_iteration(), 100ms) << "the loop never waited for a lookup";
  EXPECT_EQ(r->in_flight(), 0u);
}

TEST(Resolver, CancelTimeoutAndDestroyRunNoCallback) {
  EventLoop loop;
  int calls = 0;
  {
    Resolver r(loop);
    ResolveId a = r.resolve("localhost", 1, [&](const ResolveResult&) { calls += 100; });
    ResolveId b = r.resolve("127.0.0.1", 1, [&](const ResolveResult&) { calls += 100; });
    r.cancel(a);
    r.cancel(b);
    r.cancel(12345);  // unknown: ignored
    // One cancelling another from inside its callback (numeric answers
    // come in the order asked, so the victim's is still to come).
    ResolveId victim = 0;
    r.resolve("127.0.0.1", 2, [&](const ResolveResult&) {
      ++calls;
      r.cancel(victim);
    });
    victim = r.resolve("::1", 2, [&](const ResolveResult&) { calls += 100; });
    ASSERT_TRUE(run_until(loop, [&] { return r.in_flight() == 0; }));
    EXPECT_EQ(calls, 1);
    // A timeout of zero: answered by the timer (or the lookup, if faster),
    // exactly once; a late answer from the worker is dropped.
    Resolver::Options now;
    now.timeout = Duration::zero();
    int answers = 0;
    std::string error;
    r.resolve("no-such-host.invalid", 3, now, [&](const ResolveResult& res) {
      ++answers;
      error = res.error;
    });
    ASSERT_TRUE(run_until(loop, [&] { return answers > 0; }));
    EXPECT_FALSE(error.empty());
    for (int i = 0; i < 20; ++i) loop.run_once(20ms);
    EXPECT_EQ(answers, 1);
    // Destroyed with lookups in flight: no callback, then or later.
    calls = 0;
    for (int i = 0; i < 10; ++i) r.resolve("localhost", 4, [&](const ResolveResult&) { ++calls; });
    r.resolve("127.0.0.1", 4, [&](const ResolveResult&) { ++calls; });
  }
  for (int i = 0; i < 10; ++i) loop.run_once(20ms);
  EXPECT_EQ(calls, 0);
}

TEST(Resolver, SplitHostPort) {
  std::string host, error;
  uint16_t port = 0;
  ASSERT_TRUE(split_host_port("logs.example:514", host, port, error));
  EXPECT_EQ(host, "logs.example");
  EXPECT_EQ(port, 514);
  ASSERT_TRUE(split_host_port("[::1]:6514", host, port, error));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(split_host_port("nohost", host, port, error));
  EXPECT_EQ(error, "expected host:port, got 'nohost'");
  EXPECT_FALSE(split_host_port("h:99999", host, port, error));
  EXPECT_EQ(error, "bad port '99999' in 'h:99999' (1-65535)");
  EXPECT_FALSE(split_host_port("::1:514", host, port, error));
  EXPECT_FALSE(split_host_port("h:x1", host, port, error));
}

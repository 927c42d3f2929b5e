// The host's seconds -> nanoseconds conversions: whatever double reaches
// them (inf, nan, 2^63, 1e300) converts without overflow (issue 11,
// item 5: a double out of int64's range cast to an integer is UB).
#include "host/core/clock.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace vigil;

TEST(Clock, FromSecondsClampsWhatWouldOverflow) {
  const double inf = std::numeric_limits<double>::infinity();
  const Duration max = from_seconds(kMaxSeconds);
  EXPECT_EQ(from_seconds(inf), max);
  EXPECT_EQ(from_seconds(1e300), max);
  EXPECT_EQ(from_seconds(std::ldexp(1.0, 63)), max);
  EXPECT_EQ(from_seconds(9223372036854775807.0), max);
  EXPECT_EQ(from_seconds(-inf), -max);
  EXPECT_EQ(from_seconds(std::nan("")), Duration::zero());
  EXPECT_EQ(from_seconds(1.5), std::chrono::milliseconds(1500));
  EXPECT_EQ(from_seconds(100 * 86400.0), std::chrono::hours(2400));
  // A clamped span still adds to now() without wrapping.
  MonoTime t = MonoClock::now() + from_seconds(inf);
  EXPECT_GT(t, MonoClock::now());
}

TEST(Clock, ToMillisClamps) {
  EXPECT_EQ(to_millis(2.5), 2500);
  EXPECT_EQ(to_millis(std::numeric_limits<double>::infinity()), static_cast<int64_t>(kMaxSeconds * 1000));
  EXPECT_EQ(to_millis(std::nan("")), 0);
}

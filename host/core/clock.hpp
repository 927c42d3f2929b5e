// Time for the host. Mechanism runs on the monotonic clock; wall time is
// only for what operators read (event timestamps, "since").
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace vigil {

using MonoClock = std::chrono::steady_clock;
using MonoTime = MonoClock::time_point;
using Duration = std::chrono::nanoseconds;

inline double to_seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}
// The longest span the host converts: 10 years. Rules are held to 100
// days (stdlib/vigil/duration.lua); this bound is the host's own, so that
// whatever double reaches it (inf, nan, 2^63, 1e300) converts without
// overflow: a double out of int64's range cast to an integer is undefined
// behaviour, and now() + span must not wrap either.
inline constexpr double kMaxSeconds = 10.0 * 365 * 86400;

// s clamped to [-kMaxSeconds, kMaxSeconds]; NaN is 0.
inline double clamp_seconds(double s) {
  if (!(s == s)) return 0;
  if (s > kMaxSeconds) return kMaxSeconds;
  if (s < -kMaxSeconds) return -kMaxSeconds;
  return s;
}
inline Duration from_seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(clamp_seconds(s)));
}
// Whole milliseconds of s, clamped as from_seconds (for APIs that take
// a millisecond count).
inline int64_t to_millis(double s) {
  return static_cast<int64_t>(clamp_seconds(s) * 1000);
}
// Seconds on the monotonic clock, the unit Lua policy code sees.
inline double mono_seconds(MonoTime t) {
  return to_seconds(t.time_since_epoch());
}

// Wall-clock seconds since the Unix epoch.
double wall_seconds();
// CPU seconds the calling thread has used (what a pass or a scan cost).
double thread_cpu_seconds();
// RFC 3339 UTC, e.g. "2026-11-22T01:50:03Z" (or with milliseconds).
std::string rfc3339(double wall, bool millis = false);
// RFC 3339 with `digits` of fractional seconds (0, 3, 6), in UTC ("Z") or
// local time ("+09:00").
std::string format_time(double wall, int digits, bool local);

}  // namespace vigil

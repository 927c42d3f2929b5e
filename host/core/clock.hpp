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
inline Duration from_seconds(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}
// Seconds on the monotonic clock, the unit Lua policy code sees.
inline double mono_seconds(MonoTime t) {
  return to_seconds(t.time_since_epoch());
}

// Wall-clock seconds since the Unix epoch.
double wall_seconds();
// RFC 3339 UTC, e.g. "2026-11-22T01:50:03Z" (or with milliseconds).
std::string rfc3339(double wall, bool millis = false);
// RFC 3339 with `digits` of fractional seconds (0, 3, 6), in UTC ("Z") or
// local time ("+09:00").
std::string format_time(double wall, int digits, bool local);

}  // namespace vigil

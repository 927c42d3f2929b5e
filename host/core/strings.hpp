// Small text helpers shared by the host: signal names, errno text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vigil {

// "TERM", "SIGTERM", "term" or "15" -> 15.
std::optional<int> parse_signal(std::string_view name);
// 15 -> "TERM".
std::string signal_name(int sig);
// strerror(errno) without the thread-safety trap.
std::string errno_text(int err);
// Seconds for messages: "2", "0.25", "1.5".
std::string fmt_seconds(double s);
// "2.0 s": a measured time or a timeout in a failure reason.
std::string seconds_text(double s);
// The parts with `sep` between them ("a, b", argv for messages).
std::string join(const std::vector<std::string>& parts, const char* sep);

}  // namespace vigil

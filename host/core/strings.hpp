// Small text helpers shared by the host: signal names, errno text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vigil {

// "TERM", "SIGTERM", "term" or "15" -> 15.
std::optional<int> parse_signal(std::string_view name);
// 15 -> "TERM".
std::string signal_name(int sig);
// strerror(errno) without the thread-safety trap.
std::string errno_text(int err);

}  // namespace vigil

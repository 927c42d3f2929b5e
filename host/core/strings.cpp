#include "host/core/strings.hpp"

#include <signal.h>
#include <string.h>
#include <time.h>

#include <cctype>
#include <charconv>

#include "host/core/clock.hpp"

namespace vigil {

namespace {
struct SignalName {
  const char* name;
  int number;
};
const SignalName kSignals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
    {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
    {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"PWR", SIGPWR},       {"SYS", SIGSYS},
};
}  // namespace

std::optional<int> parse_signal(std::string_view name) {
  int number = 0;
  auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), number);
  if (ec == std::errc() && ptr == name.data() + name.size()) {
    if (number > 0 && number < NSIG) return number;
    return std::nullopt;
  }
  std::string upper;
  for (char c : name)
    upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  std::string_view u = upper;
  if (u.starts_with("SIG")) u.remove_prefix(3);
  for (const auto& s : kSignals)
    if (u == s.name) return s.number;
  return std::nullopt;
}

std::string signal_name(int sig) {
  for (const auto& s : kSignals)
    if (s.number == sig) return s.name;
  return std::to_string(sig);
}

std::string errno_text(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof buf);
}

double wall_seconds() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string format_time(double wall, int digits, bool local) {
  time_t secs = static_cast<time_t>(wall);
  tm t;
  local ? localtime_r(&secs, &t) : gmtime_r(&secs, &t);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  if (digits > 0) {
    long scale = 1;
    for (int i = 0; i < digits; ++i) scale *= 10;
    long frac = static_cast<long>((wall - static_cast<double>(secs)) * static_cast<double>(scale));
    n += snprintf(buf + n, sizeof buf - n, ".%0*ld", digits,
                  frac < 0        ? 0
                  : frac >= scale ? scale - 1
                                  : frac);
  }
  if (!local) {
    snprintf(buf + n, sizeof buf - n, "Z");
    return buf;
  }
  char zone[8];
  strftime(zone, sizeof zone, "%z", &t);  // +0000 -> +00:00
  snprintf(buf + n, sizeof buf - n, "%.3s:%.2s", zone, zone + 3);
  return buf;
}

std::string rfc3339(double wall, bool millis) {
  return format_time(wall, millis ? 3 : 0, false);
}

}  // namespace vigil

namespace vigil {

std::string fmt_seconds(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

}  // namespace vigil

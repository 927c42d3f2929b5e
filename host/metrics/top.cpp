#include "host/metrics/top.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "host/control/client.hpp"

namespace vigil {

namespace {

std::string bytes_text(const nlohmann::json& v) {
  if (!v.is_number()) return "-";
  double b = v.get<double>();
  const char* units[] = {"B", "K", "M", "G", "T"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.1f%s", b, units[u]);
  return buf;
}

std::string seconds_text(const nlohmann::json& v) {
  if (!v.is_number()) return "-";
  long t = static_cast<long>(v.get<double>());
  char buf[32];
  if (t < 3600)
    snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  else if (t < 86400)
    snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else
    snprintf(buf, sizeof buf, "%ldd%02ldh", t / 86400, (t % 86400) / 3600);
  return buf;
}

std::string num_text(const nlohmann::json& v, const char* fmt = "%.0f") {
  if (!v.is_number()) return "-";
  char buf[32];
  snprintf(buf, sizeof buf, fmt, v.get<double>());
  return buf;
}

volatile sig_atomic_t g_stop = 0;

}  // namespace

std::string render_top(const nlohmann::json& r) {
  std::string out;
  char line[512];
  snprintf(line, sizeof line, "vigil top - sample %s, every %gs\n",
           r["time"].is_string() ? r["time"].get<std::string>().c_str() : "(none yet)",
           r.value("interval", 0.0));
  out += line;
  snprintf(line, sizeof line, "%-20s %-9s %7s %6s %6s %6s %8s %8s %5s %5s %8s %8s %8s %5s\n",
           "WATCH", "STATE", "PID", "CPU%", "USR%", "SYS%", "RSS", "VSZ", "THR", "FDS", "READ",
           "WRITTEN", "UPTIME", "RESTARTS");
  out += line;
  for (const auto& w : r["watches"]) {
    std::string pid = w["pid"].is_number() ? std::to_string(w["pid"].get<int>())
                      : w.value("processes", 0) > 1
                          ? std::to_string(w["processes"].get<int>()) + "p"
                          : "-";
    nlohmann::json cpu = nullptr;
    if (w.contains("cpu_user_percent"))
      cpu = w["cpu_user_percent"].get<double>() + w["cpu_system_percent"].get<double>();
    auto get = [&](const char* k) { return w.contains(k) ? w[k] : nlohmann::json(nullptr); };
    snprintf(line, sizeof line, "%-20s %-9s %7s %6s %6s %6s %8s %8s %5s %5s %8s %8s %8s %5s\n",
             w["watch"].get<std::string>().substr(0, 20).c_str(),
             w["state"].get<std::string>().c_str(), pid.c_str(), num_text(cpu, "%.1f").c_str(),
             num_text(get("cpu_user_percent"), "%.1f").c_str(),
             num_text(get("cpu_system_percent"), "%.1f").c_str(),
             bytes_text(get("rss_bytes")).c_str(), bytes_text(get("vsz_bytes")).c_str(),
             num_text(get("threads")).c_str(), num_text(get("open_fds")).c_str(),
             bytes_text(get("read_bytes")).c_str(), bytes_text(get("write_bytes")).c_str(),
             seconds_text(get("uptime")).c_str(), num_text(get("restarts")).c_str());
    out += line;
  }
  return out;
}

int run_top(const TopOptions& o) {
  bool tty = isatty(STDOUT_FILENO);
  if (!o.once && !o.json) {
    signal(SIGINT, [](int) { g_stop = 1; });
    signal(SIGTERM, [](int) { g_stop = 1; });
  }
  for (;;) {
    std::string error;
    ControlCall call{o.timeout};
    auto reply = control_request(o.socket, {{"cmd", "metrics"}}, error, &call);
    if (!reply) {
      std::cerr << "vigil: " << error << "\n";
      return call.timed_out ? 4 : 3;
    }
    if (!reply->value("ok", false)) {
      std::cerr << "vigil: " << reply->value("error", std::string("failed")) << "\n";
      return 1;
    }
    if (o.json) {
      std::cout << (*reply)["watches"].dump(2) << "\n";
      return 0;
    }
    std::string frame = render_top(*reply);
    if (o.once) {
      std::cout << frame;
      return 0;
    }
    if (tty) std::cout << "\x1b[H\x1b[2J";  // home, clear
    std::cout << frame << std::flush;
    // Wait a second, or less if interrupted ('q' on a terminal also quits).
    pollfd p{STDIN_FILENO, POLLIN, 0};
    int ms = static_cast<int>(o.refresh * 1000);
    if (poll(&p, isatty(STDIN_FILENO) ? 1 : 0, ms) > 0) {
      char c = 0;
      if (read(STDIN_FILENO, &c, 1) <= 0 || c == 'q') return 0;
    }
    if (g_stop) return 0;
  }
}

}  // namespace vigil

#include "host/metrics/sample.hpp"

#include <charconv>
#include <cstdio>

#include "host/core/clock.hpp"

namespace vigil {

std::optional<ProcIo> parse_proc_io(std::string_view text) {
  ProcIo io;
  int found = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    uint64_t* dst = key == "rchar"         ? &io.rchar
                    : key == "wchar"       ? &io.wchar
                    : key == "read_bytes"  ? &io.read_bytes
                    : key == "write_bytes" ? &io.write_bytes
                                           : nullptr;
    if (!dst) continue;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), *dst);
    if (ec != std::errc()) return std::nullopt;
    ++found;
  }
  if (found < 4) return std::nullopt;
  return io;
}

bool parse_ctxt_switches(std::string_view status, uint64_t& voluntary, uint64_t& involuntary) {
  auto field = [&](std::string_view key, uint64_t& out) {
    size_t at = status.rfind(key);
    if (at == std::string_view::npos) return false;
    const char* p = status.data() + at + key.size();
    const char* end = status.data() + status.size();
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    return std::from_chars(p, end, out).ec == std::errc();
  };
  return field("\nnonvoluntary_ctxt_switches:", involuntary) &&
         field("\nvoluntary_ctxt_switches:", voluntary);
}

uint64_t parse_schedstat_runs(std::string_view text) {
  uint64_t v[3];
  const char* p = text.data();
  const char* end = p + text.size();
  for (uint64_t& x : v) {
    while (p < end && *p == ' ') ++p;
    auto [ptr, ec] = std::from_chars(p, end, x);
    if (ec != std::errc()) return 0;
    p = ptr;
  }
  return v[2];
}

nlohmann::json WatchSample::to_json() const {
  nlohmann::json j = {{"watch", watch},
                      {"state", state},
                      {"up", up},
                      {"pid", pid ? nlohmann::json(pid) : nlohmann::json(nullptr)},
                      {"processes", processes},
                      {"restarts", restarts},
                      {"time", rfc3339(time, true)}};
  if (processes > 0) {
    j["cpu_user_percent"] = cpu_user_percent;
    j["cpu_system_percent"] = cpu_system_percent;
    j["rss_bytes"] = rss_bytes;
    j["vsz_bytes"] = vsz_bytes;
    j["threads"] = threads;
    j["open_fds"] = open_fds >= 0 ? nlohmann::json(open_fds) : nlohmann::json(nullptr);
    j["uptime"] = uptime;
  }
  j["cpu_user_seconds"] = cpu_user_seconds;
  j["cpu_system_seconds"] = cpu_system_seconds;
  j["read_bytes"] = io_known ? nlohmann::json(read_bytes) : nlohmann::json(nullptr);
  j["write_bytes"] = io_known ? nlohmann::json(write_bytes) : nlohmann::json(nullptr);
  j["voluntary_ctxt_switches"] = voluntary_ctxt;
  j["involuntary_ctxt_switches"] = involuntary_ctxt;
  return j;
}

std::string prometheus_escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

// %.17g would be exact but noisy; 6 decimals is below a clock tick.
void append_number(std::string& out, double v) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%.6f", v);
  // Trim trailing zeros ("12.500000" -> "12.5", "3.000000" -> "3").
  while (n > 1 && buf[n - 1] == '0') --n;
  if (n > 1 && buf[n - 1] == '.') --n;
  out.append(buf, static_cast<size_t>(n));
}
void append_number(std::string& out, uint64_t v) {
  out += std::to_string(v);
}
void append_number(std::string& out, int64_t v) {
  out += std::to_string(v);
}

struct Family {
  const char* name;
  const char* type;
  const char* help;
};

template <typename F>
void family(std::string& out, const Family& f, const std::vector<WatchSample>& samples, F&& each) {
  out += "# HELP ";
  out += f.name;
  out += ' ';
  out += f.help;
  out += "\n# TYPE ";
  out += f.name;
  out += ' ';
  out += f.type;
  out += '\n';
  for (const auto& s : samples) {
    std::string watch = prometheus_escape(s.watch);
    // each(s, emit) calls emit(extra_labels, value) for every series.
    each(s, [&](const char* extra, auto value) {
      out += f.name;
      out += "{watch=\"";
      out += watch;
      out += '"';
      if (extra) {
        out += ',';
        out += extra;
      }
      out += "} ";
      append_number(out, value);
      out += '\n';
    });
  }
}

}  // namespace

std::string render_prometheus(const std::vector<WatchSample>& samples) {
  std::string out;
  out.reserve(256 + samples.size() * 1200);
  family(out, {"vigil_watch_up", "gauge", "1 if the watch has a running process, else 0."}, samples,
         [](const WatchSample& s, auto emit) { emit(nullptr, int64_t{s.up ? 1 : 0}); });
  family(out,
         {"vigil_watch_restarts_total", "counter",
          "Restarts vigil decided for the watch since the daemon started."},
         samples, [](const WatchSample& s, auto emit) { emit(nullptr, s.restarts); });
  family(out,
         {"vigil_watch_processes", "gauge",
          "Processes of the watch (1 or 0; the member count of a members watch)."},
         samples, [](const WatchSample& s, auto emit) { emit(nullptr, s.processes); });
  family(out,
         {"vigil_process_cpu_seconds_total", "counter",
          "CPU time used by the watch's processes while vigil watched them."},
         samples, [](const WatchSample& s, auto emit) {
           emit("mode=\"user\"", s.cpu_user_seconds);
           emit("mode=\"system\"", s.cpu_system_seconds);
         });
  family(out,
         {"vigil_process_read_bytes_total", "counter",
          "Bytes the watch's processes read from storage (/proc/PID/io read_bytes)."},
         samples, [](const WatchSample& s, auto emit) {
           if (s.io_known) emit(nullptr, s.read_bytes);
         });
  family(out,
         {"vigil_process_written_bytes_total", "counter",
          "Bytes the watch's processes sent to storage (/proc/PID/io write_bytes)."},
         samples, [](const WatchSample& s, auto emit) {
           if (s.io_known) emit(nullptr, s.write_bytes);
         });
  family(out,
         {"vigil_process_context_switches_total", "counter",
          "Context switches of the watch's processes (/proc/PID/status)."},
         samples, [](const WatchSample& s, auto emit) {
           emit("kind=\"voluntary\"", s.voluntary_ctxt);
           emit("kind=\"involuntary\"", s.involuntary_ctxt);
         });
  // Gauges of a running process: no series while nothing runs.
  family(out,
         {"vigil_process_resident_memory_bytes", "gauge",
          "Resident set size of the watch's processes."},
         samples, [](const WatchSample& s, auto emit) {
           if (s.processes) emit(nullptr, s.rss_bytes);
         });
  family(out,
         {"vigil_process_virtual_memory_bytes", "gauge",
          "Virtual memory size of the watch's processes."},
         samples, [](const WatchSample& s, auto emit) {
           if (s.processes) emit(nullptr, s.vsz_bytes);
         });
  family(out, {"vigil_process_threads", "gauge", "Threads of the watch's processes."}, samples,
         [](const WatchSample& s, auto emit) {
           if (s.processes) emit(nullptr, s.threads);
         });
  family(out,
         {"vigil_process_open_fds", "gauge", "Open file descriptors of the watch's processes."},
         samples, [](const WatchSample& s, auto emit) {
           if (s.processes && s.open_fds >= 0) emit(nullptr, s.open_fds);
         });
  family(out,
         {"vigil_process_uptime_seconds", "gauge",
          "Seconds since the watch's process (the oldest member) started."},
         samples, [](const WatchSample& s, auto emit) {
           if (s.processes) emit(nullptr, s.uptime);
         });
  family(out,
         {"vigil_process_cpu_percent", "gauge",
          "CPU use over the last sampling interval, in % of one core."},
         samples, [](const WatchSample& s, auto emit) {
           if (!s.processes) return;
           emit("mode=\"user\"", s.cpu_user_percent);
           emit("mode=\"system\"", s.cpu_system_percent);
         });
  return out;
}

const char* const kCsvHeader =
    "time,watch,state,up,pid,processes,restarts,cpu_user_percent,cpu_system_percent,rss_bytes,"
    "vsz_bytes,threads,open_fds,read_bytes,write_bytes,voluntary_ctxt_switches,"
    "involuntary_ctxt_switches,uptime_seconds,cpu_user_seconds,cpu_system_seconds\n";

void append_csv_row(std::string& out, const WatchSample& s) {
  // The rows of one pass share their time: format it once.
  static double cached_time = -1;
  static std::string cached_text;
  if (s.time != cached_time) {
    cached_time = s.time;
    cached_text = rfc3339(s.time, true);
  }
  out += cached_text;
  out += ',';
  // RFC 4180: quote a field holding a comma, a quote or a line break.
  if (s.watch.find_first_of(",\"\r\n") != std::string::npos) {
    out += '"';
    for (char c : s.watch) {
      if (c == '"') out += '"';
      out += c;
    }
    out += '"';
  } else {
    out += s.watch;
  }
  bool p = s.processes > 0;
  auto fixed = [](double v, int decimals) {
    char buf[48];
    snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return std::string(buf);
  };
  auto field = [&out](const std::string& v) {
    out += ',';
    out += v;
  };
  auto num = [](auto v) { return std::to_string(v); };
  field(s.state);
  field(s.up ? "1" : "0");
  field(s.pid ? num(s.pid) : "");
  field(num(s.processes));
  field(num(s.restarts));
  field(p ? fixed(s.cpu_user_percent, 2) : "");
  field(p ? fixed(s.cpu_system_percent, 2) : "");
  field(p ? num(s.rss_bytes) : "");
  field(p ? num(s.vsz_bytes) : "");
  field(p ? num(s.threads) : "");
  field(p && s.open_fds >= 0 ? num(s.open_fds) : "");
  field(s.io_known ? num(s.read_bytes) : "");
  field(s.io_known ? num(s.write_bytes) : "");
  field(num(s.voluntary_ctxt));
  field(num(s.involuntary_ctxt));
  field(p ? fixed(s.uptime, 1) : "");
  field(fixed(s.cpu_user_seconds, 2));
  field(fixed(s.cpu_system_seconds, 2));
  out += '\n';
}

}  // namespace vigil

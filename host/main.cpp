// vigil: the daemon (`vigil run`) and its control CLI, one binary.
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "host/control/client.hpp"
#include "host/core/clock.hpp"
#include "host/core/json_read.hpp"
#include "host/daemon/daemon.hpp"
#include "host/daemon/daemonize.hpp"
#include "host/daemon/paths.hpp"
#include "host/log/sink.hpp"
#include "host/metrics/top.hpp"
#include "lua/runtime.hpp"

using nlohmann::json;
using namespace vigil;

namespace {

const char* kUsage = R"(usage: vigil [--socket PATH] [--timeout SECONDS] COMMAND [ARGS]

Daemon:
  run [--rules DIR|FILE] [--state-dir DIR] [--stdlib DIR] [--log-file FILE]
      [--syslog] [--syslog-address ADDR] [--syslog-facility NAME]
      [--journald] [--json-log FILE] [--quiet] [--rule-budget SECONDS]
      [--no-watch-rules] [--no-proc-events] [--scan-interval SECONDS]
      [--allow-reboot] [--reboot-interval SECONDS]
      [--metrics] [--metrics-interval SECONDS] [--metrics-dir DIR]
      [--no-metrics-csv] [--metrics-max-bytes N] [--metrics-keep N]
      [--metrics-listen HOST:PORT] [--daemon] [--pid-file FILE]
                          run in the foreground on the rules (--daemon:
                          detach once running, for init scripts)
                          (ADDR: /dev/log, unix:/path, udp:host:port,
                          tcp:host:port; RFC 5424 with structured data)
  check FILE|DIR [--stdlib DIR]
                          load rules without running anything

Control (talks to the running daemon):
  status [--json]         every watch: state, pid, uptime, restarts, last exit
  start|stop|restart NAME  a watch, or a group (its watches in dependency order)
  pause|resume NAME|--all suspend or resume monitoring
  explain NAME [--json]   why the last decision for a watch or group was taken
  dumps [--watch NAME] [--json]
                          the evidence dumps in the state directory
  set NAME KEY VALUE      change a parameter live (e.g. restart.limit 5)
  reload                  re-read the rules (the old ones stay on error)
  events [-n N] [--since DURATION] [--watch NAME] [--id VGLnnnn] [--json]
         [--state-dir DIR]
                          recent events; --since (e.g. 90s, 30m, 1h, 2d)
                          reads the persistent history (also with no
                          daemon running: then from DIR)
  top [--once] [--json]   live CPU, memory, fds, I/O of every watch (needs
                          a daemon run with --metrics)
  ping                    is the daemon there? (exit 0 if it answers)
  quit [--keep]           stop the daemon (--keep: leave every process
                          running; the next vigil re-adopts them)
  version (or --version)

Control commands give up on a daemon that stays silent for --timeout
seconds (default 10; a daemon busy with a long stop says it is alive) and
exit with 4.

Environment: VIGIL_SOCKET, VIGIL_STATE_DIR, VIGIL_STDLIB, VIGIL_TIMEOUT.
)";

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "vigil: " << msg << "\n\n" << kUsage;
  std::exit(2);
}

struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;  // --key value
  std::vector<std::string> flags;                            // --flag

  bool flag(const std::string& f) const {
    for (const auto& x : flags)
      if (x == f) return true;
    return false;
  }
  std::optional<std::string> option(const std::string& k) const {
    for (const auto& [key, v] : options)
      if (key == k) return v;
    return std::nullopt;
  }
};

Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& valued,
                const std::vector<std::string>& boolean) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s.size() > 1 && s[0] == '-') {
      std::string key = s, value;
      bool has_value = false;
      if (auto eq = s.find('='); eq != std::string::npos) {
        key = s.substr(0, eq);
        value = s.substr(eq + 1);
        has_value = true;
      }
      bool is_valued = std::find(valued.begin(), valued.end(), key) != valued.end();
      bool is_bool = std::find(boolean.begin(), boolean.end(), key) != boolean.end();
      if (is_valued) {
        if (!has_value) {
          if (i + 1 >= argc) usage_error(key + " needs a value");
          value = argv[++i];
        }
        a.options.emplace_back(key, value);
      } else if (is_bool && !has_value) {
        a.flags.push_back(key);
      } else {
        usage_error("unknown option " + s);
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

// --stdlib, else default_stdlib_dir() (host/daemon/paths.hpp).
std::string stdlib_dir(const Args& a) {
  if (auto v = a.option("--stdlib")) return *v;
  return default_stdlib_dir();
}

std::string human_duration(double s) {
  char buf[32];
  long t = static_cast<long>(s);
  if (t < 60)
    snprintf(buf, sizeof buf, "%lds", t);
  else if (t < 3600)
    snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else if (t < 86400)
    snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else
    snprintf(buf, sizeof buf, "%ldd%02ldh", t / 86400, (t % 86400) / 3600);
  return buf;
}

std::string last_exit_text(const json& e) {
  if (e.is_null()) return "-";
  if (e.contains("error")) return "failed: " + field(e, "error").get<std::string>();
  if (!field(e, "signal").is_null()) return "signal " + field(e, "signal").get<std::string>();
  return "exit " + std::to_string(field(e, "code").get<int>());
}

// One group and its members, indented by depth.
void print_group(const json& g, int depth) {
  printf("%*s%s %s (%s, %llu restarts)\n", depth * 2, "",
         field(g, "group").get<std::string>().c_str(), field(g, "state").get<std::string>().c_str(),
         field(g, "strategy").get<std::string>().c_str(),
         static_cast<unsigned long long>(field(g, "restarts").get<uint64_t>()));
  for (const auto& m : field(g, "members")) {
    if (m.contains("group")) {
      print_group(m, depth + 1);
      continue;
    }
    std::string pid = field(m, "pid").is_null() ? "-" : std::to_string(field(m, "pid").get<int>());
    printf("%*s%-20s %-10s %-8s %s\n", depth * 2 + 2, "",
           field(m, "watch").get<std::string>().c_str(),
           field(m, "state").get<std::string>().c_str(), pid.c_str(),
           field(m, "ready").get<bool>() ? "ready" : "not ready");
  }
}

void print_status(const json& r) {
  printf("%-24s %-10s %-8s %-9s %-8s %s\n", "NAME", "STATE", "PID", "UPTIME", "RESTARTS",
         "LAST EXIT");
  for (const auto& w : field(r, "watches")) {
    std::string pid = field(w, "pid").is_null() ? "-" : std::to_string(field(w, "pid").get<int>());
    if (w.contains("count")) pid = std::to_string(field(w, "count").get<int>()) + " procs";
    std::string up =
        field(w, "uptime").is_null() ? "-" : human_duration(field(w, "uptime").get<double>());
    printf("%-24s %-10s %-8s %-9s %-8llu %s\n", field(w, "name").get<std::string>().c_str(),
           field(w, "state").get<std::string>().c_str(), pid.c_str(), up.c_str(),
           static_cast<unsigned long long>(field(w, "restarts").get<uint64_t>()),
           last_exit_text(field(w, "last_exit")).c_str());
  }
  if (r.contains("groups") && !field(r, "groups").empty()) {
    printf("\nGROUPS\n");
    for (const auto& g : field(r, "groups")) print_group(g, 0);
  }
}

std::string plain(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

void print_explain(const json& r) {
  const json& s = field(r, "status");
  printf("%s %s: %s\n", field(r, "kind").get<std::string>().c_str(),
         field(r, "name").get<std::string>().c_str(), field(s, "state").get<std::string>().c_str());
  const json& d = field(r, "decision");
  if (d.is_null()) {
    printf("no decision yet: nothing has failed since vigil started\n");
    return;
  }
  printf("last decision (%s): %s\n", plain(d.value("at", json("?"))).c_str(),
         plain(d.value("action", json("?"))).c_str());
  if (d.contains("event")) printf("  because:  %s\n", plain(field(d, "event")).c_str());
  if (d.contains("watch")) printf("  watch:    %s\n", plain(field(d, "watch")).c_str());
  if (d.contains("step"))
    printf("  step:     %s of the escalation ladder\n", plain(field(d, "step")).c_str());
  if (d.contains("strategy")) printf("  strategy: %s\n", plain(field(d, "strategy")).c_str());
  if (d.contains("restarts")) {
    std::string names;
    for (const auto& n : field(d, "restarts")) names += (names.empty() ? "" : ", ") + plain(n);
    printf("  restarts: %s (in dependency order)\n", names.c_str());
  }
  if (d.contains("delay")) printf("  after:    %s s\n", plain(field(d, "delay")).c_str());
  if (d.contains("budget")) {
    const json& b = field(d, "budget");
    printf("  budget:   %s of %s used within %s, %s left\n", plain(field(b, "used")).c_str(),
           plain(field(b, "limit")).c_str(), plain(field(b, "within")).c_str(),
           plain(field(b, "left")).c_str());
  }
  if (d.contains("why")) printf("  why:      %s\n", plain(field(d, "why")).c_str());
  if (d.contains("rearm")) printf("  re-arm:   %s\n", plain(field(d, "rearm")).c_str());
  if (d.contains("rule")) printf("  rule:     %s\n", plain(field(d, "rule")).c_str());
}

void print_events(const json& r) {
  for (const auto& e : field(r, "events"))
    printf("%s %s %-8s %s\n", field(e, "time").get<std::string>().c_str(),
           field(e, "id").get<std::string>().c_str(),
           field(e, "severity").get<std::string>().c_str(),
           field(e, "message").get<std::string>().c_str());
}

// Metrics are off unless asked for: --metrics, or any --metrics-* option.
void parse_metrics_options(const Args& a, MetricsOptions& m) {
  bool on = a.flag("--metrics");
  auto number = [&](const char* key, double min) -> std::optional<double> {
    auto v = a.option(key);
    if (!v) return std::nullopt;
    on = true;
    char* end = nullptr;
    double d = strtod(v->c_str(), &end);
    // Finite and bounded: NaN passed a plain `< min`, inf or 1e300 would
    // overflow the integer it becomes.
    if (v->empty() || !end || *end || !(d >= min && d <= 1e15)) {
      char lim[32];
      snprintf(lim, sizeof lim, "%g", min);
      usage_error(std::string(key) + ": expected a number from " + lim + " to 1e15, got '" + *v + "'");
    }
    return d;
  };
  m.interval = number("--metrics-interval", 0.1).value_or(10);
  if (auto d = number("--metrics-max-bytes", 4096)) m.csv_max_bytes = static_cast<uint64_t>(*d);
  if (auto k = number("--metrics-keep", 0)) m.csv_keep = static_cast<size_t>(*k);
  if (auto d = a.option("--metrics-dir")) {
    if (d->empty()) usage_error("--metrics-dir: expected a directory, got ''");
    m.csv_dir = *d;
    on = true;
  }
  if (a.flag("--no-metrics-csv")) m.csv = false, on = true;
  if (auto l = a.option("--metrics-listen")) {
    ListenAddress addr;
    std::string err;
    if (!parse_listen_address(*l, addr, err)) usage_error("--metrics-listen: " + err);
    m.listen = *l;
    on = true;
  }
  if (!on) m.interval = 0;
}

// "90s", "30m", "1h", "2d", "1.5h" or plain seconds; -1 when not valid.
double parse_duration(const std::string& s) {
  char* end = nullptr;
  double v = strtod(s.c_str(), &end);
  if (!end || end == s.c_str() || v < 0) return -1;
  std::string unit(end);
  if (unit.empty() || unit == "s") return v;
  if (unit == "m") return v * 60;
  if (unit == "h") return v * 3600;
  if (unit == "d") return v * 86400;
  return -1;
}

// The events of the history files (oldest first: the rotated file, then
// the current one) at or after filter.since, of filter.watch and
// filter.id when given; the newest `limit` of them when limit > 0.
// nullopt and `error` (the path and why) when a file that is there, or
// the directory, cannot be read: silence would look like "no events".
std::optional<json> read_history(const std::string& path, const json& filter, size_t limit,
                                 std::string& error) {
  json out = json::array();
  if (path.empty()) return out;
  std::string since = filter["since"].get<std::string>();
  std::string watch = filter.value("watch", std::string());
  std::string id = filter.value("id", std::string());
  size_t missing = 0;
  for (const std::string& p : {path + ".1", path}) {
    FILE* f = fopen(p.c_str(), "re");
    if (!f) {
      int err = errno;
      if (err != ENOENT) {
        error = "cannot read the event history " + p + ": " + strerror(err);
        return std::nullopt;
      }
      ++missing;
      continue;
    }
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n;
    errno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
      std::string_view l(line, static_cast<size_t>(n));
      // Cheap checks before parsing: most lines of a long history are
      // about other watches or ids.
      if (!id.empty() && l.find("\"" + id + "\"") == std::string_view::npos) continue;
      if (!watch.empty() && l.find("\"" + watch + "\"") == std::string_view::npos) continue;
      json ev = json::parse(l, nullptr, false);
      if (!ev.is_object() || !ev["time"].is_string()) continue;
      if (ev["time"].get<std::string>() < since) continue;
      if (!id.empty() && ev.value("id", std::string()) != id) continue;
      if (!watch.empty() && (!ev["watch"].is_string() || ev["watch"].get<std::string>() != watch))
        continue;
      out.push_back(std::move(ev));
    }
    bool failed = ferror(f);
    int err = errno;
    free(line);
    fclose(f);
    if (failed) {
      error = "cannot read the event history " + p + ": " + strerror(err);
      return std::nullopt;
    }
  }
  if (missing == 2) {
    // No history yet is fine; a directory that is not there (or not ours
    // to look into) is not.
    std::string dir = path.substr(0, path.rfind('/'));
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      error = "cannot read the event history in " + dir + ": " + strerror(errno);
      return std::nullopt;
    }
  }
  if (limit > 0 && out.size() > limit) out.erase(out.begin(), out.end() - static_cast<long>(limit));
  return out;
}

// Seconds for --timeout / VIGIL_TIMEOUT (a duration such as 10, 2.5, 30s, 2m).
double parse_timeout(const std::string& what, const std::string& v) {
  double t = parse_duration(v);
  if (!(t > 0) || t > 7 * 86400)
    usage_error(
        what + ": expected seconds, more than 0 and at most 7 days (e.g. 10, 2.5, 30s, 2m), got '" +
        v + "'");
  return t;
}

int cmd_run(int argc, char** argv, int first, const std::string& socket) {
  Args a = parse_args(argc, argv, first,
                      {"--rules", "--state-dir", "--stdlib", "--log-file", "--rule-budget",
                       "--socket", "--scan-interval", "--reboot-interval", "--metrics-interval",
                       "--metrics-dir", "--metrics-listen", "--metrics-max-bytes", "--metrics-keep",
                       "--syslog-address", "--syslog-facility", "--json-log", "--pid-file"},
                      {"--syslog", "--quiet", "--no-watch-rules", "--no-proc-events",
                       "--allow-reboot", "--metrics", "--no-metrics-csv", "--journald",
                       "--daemon"});
  if (!a.positional.empty()) usage_error("run takes no positional arguments");
  DaemonOptions o;
  o.rules = a.option("--rules").value_or("/etc/vigil/rules");
  o.state_dir = a.option("--state-dir").value_or(default_state_dir());
  o.socket_path = a.option("--socket").value_or(socket);
  o.stdlib_dir = stdlib_dir(a);
  o.log.file = a.option("--log-file").value_or("");
  if (a.flag("--syslog") || a.option("--syslog-address")) {
    SinkSpec spec;
    spec.kind = "syslog";
    spec.address = a.option("--syslog-address").value_or("/dev/log");
    spec.facility = a.option("--syslog-facility").value_or("daemon");
    if (facility_code(spec.facility) < 0)
      usage_error("--syslog-facility: unknown facility '" + spec.facility + "'");
    o.sinks.push_back(spec);
  }
  if (a.flag("--journald")) {
    SinkSpec spec;
    spec.kind = "journald";
    o.sinks.push_back(spec);
  }
  if (auto j = a.option("--json-log")) {
    SinkSpec spec;
    spec.kind = "json";
    spec.path = *j;
    o.sinks.push_back(spec);
  }
  o.log.console = !a.flag("--quiet");
  o.watch_rules = !a.flag("--no-watch-rules");
  o.proc_events = !a.flag("--no-proc-events");
  if (auto v = a.option("--scan-interval")) {
    char* end = nullptr;
    o.scan_interval = strtod(v->c_str(), &end);
    if (!end || *end || !(o.scan_interval >= 0.05 && o.scan_interval <= 8640000))
      usage_error("--scan-interval: expected seconds (0.05 to 100 days), got " + *v);
  }
  o.cluster.allow_reboot = a.flag("--allow-reboot");
  o.cluster.state_dir = o.state_dir;
  if (auto v = a.option("--reboot-interval")) {
    char* end = nullptr;
    o.cluster.reboot_interval = strtod(v->c_str(), &end);
    if (!end || *end || !(o.cluster.reboot_interval >= 60 && o.cluster.reboot_interval <= 8640000))
      usage_error("--reboot-interval: expected seconds (60 to 100 days), got " + *v);
  }
  parse_metrics_options(a, o.metrics);
  if (auto b = a.option("--rule-budget")) {
    char* end = nullptr;
    o.callback_budget = strtod(b->c_str(), &end);
    if (!end || *end || !(o.callback_budget > 0 && o.callback_budget <= 3600))
      usage_error("--rule-budget: expected seconds (more than 0, at most 3600), got " + *b);
  }
  return run_daemon(o, {a.flag("--daemon"), a.option("--pid-file").value_or("")});
}

int cmd_check(int argc, char** argv, int first) {
  Args a = parse_args(argc, argv, first, {"--stdlib"}, {});
  if (a.positional.size() != 1) usage_error("check needs one FILE or DIR");
  RuntimeOptions ro;
  ro.stdlib_dir = stdlib_dir(a);
  RuleRuntime rt(ro, HostContext{});
  LoadResult res = rt.load(a.positional[0]);
  if (!res.ok) {
    for (const auto& e : res.errors) std::cerr << e << "\n";
    return 1;
  }
  printf("%s: OK (%zu files, %zu watches)\n", a.positional[0].c_str(), res.files.size(),
         rt.declarations().size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket = default_socket_path();
  ControlCall call;
  if (const char* t = getenv("VIGIL_TIMEOUT"); t && *t)
    call.timeout = parse_timeout("VIGIL_TIMEOUT", t);
  int i = 1;
  // Global options before the command.
  while (i < argc && argv[i][0] == '-') {
    std::string s = argv[i];
    if (s == "--socket" && i + 1 < argc) {
      socket = argv[i + 1];
      i += 2;
    } else if (s.starts_with("--socket=")) {
      socket = s.substr(9);
      ++i;
    } else if (s == "--timeout" && i + 1 < argc) {
      call.timeout = parse_timeout("--timeout", argv[i + 1]);
      i += 2;
    } else if (s.starts_with("--timeout=")) {
      call.timeout = parse_timeout("--timeout", s.substr(10));
      ++i;
    } else if (s == "-h" || s == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (s == "--version") {  // what packaging tools and scripts ask
      printf("vigil %s\n", VIGIL_VERSION);
      return 0;
    } else {
      usage_error("unknown option " + s);
    }
  }
  if (i >= argc) usage_error("no command");
  std::string cmd = argv[i++];
  if (cmd == "run") return cmd_run(argc, argv, i, socket);
  if (cmd == "check") return cmd_check(argc, argv, i);
  if (cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "version") {
    printf("vigil %s\n", VIGIL_VERSION);
    return 0;
  }

  if (cmd == "top") {
    Args a = parse_args(argc, argv, i, {"--socket", "--timeout"}, {"--once", "--json"});
    if (!a.positional.empty()) usage_error("top takes no arguments");
    TopOptions t;
    t.socket = a.option("--socket").value_or(socket);
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    t.timeout = call.timeout;
    t.once = a.flag("--once");
    t.json = a.flag("--json");
    return run_top(t);
  }

  json req = {{"cmd", cmd}};
  bool as_json = false;
  double history_since = -1;  // events --since: read the history files
  size_t history_limit = 0;   // ... the newest N of them (0: all)
  std::string history_dir;    // ... found here when no daemon answers
  if (cmd == "status" || cmd == "reload" || cmd == "ping") {
    Args a = parse_args(argc, argv, i, {"--socket", "--timeout"}, {"--json"});
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (!a.positional.empty()) usage_error(cmd + " takes no arguments");
    as_json = a.flag("--json");
  } else if (cmd == "quit") {
    Args a = parse_args(argc, argv, i, {"--socket", "--timeout"}, {"--keep", "--json"});
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (!a.positional.empty()) usage_error("quit takes no arguments");
    if (a.flag("--keep")) req["keep"] = true;
    as_json = a.flag("--json");
  } else if (cmd == "start" || cmd == "stop" || cmd == "restart" || cmd == "explain") {
    Args a = parse_args(argc, argv, i, {"--socket", "--timeout"}, {"--json"});
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (a.positional.size() != 1) usage_error(cmd + " needs one watch or group NAME");
    req["name"] = a.positional[0];
    as_json = a.flag("--json");
  } else if (cmd == "pause" || cmd == "resume") {
    Args a = parse_args(argc, argv, i, {"--socket", "--timeout"}, {"--all", "--json"});
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (a.flag("--all") == (a.positional.size() == 1) || a.positional.size() > 1)
      usage_error(cmd + " needs one watch or group NAME, or --all");
    if (a.flag("--all"))
      req["all"] = true;
    else
      req["name"] = a.positional[0];
    as_json = a.flag("--json");
  } else if (cmd == "set") {
    Args a = parse_args(argc, argv, i, {"--socket", "--timeout"}, {"--json"});
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (a.positional.size() != 3) usage_error("set needs NAME KEY VALUE");
    req["name"] = a.positional[0];
    req["key"] = a.positional[1];
    req["value"] = a.positional[2];
    as_json = a.flag("--json");
  } else if (cmd == "dumps") {
    Args a = parse_args(argc, argv, i, {"--watch", "--socket", "--timeout"}, {"--json"});
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (!a.positional.empty()) usage_error("dumps takes no positional arguments");
    if (auto w = a.option("--watch")) req["watch"] = *w;
    as_json = a.flag("--json");
  } else if (cmd == "events") {
    Args a = parse_args(
        argc, argv, i, {"-n", "--watch", "--socket", "--timeout", "--since", "--id", "--state-dir"},
        {"--json"});
    history_dir = a.option("--state-dir").value_or(default_state_dir());
    if (auto s = a.option("--socket")) socket = *s;
    if (auto v = a.option("--timeout")) call.timeout = parse_timeout("--timeout", *v);
    if (!a.positional.empty()) usage_error("events takes no positional arguments");
    if (auto n = a.option("-n")) {
      char* end = nullptr;
      long v = strtol(n->c_str(), &end, 10);
      if (!end || *end || v < 1) usage_error("-n: expected a positive number, got " + *n);
      req["n"] = v;
      history_limit = static_cast<size_t>(v);
    }
    if (auto w = a.option("--watch")) req["watch"] = *w;
    if (auto id = a.option("--id")) req["id"] = *id;
    if (auto since = a.option("--since")) {
      double secs = parse_duration(*since);
      if (secs < 0) usage_error("--since: expected a duration such as 90s, 30m, 1h, 2d");
      history_since = wall_seconds() - secs;
      if (!a.option("-n")) req["n"] = 1;  // only the history path is needed
    }
    as_json = a.flag("--json");
  } else {
    usage_error("unknown command '" + cmd + "'");
  }

  std::string error;
  auto reply = control_request(socket, req, error, &call);
  if (!reply && cmd == "events" && history_since >= 0) {
    // The history outlives the daemon: what happened before it stopped.
    std::cerr << "vigil: " << error << "; reading the history in " << history_dir << "\n";
    reply =
        json{{"ok", true}, {"events", json::array()}, {"history", history_dir + "/events.jsonl"}};
  }
  if (!reply) {
    std::cerr << "vigil: " << error << "\n";
    return call.timed_out ? 4 : 3;
  }
  // What the daemon sent is read with types: a reply of another shape
  // (something else on the socket, a different version) is said, never a
  // crash of the CLI.
  try {
    bool ok = reply->value("ok", false);
    if (!ok) {
      std::cerr << "vigil: " << reply->value("error", std::string("failed")) << "\n";
      return 1;
    }
    if (cmd == "events" && history_since >= 0) {
      json filter = {{"since", rfc3339(history_since, true)}};
      if (req.contains("watch")) filter["watch"] = req["watch"];
      if (req.contains("id")) filter["id"] = req["id"];
      auto history =
          read_history(reply->value("history", std::string()), filter, history_limit, error);
      if (!history) {
        std::cerr << "vigil: " << error << "\n";
        return 1;
      }
      (*reply)["events"] = std::move(*history);
    }
    if (as_json) {
      if (cmd == "status")
        std::cout << (*reply)["watches"].dump(2) << "\n";
      else if (cmd == "events")
        std::cout << (*reply)["events"].dump(2) << "\n";
      else if (cmd == "dumps")
        std::cout << (*reply)["dumps"].dump(2) << "\n";
      else
        std::cout << reply->dump(2) << "\n";
      return 0;
    }
    if (cmd == "status")
      print_status(*reply);
    else if (cmd == "events")
      print_events(*reply);
    else if (cmd == "set")
      printf("%s %s = %s\n", req["name"].get<std::string>().c_str(),
             req["key"].get<std::string>().c_str(), (*reply)["value"].get<std::string>().c_str());
    else if (cmd == "reload")
      printf("reloaded: %d watches\n", (*reply)["watches"].get<int>());
    else if (cmd == "explain")
      print_explain(*reply);
    else if (cmd == "dumps")
      for (const auto& d : (*reply)["dumps"])
        printf("%-20s %-26s %-6s %3d files %10llu bytes  %s\n",
               field(d, "watch").get<std::string>().c_str(),
               field(d, "time").get<std::string>().c_str(),
               field(d, "trigger").get<std::string>().c_str(), field(d, "files").get<int>(),
               static_cast<unsigned long long>(field(d, "bytes").get<uint64_t>()),
               field(d, "path").get<std::string>().c_str());
    else if (reply->contains("group") && (*reply)["group"].is_object())
      printf("%s: %s\n", field((*reply)["group"], "group").get<std::string>().c_str(),
             field((*reply)["group"], "state").get<std::string>().c_str());
    else if (reply->contains("watch") && (*reply)["watch"].is_object()) {
      const auto& w = (*reply)["watch"];
      printf("%s: %s\n", field(w, "name").get<std::string>().c_str(),
             field(w, "state").get<std::string>().c_str());
    }
    return 0;
  } catch (const json::exception& e) {  // a wrong type; absent keys read as null (field())
    std::cerr << "vigil: unexpected reply from " << socket << ": " << e.what() << "\n";
    return 3;
  }
}

// `vigil run` (the daemon, in the foreground) and `vigil check` (load the
// rules, run nothing): the daemon's options turned into DaemonOptions.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "host/cli/run.hpp"

#include "host/api/rule_check.hpp"
#include "host/daemon/daemon.hpp"
#include "host/daemon/daemonize.hpp"
#include "host/daemon/paths.hpp"
#include "host/log/sink.hpp"
#include "lua/runtime.hpp"

namespace vigil::cli {

// --stdlib, else default_stdlib_dir() (host/daemon/paths.hpp).
std::string stdlib_dir(const RunArgs& a) {
  if (auto v = a.option("--stdlib")) return *v;
  return default_stdlib_dir();
}

// Metrics are off unless asked for: --metrics, or any --metrics-* option.
void parse_metrics_options(const RunArgs& a, MetricsOptions& m) {
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
      throw UsageError(std::string(key) + ": expected a number from " + lim + " to 1e15, got '" + *v + "'");
    }
    return d;
  };
  m.interval = number("--metrics-interval", 0.1).value_or(10);
  if (auto d = number("--metrics-max-bytes", 4096)) m.csv_max_bytes = static_cast<uint64_t>(*d);
  if (auto k = number("--metrics-keep", 0)) m.csv_keep = static_cast<size_t>(*k);
  if (auto d = a.option("--metrics-dir")) {
    if (d->empty()) throw UsageError("--metrics-dir: expected a directory, got ''");
    m.csv_dir = *d;
    on = true;
  }
  if (a.flag("--no-metrics-csv")) m.csv = false, on = true;
  if (auto l = a.option("--metrics-listen")) {
    ListenAddress addr;
    std::string err;
    if (!parse_listen_address(*l, addr, err)) throw UsageError("--metrics-listen: " + err);
    m.listen = *l;
    on = true;
  }
  if (!on) m.interval = 0;
}

int cmd_run(const RunArgs& a, const std::string& socket) {
  DaemonOptions o;
  o.rules = a.option("--rules").value_or("/etc/vigil/rules");
  o.state_dir = a.option("--state-dir").value_or(default_state_dir());
  o.socket_path = socket;
  o.stdlib_dir = stdlib_dir(a);
  o.log.file = a.option("--log-file").value_or("");
  if (a.flag("--syslog") || a.option("--syslog-address")) {
    SinkSpec spec;
    spec.kind = "syslog";
    spec.address = a.option("--syslog-address").value_or("/dev/log");
    spec.facility = a.option("--syslog-facility").value_or("daemon");
    if (facility_code(spec.facility) < 0)
      throw UsageError("--syslog-facility: unknown facility '" + spec.facility + "'");
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
      throw UsageError("--scan-interval: expected seconds (0.05 to 100 days), got " + *v);
  }
  o.cluster.allow_reboot = a.flag("--allow-reboot");
  o.cluster.state_dir = o.state_dir;
  if (auto v = a.option("--reboot-interval")) {
    char* end = nullptr;
    o.cluster.reboot_interval = strtod(v->c_str(), &end);
    if (!end || *end || !(o.cluster.reboot_interval >= 60 && o.cluster.reboot_interval <= 8640000))
      throw UsageError("--reboot-interval: expected seconds (60 to 100 days), got " + *v);
  }
  parse_metrics_options(a, o.metrics);
  if (auto l = a.option("--api-listen")) {
    o.api = {{"listen", *l}};
    for (auto [opt, key] : {std::pair{"--api-cert", "cert"}, {"--api-key", "key"},
                            {"--api-client-ca", "client_ca"}, {"--api-tokens", "tokens"}})
      if (auto v = a.option(opt)) o.api[key] = *v;
    if (auto v = a.option("--api-operators")) {
      nlohmann::json names = nlohmann::json::array();
      std::string rest = *v;
      for (size_t at = 0; at <= rest.size();) {
        size_t comma = rest.find(',', at);
        if (comma == std::string::npos) comma = rest.size();
        if (comma > at) names.push_back(rest.substr(at, comma - at));
        at = comma + 1;
      }
      o.api["operators"] = names;
    }
  } else {
    for (const char* opt : {"--api-cert", "--api-key", "--api-client-ca", "--api-tokens",
                            "--api-operators"})
      if (a.option(opt)) throw UsageError(std::string(opt) + " goes with --api-listen");
  }
  if (auto b = a.option("--rule-budget")) {
    char* end = nullptr;
    o.callback_budget = strtod(b->c_str(), &end);
    if (!end || *end || !(o.callback_budget > 0 && o.callback_budget <= 3600))
      throw UsageError("--rule-budget: expected seconds (more than 0, at most 3600), got " + *b);
  }
  return run_daemon(o, {a.flag("--daemon"), a.option("--pid-file").value_or("")});
}

int cmd_check(const RunArgs& a, const std::string& path) {
  RuntimeOptions ro;
  ro.stdlib_dir = stdlib_dir(a);
  RuleCheck res = check_rules(ro, path);
  if (!res.errors.empty()) {
    for (const auto& e : res.errors) std::cerr << e << "\n";
    return 1;
  }
  printf("%s: OK (%zu files, %zu watches)\n", path.c_str(), res.files, res.watches);
  return 0;
}

}  // namespace vigil::cli

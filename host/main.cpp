// vigil: the daemon (`vigil run`) and its control CLI, one binary. The
// command line is parsed here with CLI11 (one subcommand per command, each
// with its own --help); what each command does is in host/cli/.
#include <errno.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "host/cli/cli.hpp"
#include "host/cli/discover.hpp"
#include "host/cli/run.hpp"
#include "host/daemon/paths.hpp"
#include "host/metrics/top.hpp"

using namespace vigil;
using namespace vigil::cli;

namespace {

const char* kFooter = R"(
Control commands talk to the running daemon. They give up on a daemon that
stays silent for --timeout seconds (default 10; a daemon busy with a long
stop says it is alive) and exit with 4; a daemon that cannot be reached is
exit 3, a command the daemon refused exit 1, a bad command line exit 2.
`status --check` and `wait` have exit codes of their own (see their --help
and docs/operations.md).

Global options (--socket, --timeout) go before or after the command.
Environment: VIGIL_SOCKET, VIGIL_TIMEOUT, VIGIL_STATE_DIR, VIGIL_STDLIB.
Run `vigil COMMAND --help` for the options of one command.
)";

// Registers valued options and flags whose values RunArgs keeps by name
// (`vigil run` and `check` validate them themselves, naming the option).
struct RunOptions {
  CLI::App* app;
  RunArgs args;
  std::vector<std::pair<std::string, std::string*>> valued;
  std::vector<std::pair<std::string, CLI::Option*>> valued_opts;
  std::vector<std::pair<std::string, CLI::Option*>> flag_opts;
  std::vector<std::unique_ptr<std::string>> storage;

  void value(const std::string& name, const std::string& help, const char* type = "VALUE") {
    storage.push_back(std::make_unique<std::string>());
    CLI::Option* o = app->add_option(name, *storage.back(), help)->type_name(type);
    valued.emplace_back(name, storage.back().get());
    valued_opts.emplace_back(name, o);
  }
  void flag(const std::string& name, const std::string& help) {
    flag_opts.emplace_back(name, app->add_flag(name, help));
  }
  const RunArgs& collect() {
    for (size_t i = 0; i < valued.size(); ++i)
      if (valued_opts[i].second->count() > 0) args.values[valued[i].first] = *valued[i].second;
    for (const auto& [name, o] : flag_opts)
      if (o->count() > 0) args.flags.insert(name);
    return args;
  }
};

void add_run_options(RunOptions& r) {
  r.value("--rules", "rule directory or file (default /etc/vigil/rules)", "DIR|FILE");
  r.value("--state-dir", "state directory (default /var/lib/vigil as root; VIGIL_STATE_DIR)", "DIR");
  r.value("--stdlib", "the Lua standard library (VIGIL_STDLIB)", "DIR");
  r.value("--log-file", "the text event log (default STATE/vigil.log)", "FILE");
  r.flag("--syslog", "events to syslog as well");
  r.value("--syslog-address", "/dev/log, unix:/path, udp:host:port, tcp:host:port (RFC 5424)",
          "ADDR");
  r.value("--syslog-facility", "syslog facility (default daemon)", "NAME");
  r.flag("--journald", "events to the systemd journal");
  r.value("--json-log", "events as JSON lines to FILE", "FILE");
  r.flag("--quiet", "no events on the console");
  r.value("--rule-budget", "seconds a rule callback may run (default 0.5)", "SECONDS");
  r.flag("--no-watch-rules", "do not reload when a rule file changes");
  r.flag("--no-proc-events", "scan /proc instead of the kernel's process events");
  r.value("--scan-interval", "seconds between /proc scans without process events", "SECONDS");
  r.flag("--allow-reboot", "rules may reboot the node (cluster escalation)");
  r.value("--reboot-interval", "at most one reboot this often", "SECONDS");
  r.flag("--metrics", "sample CPU, memory, fds, I/O of every watch");
  r.value("--metrics-interval", "seconds between samples (default 10)", "SECONDS");
  r.value("--metrics-dir", "where the CSV files go (default STATE/metrics)", "DIR");
  r.flag("--no-metrics-csv", "no CSV files");
  r.value("--metrics-max-bytes", "size of a CSV file before it rotates", "N");
  r.value("--metrics-keep", "rotated CSV files kept", "N");
  r.value("--metrics-listen", "serve /metrics (Prometheus) on HOST:PORT", "HOST:PORT");
  r.value("--api-listen",
          "serve the remote API on HOST:PORT (HTTPS; plain HTTP only on loopback); the rules' "
          "api { } says the same",
          "HOST:PORT");
  r.value("--api-cert", "the API's certificate chain (PEM)", "FILE");
  r.value("--api-key", "the API's private key (PEM)", "FILE");
  r.value("--api-client-ca", "require client certificates signed by this CA (PEM)", "FILE");
  r.value("--api-tokens", "bearer tokens (vigil token add), accepted over TLS", "FILE");
  r.value("--api-operators", "identities that may act (POST), comma-separated", "NAMES");
  r.flag("--daemon", "detach once running (for init scripts); the exit status is the start's");
  r.value("--pid-file", "write the daemon's pid here for its life", "FILE");
}

// A count given on the command line (-n N): a whole number, at least `min`.
long count_arg(const std::string& what, const std::string& v, long min) {
  char* end = nullptr;
  errno = 0;
  long n = strtol(v.c_str(), &end, 10);
  if (v.empty() || !end || *end || errno == ERANGE || n < min)
    throw UsageError(what + ": expected a whole number of at least " + std::to_string(min) +
                     ", got '" + v + "'");
  return n;
}

CLI::App* command(CLI::App& app, const std::string& name, const std::string& help) {
  CLI::App* sub = app.add_subcommand(name, help);
  // The global options (--socket, --timeout) after the command too.
  sub->fallthrough();
  return sub;
}


// `vigil run` is kept for after the parse: the parser's objects (every
// command's options, ~90 kB) are gone before the daemon starts.
struct RunLaunch {
  RunArgs args;
  std::string socket;
};

int usage_error(const UsageError& e) {
  std::cerr << "vigil: " << e.what() << "\n(vigil --help, or vigil COMMAND --help)\n";
  return kExitUsage;
}

// Parses the command line and runs the command, except `vigil run`, which
// it leaves in `launch`.
int parse_and_run(int argc, char** argv, std::optional<RunLaunch>& launch) {
  CLI::App app{"Vigil, a process supervisor: the daemon (vigil run) and its control commands.",
               "vigil"};
  app.footer(kFooter);
  app.set_version_flag("--version", std::string("vigil ") + VIGIL_VERSION,
                       "print the version and exit");
  app.require_subcommand(1);

  Global g;
  g.socket = default_socket_path();
  std::string timeout_text;
  app.add_option("--socket", g.socket, "the daemon's control socket (VIGIL_SOCKET)")
      ->type_name("PATH");
  CLI::Option* timeout_opt =
      app.add_option("--timeout", timeout_text,
                     "seconds the daemon may stay silent before a command gives up (default 10; "
                     "VIGIL_TIMEOUT)")
          ->type_name("SECONDS");
  const std::string state_dir = default_state_dir();
  PeerConfig node;
  std::string nodes_file;
  CLI::Option* node_opt =
      app.add_option("--node", node.url,
                     "talk to this node's remote API instead of the local socket "
                     "(https://nodeb:8443)")
          ->type_name("URL");
  app.add_option("--cert", node.cert, "with --node: our client certificate (PEM)")->type_name("FILE");
  app.add_option("--key", node.key, "with --node: its private key (PEM)")->type_name("FILE");
  app.add_option("--ca", node.ca, "with --node: the CA that signed the node's certificate")
      ->type_name("FILE");
  app.add_option("--pin", node.pin, "with --node: the node's public key, sha256//BASE64")
      ->type_name("PIN");
  app.add_option("--token-file", node.token_file,
                 "with --node: a bearer token (first line; VIGIL_TOKEN also works)")
      ->type_name("FILE");
  CLI::Option* nodes_opt =
      app.add_option("--nodes", nodes_file,
                     "status across the peers this Lua file declares (peer \"name\" { url = ... })")
          ->type_name("FILE");
  nodes_opt->excludes(node_opt);

  // Daemon.
  CLI::App* run = command(app, "run", "run the daemon in the foreground on the rules");
  RunOptions run_opts{run, {}, {}, {}, {}, {}};
  add_run_options(run_opts);
  CLI::App* check = command(app, "check", "load rules without running anything");
  std::string check_path;
  check->add_option("FILE|DIR", check_path, "rule file or directory")->required();
  RunOptions check_opts{check, {}, {}, {}, {}, {}};
  check_opts.value("--stdlib", "the Lua standard library (VIGIL_STDLIB)", "DIR");

  // Status.
  StatusArgs status_args;
  CLI::App* status = command(
      app, "status",
      "every watch and group; with NAMEs, everything about those (probes, checks, budget, events)");
  status->add_option("NAME", status_args.names, "watches or groups")->type_name("NAME...");
  status->add_flag("--json", status_args.json,
                   "JSON: the watches (an array); with NAMEs, their objects; see --all");
  status->add_flag("--all", status_args.all,
                   "with --json: the whole status, {daemon, watches, groups}");
  status->add_flag("--check", status_args.check,
                   "exit with an LSB status code: 0 running and ready, 1 degraded or restarting "
                   "(starting, backoff, waiting), 3 stopped, exhausted, standby or done with a failure, 4 "
                   "unknown (no such name, no daemon); the worst of the NAMEs");
  status->add_flag("--state", status_args.state,
                   "print the state of each NAME, one word a line (a group: ready, degraded, "
                   "restarting, stopped, exhausted; a watch: running, stopped, ...); exit 0, 4 "
                   "when a NAME is unknown (printed as 'unknown'), 3 when no daemon answers");
  status->add_option("--events", status_args.events, "events shown per NAME (default 5)")
      ->check(CLI::Range(0, 1000))
      ->type_name("N");

  // Simple commands on a name.
  std::vector<std::unique_ptr<SimpleArgs>> simple;
  auto simple_cmd = [&](const std::string& name, const std::string& help, bool needs_name) {
    simple.push_back(std::make_unique<SimpleArgs>());
    SimpleArgs& s = *simple.back();
    s.cmd = name;
    CLI::App* sub = command(app, name, help);
    if (needs_name) sub->add_option("NAME", s.name, "watch or group")->required();
    sub->add_flag("--json", s.json, "print the daemon's reply as JSON");
    return std::make_pair(sub, &s);
  };
  simple_cmd("start", "start a watch, or a group (its watches in dependency order)", true);
  simple_cmd("stop", "stop a watch or a group (dependents first)", true);
  simple_cmd("restart", "restart a watch or a group", true);
  simple_cmd("explain", "why the last decision for a watch or group was taken", true);
  for (const char* c : {"pause", "resume"}) {
    auto [sub, s] = simple_cmd(c,
                               std::string(c == std::string("pause") ? "suspend" : "resume") +
                                   " monitoring of a watch or group, or of all (--all)",
                               false);
    sub->add_option("NAME", s->name, "watch or group");
    sub->add_flag("--all", s->all, "every watch");
  }
  auto [failover, failover_args] = simple_cmd(
      "failover",
      "hand a clustered group to another node: stop it here completely, then the cluster "
      "adapter moves it (etcd: resign; pacemaker: move; command: the failover command)",
      true);
  failover->add_option("--to", failover_args->to, "the node to move it to (when the adapter can)")
      ->type_name("NODE");
  simple_cmd("cluster", "the cluster adapter, its nodes, and what each holds", false);
  simple_cmd("reload", "re-read the rules (the old ones stay on error)", false);
  simple_cmd("ping", "is the daemon there? (exit 0 if it answers)", false);
  auto [quit, quit_args] = simple_cmd("quit", "stop the daemon", false);
  quit->add_flag("--keep", quit_args->keep,
                 "leave every process running; the next vigil re-adopts them");

  // set.
  SetArgs set_args;
  CLI::App* set = command(app, "set",
                          "change a parameter live (e.g. restart.limit 5); kept across reloads "
                          "until --default");
  set->add_option("NAME", set_args.name, "watch or group")->required();
  set->add_option("KEY", set_args.key, "restart.limit, restart.within, restart.delay, "
                                       "restart.reset, restart.backoff, rearm, count.min, count.max")
      ->required()
      ->type_name("KEY");
  CLI::Option* set_value = set->add_option("VALUE", set_args.value, "the new value");
  CLI::Option* set_default =
      set->add_flag("--default", set_args.to_default, "back to the rule's value (clears the override)");
  set_default->excludes(set_value);
  set->add_flag("--json", set_args.json, "print the daemon's reply as JSON");

  // signal.
  SignalArgs signal_args;
  CLI::App* sig = command(app, "signal",
                          "send a signal to a watch's process (a group: each member's) through "
                          "its pidfd; nothing else is done");
  sig->add_option("NAME", signal_args.name, "watch or group")->required();
  sig->add_option("SIGNAL", signal_args.signal, "HUP, USR1, SIGTERM, 10, ...")
      ->required()
      ->type_name("SIGNAL");
  sig->add_flag("--json", signal_args.json, "print the daemon's reply as JSON");

  // wait.
  WaitArgs wait_args;
  std::string wait_timeout;
  CLI::App* wait = command(
      app, "wait",
      "block until a watch or group reaches a state. Exit 0 when it does, 1 when it cannot "
      "without an operator (exhausted, stopped, done), 124 when --timeout passes, 4 when the "
      "name is unknown or no daemon answers");
  wait->add_option("NAME", wait_args.name, "watch or group")->required();
  wait->add_option("--until", wait_args.until,
                   "ready (default), running, stopped, exhausted, done, standby")
      ->check(CLI::IsMember({"ready", "running", "stopped", "exhausted", "done", "standby"}))
      ->type_name("STATE");
  CLI::Option* wait_timeout_opt =
      wait->add_option("--timeout", wait_timeout,
                       "give up after this long (e.g. 30, 2.5s, 5m; default: no limit). Here, "
                       "after the command, it is the wait's; the daemon's silence timeout is the "
                       "global --timeout before the command")
          ->type_name("DURATION");
  wait->add_flag("--json", wait_args.json, "print the daemon's reply as JSON");

  // logs.
  LogsArgs logs_args;
  logs_args.state_dir = state_dir;
  CLI::App* logs = command(app, "logs", "the captured stdout (or stderr) of a watch's processes");
  logs->add_option("NAME", logs_args.name, "watch")->required();
  std::string logs_n;
  CLI::Option* logs_n_opt =
      logs->add_option("-n,--lines", logs_n, "the last N lines (default 10; 0 with -f: only new ones)")
          ->type_name("N");
  logs->add_flag("-f,--follow", logs_args.follow,
                 "keep printing what is written (across rotations, like tail -F)");
  logs->add_flag("--stderr", logs_args.stderr_stream, "stderr instead of stdout");
  logs->add_option("--state-dir", logs_args.state_dir,
                   "where to find the logs when no daemon answers (VIGIL_STATE_DIR)")
      ->type_name("DIR");

  // events, dumps, top.
  EventsArgs events_args;
  events_args.state_dir = state_dir;
  std::string events_n;
  CLI::App* events = command(app, "events",
                             "recent events; --since reads the persistent history (also with no "
                             "daemon running: then from --state-dir)");
  CLI::Option* events_n_opt =
      events->add_option("-n", events_n, "the newest N")->type_name("N");
  events->add_option("--since", events_args.since, "e.g. 90s, 30m, 1h, 2d")->type_name("DURATION");
  events->add_option("--watch", events_args.watch, "of this watch only")->type_name("NAME");
  events->add_option("--id", events_args.id, "with this message id only")->type_name("VGLnnnn");
  events->add_option("--state-dir", events_args.state_dir, "the history when no daemon answers")
      ->type_name("DIR");
  events->add_flag("--json", events_args.json, "JSON");

  DumpsArgs dumps_args;
  CLI::App* dumps = command(app, "dumps", "the evidence dumps in the state directory");
  dumps->add_option("--watch", dumps_args.watch, "of this watch only")->type_name("NAME");
  dumps->add_flag("--json", dumps_args.json, "JSON");

  TopOptions top_args;
  CLI::App* top = command(app, "top",
                          "live CPU, memory, fds, I/O of every watch (a daemon run with --metrics)");
  top->add_flag("--once", top_args.once, "one frame");
  top->add_flag("--json", top_args.json, "one frame as JSON");

  TokenArgs token_args;
  CLI::App* token = command(app, "token",
                            "the remote API's bearer tokens: add NAME prints a new token once and "
                            "stores its hash; remove NAME revokes it (then vigil reload)");
  token->add_option("ACTION", token_args.action, "add or remove")
      ->required()
      ->check(CLI::IsMember({"add", "remove"}));
  token->add_option("NAME", token_args.name, "who the token is for (the identity api.operators "
                                             "and vigil.api.authorize see)")
      ->required();
  token->add_option("--file", token_args.file, "the token file (default /etc/vigil/tokens)")
      ->type_name("PATH");

  CLI::App* discover = command(app, "discover",
                               "propose watches for the services running now (reads /proc, touches "
                               "nothing)");
  DiscoverArgs discover_args;
  discover->add_option("--window", discover_args.window,
                       "how long a process must live to be proposed (default 10m)")
      ->type_name("DURATION");
  discover->add_option("--every", discover_args.every, "time between scans (default 5s)")
      ->type_name("DURATION");
  discover->add_flag("--json", discover_args.json, "the candidates as JSON");
  discover->add_option("--write", discover_args.write,
                       "write the proposed rule file (every watch in mode = \"observe\")")
      ->type_name("FILE");
  discover->add_flag("--force", discover_args.force, "with --write: replace an existing file");
  discover->add_option("--rules", discover_args.rules,
                       "rules that tune the discover policy (require \"vigil.discover\")")
      ->type_name("FILE|DIR");
  discover->add_option("--init-dir", discover_args.init_dir,
                       "where init scripts are looked for (default /etc/init.d)")
      ->type_name("DIR");
  discover->add_option("--stdlib", discover_args.stdlib, "the Lua standard library (VIGIL_STDLIB)")
      ->type_name("DIR");
  discover->add_flag("--last", discover_args.last,
                     "the running daemon's last discovery (rules: discover { every = ... })");

  CLI::App* version = command(app, "version", "print the version");
  CLI::App* help = command(app, "help", "this help, or a command's (vigil help COMMAND)");
  std::string help_of;
  help->add_option("COMMAND", help_of, "a command");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // An unknown command is left over as an argument of vigil itself.
    if (app.get_subcommands().empty() && !app.remaining().empty()) {
      std::cerr << "vigil: unknown command '" << app.remaining().front()
                << "'\n(vigil --help lists the commands)\n";
      return kExitUsage;
    }
    std::cerr << "vigil: " << e.what() << "\n(vigil --help, or vigil COMMAND --help)\n";
    return kExitUsage;
  }

  try {
    // VIGIL_TIMEOUT, unless --timeout says otherwise.
    if (const char* t = getenv("VIGIL_TIMEOUT"); t && *t && timeout_opt->count() == 0)
      g.call.timeout = parse_timeout("VIGIL_TIMEOUT", t);
    if (timeout_opt->count() > 0) g.call.timeout = parse_timeout("--timeout", timeout_text);

    if (node_opt->count() > 0) g.node = node;
    if (nodes_opt->count() > 0) {
      const char* lib = getenv("VIGIL_STDLIB");
      g.nodes = load_nodes(nodes_file, lib && *lib ? lib : VIGIL_STDLIB_DIR);
      if (!status->parsed()) throw UsageError("--nodes goes with status (one table across nodes)");
    }
    if (version->parsed()) {
      printf("vigil %s\n", VIGIL_VERSION);
      return 0;
    }
    if (help->parsed()) {
      if (help_of.empty()) {
        std::cout << app.help();
        return 0;
      }
      for (CLI::App* sub : app.get_subcommands({}))
        if (sub->get_name() == help_of) {
          std::cout << sub->help();
          return 0;
        }
      throw UsageError("help: no command '" + help_of + "'");
    }
    if (run->parsed()) {
      launch = RunLaunch{run_opts.collect(), g.socket};
      return 0;
    }
    if (check->parsed()) return cmd_check(check_opts.collect(), check_path);
    if (discover->parsed()) {
      if (discover_args.force && discover_args.write.empty())
        throw UsageError("discover: --force goes with --write");
      if (discover_args.last) {
        if (!discover_args.write.empty())
          throw UsageError("discover: --last prints the daemon's answer (its text is in --json); "
                           "--write goes without it");
        return cmd_discover_last(g, discover_args);
      }
      if (discover_args.stdlib.empty()) discover_args.stdlib = default_stdlib_dir();
      return cmd_discover(discover_args);
    }
    if (status->parsed()) {
      if (status_args.all && !status_args.json) throw UsageError("status: --all goes with --json");
      if (status_args.state && (status_args.names.empty() || status_args.json || status_args.check))
        throw UsageError("status: --state needs NAMEs and goes without --json and --check");
      return cmd_status(g, status_args);
    }
    for (const auto& s : simple) {
      if (!app.got_subcommand(s->cmd)) continue;
      if ((s->cmd == "pause" || s->cmd == "resume") && s->all == !s->name.empty())
        throw UsageError(s->cmd + " needs one watch or group NAME, or --all");
      return cmd_simple(g, *s);
    }
    if (set->parsed()) {
      if (set_args.to_default == (set_value->count() > 0))
        throw UsageError("set needs NAME KEY VALUE, or NAME KEY --default");
      return cmd_set(g, set_args);
    }
    if (sig->parsed()) return cmd_signal(g, signal_args);
    if (wait->parsed()) {
      if (wait_timeout_opt->count() > 0) {
        double t = parse_duration(wait_timeout);
        if (!(t >= 0) || t > 7 * 86400)
          throw UsageError("wait --timeout: expected a duration from 0 to 7 days (e.g. 30, 2.5s, "
                           "5m), got '" + wait_timeout + "'");
        wait_args.timeout = t;
      }
      return cmd_wait(g, wait_args);
    }
    if (logs->parsed()) {
      if (logs_n_opt->count() > 0) logs_args.lines = count_arg("-n", logs_n, 0);
      return cmd_logs(g, logs_args);
    }
    if (events->parsed()) {
      if (events_n_opt->count() > 0) events_args.n = count_arg("-n", events_n, 1);
      return cmd_events(g, events_args);
    }
    if (dumps->parsed()) return cmd_dumps(g, dumps_args);
    if (token->parsed()) return cmd_token(token_args);
    if (top->parsed()) {
      if (g.node) throw UsageError("top reads the local socket; over --node use status or /metrics");
      top_args.socket = g.socket;
      top_args.timeout = g.call.timeout;
      return run_top(top_args);
    }
    throw UsageError("no command");
  } catch (const UsageError& e) {
    return usage_error(e);
  } catch (const nlohmann::json::exception& e) {  // a wrong type; absent keys read as null
    std::cerr << "vigil: unexpected reply from " << g.socket << ": " << e.what() << "\n";
    return kExitNoDaemon;
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<RunLaunch> launch;
  int rc = parse_and_run(argc, argv, launch);
  if (!launch) return rc;
  try {
    return cmd_run(launch->args, launch->socket);
  } catch (const UsageError& e) {
    return usage_error(e);
  }
}

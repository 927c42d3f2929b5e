// The control commands: one request to the daemon each, its reply printed
// for people (or as JSON with --json), and an exit code scripts can use.
#include <cstdio>
#include <iostream>
#include <string>

#include "host/cli/cli.hpp"
#include "host/core/clock.hpp"
#include "host/core/json_read.hpp"
#include "host/core/strings.hpp"

using nlohmann::json;

namespace vigil::cli {

double parse_timeout(const std::string& what, const std::string& v) {
  double t = parse_duration(v);
  if (!(t > 0) || t > 7 * 86400)
    throw UsageError(what +
                     ": expected seconds, more than 0 and at most 7 days (e.g. 10, 2.5, 30s, 2m), "
                     "got '" +
                     v + "'");
  return t;
}

std::optional<json> request(const Global& g, const json& req, int& code) {
  if (g.node) return remote_request(g, *g.node, req, code);
  std::string error;
  ControlCall call = g.call;
  auto reply = control_request(g.socket, req, error, &call);
  if (!reply) {
    std::cerr << "vigil: " << error << "\n";
    code = call.timed_out ? kExitSilent : kExitNoDaemon;
    return std::nullopt;
  }
  // A reply of another shape (something else on the socket, another
  // version) is said, never a crash of the CLI.
  if (!reply->is_object()) {
    std::cerr << "vigil: unexpected reply from " << g.socket << "\n";
    code = kExitNoDaemon;
    return std::nullopt;
  }
  return reply;
}

namespace {

// The reply, when the daemon said ok; else the error is printed.
std::optional<json> ok_or_say(std::optional<json> reply, int& code) {
  if (!reply) return std::nullopt;
  if (!reply->value("ok", false)) {
    std::cerr << "vigil: " << reply->value("error", std::string("failed")) << "\n";
    code = kExitFailed;
    return std::nullopt;
  }
  return reply;
}

bool clean_exit(const json& e) {
  if (!e.is_object()) return false;
  if (e.contains("success")) return field(e, "success") == true;
  return field(e, "code") == 0 && field(e, "signal").is_null() && !e.contains("error");
}

}  // namespace

// The one mapping from a state to an LSB status code (docs/operations.md,
// "Status codes").
int lsb_code(const json& it) {
  const json& st = field(it, "state");
  std::string s = st.is_string() ? st.get<std::string>() : "";
  // A group: kind "group" (inspect), or a status group object (which has
  // "group" and no "name"; a member watch's "group" names its group).
  bool group = it.contains("kind") ? field(it, "kind") == "group"
                                   : it.contains("group") && !it.contains("name");
  if (group) {
    if (s == "ready") return kLsbRunning;
    if (s == "degraded" || s == "restarting") return kLsbDegraded;
    // standby: a clustered group held by another node, not running here.
    if (s == "stopped" || s == "exhausted" || s == "standby") return kLsbStopped;
    return kLsbUnknown;
  }
  if (s == "running") return field(it, "ready") == true ? kLsbRunning : kLsbDegraded;
  if (s == "starting" || s == "backoff" || s == "waiting") return kLsbDegraded;
  if (s == "stopped" || s == "exhausted") return kLsbStopped;
  // Paused: vigil does not act on it, the process runs or it does not.
  if (s == "paused") return field(it, "pid").is_null() ? kLsbStopped : kLsbRunning;
  // Finished by design (restart.on, oneshot): fine if it succeeded.
  // The daemon says which (`outcome`, by the rule's success_exit).
  if (s == "done") {
    const json& o = field(it, "outcome");
    bool ok = o.is_string() ? o == "success" : clean_exit(field(it, "last_exit"));
    return ok ? kLsbRunning : kLsbStopped;
  }
  return kLsbUnknown;  // a state this CLI does not know: say so, do not guess
}

int cmd_status(Global& g, const StatusArgs& a) {
  if (!g.nodes.empty()) return cmd_status_nodes(g, a);
  int code = 0;
  if (a.names.empty()) {
    auto reply = a.check ? request(g, {{"cmd", "status"}}, code)
                         : ok_or_say(request(g, {{"cmd", "status"}}, code), code);
    if (!reply) return a.check ? kLsbUnknown : code;
    if (a.check) {
      // Everything: the worst code of every watch and top-level group.
      int worst = kLsbRunning;
      for (const auto& w : field(*reply, "watches")) worst = std::max(worst, lsb_code(w));
      for (const auto& gr : field(*reply, "groups")) worst = std::max(worst, lsb_code(gr));
      if (a.json) std::cout << json{{"code", worst}}.dump(2) << "\n";
      return worst;
    }
    if (a.json && a.all) {
      reply->erase("ok");
      std::cout << reply->dump(2) << "\n";
    } else if (a.json) {
      // The watches, then the remote watches (told apart by their "node").
      json list = (*reply)["watches"];
      for (const auto& r : field(*reply, "remote")) list.push_back(r);
      std::cout << list.dump(2) << "\n";
    } else {
      print_status(*reply);
    }
    return 0;
  }
  json req = {{"cmd", "inspect"}, {"names", a.names}, {"events", a.events}};
  auto reply = request(g, req, code);
  if (!reply) return a.check ? kLsbUnknown : code;
  if (!reply->value("ok", false)) {
    std::cerr << "vigil: " << reply->value("error", std::string("failed")) << "\n";
    return a.check ? kLsbUnknown : kExitFailed;
  }
  int worst = kLsbRunning;
  for (const auto& n : field(*reply, "unknown")) {
    std::cerr << "vigil: no watch or group named '" << n.get<std::string>() << "'\n";
    worst = kLsbUnknown;
  }
  const json& items = field(*reply, "items");
  for (const auto& it : items) worst = std::max(worst, lsb_code(it));
  if (a.json) {
    std::cout << items.dump(2) << "\n";
  } else {
    bool first = true;
    for (const auto& it : items) {
      if (!first) printf("\n");
      first = false;
      print_inspect(it);
    }
  }
  if (a.check) return worst;
  return field(*reply, "unknown").empty() ? 0 : kExitFailed;
}

int cmd_simple(Global& g, const SimpleArgs& a) {
  json req = {{"cmd", a.cmd}};
  if (!a.name.empty()) req["name"] = a.name;
  if (a.all) req["all"] = true;
  if (a.keep) req["keep"] = true;
  if (!a.to.empty()) req["to"] = a.to;
  if (a.cmd == "failover") req["kind"] = "group";  // POST /v1/groups/NAME/failover
  int code = 0;
  auto reply = ok_or_say(request(g, req, code), code);
  if (!reply) return code;
  if (a.json) {
    std::cout << reply->dump(2) << "\n";
    return 0;
  }
  if (a.cmd == "reload") {
    printf("reloaded: %d watches\n", (*reply)["watches"].get<int>());
  } else if (a.cmd == "explain") {
    print_explain(*reply);
  } else if (a.cmd == "cluster") {
    print_cluster(*reply);
  } else if (a.cmd == "failover") {
    printf("%s: stopping here, then handing over%s\n", a.name.c_str(),
           a.to.empty() ? "" : (" to " + a.to).c_str());
  } else if (reply->contains("group") && (*reply)["group"].is_object()) {
    printf("%s: %s\n", field((*reply)["group"], "group").get<std::string>().c_str(),
           field((*reply)["group"], "state").get<std::string>().c_str());
  } else if (reply->contains("watch") && (*reply)["watch"].is_object()) {
    const auto& w = (*reply)["watch"];
    printf("%s: %s\n", field(w, "name").get<std::string>().c_str(),
           field(w, "state").get<std::string>().c_str());
  }
  return 0;
}

int cmd_set(Global& g, const SetArgs& a) {
  json req = {{"cmd", "set"}, {"name", a.name}, {"key", a.key}};
  if (a.to_default)
    req["default"] = true;
  else
    req["value"] = a.value;
  int code = 0;
  auto reply = ok_or_say(request(g, req, code), code);
  if (!reply) return code;
  if (a.json) {
    std::cout << reply->dump(2) << "\n";
    return 0;
  }
  printf("%s %s = %s%s\n", a.name.c_str(), a.key.c_str(),
         (*reply)["value"].get<std::string>().c_str(),
         a.to_default ? " (the rule's value)" : "");
  return 0;
}

int cmd_signal(Global& g, const SignalArgs& a) {
  if (!parse_signal(a.signal))
    throw UsageError("signal: unknown signal '" + a.signal +
                     "' (a name such as HUP, USR1, SIGTERM, or a number)");
  int code = 0;
  auto reply =
      ok_or_say(request(g, {{"cmd", "signal"}, {"name", a.name}, {"signal", a.signal}}, code), code);
  if (!reply) return code;
  if (a.json) {
    std::cout << reply->dump(2) << "\n";
    return 0;
  }
  std::string sig = field(*reply, "signal").get<std::string>();
  for (const auto& s : field(*reply, "sent")) {
    std::string pids;
    for (const auto& p : field(s, "pids")) pids += (pids.empty() ? "" : " ") + p.dump();
    printf("%s: %s sent to pid %s\n", field(s, "watch").get<std::string>().c_str(), sig.c_str(),
           pids.c_str());
  }
  for (const auto& s : field(*reply, "skipped"))
    std::cerr << "vigil: " << s.get<std::string>() << "\n";
  return 0;
}

int cmd_wait(Global& g, const WaitArgs& a) {
  json req = {{"cmd", "wait"}, {"name", a.name}, {"until", a.until}};
  if (a.timeout) req["timeout_ms"] = static_cast<int64_t>(*a.timeout * 1000 + 0.5);
  int code = 0;
  // The daemon holds the reply until the wait is decided and says it is
  // alive meanwhile (a space every 250 ms): --timeout of the connection
  // still catches a daemon that stopped running its loop.
  auto reply = request(g, req, code);
  if (!reply) return kLsbUnknown;
  if (!reply->value("ok", false)) {
    std::cerr << "vigil: " << reply->value("error", std::string("failed")) << "\n";
    return kExitFailed;
  }
  std::string result = field(*reply, "result").get<std::string>();
  std::string state = field(*reply, "state").is_string()
                          ? field(*reply, "state").get<std::string>()
                          : "";
  if (a.json) std::cout << reply->dump(2) << "\n";
  if (result == "reached") {
    if (!a.json) printf("%s: %s\n", a.name.c_str(), state.c_str());
    return 0;
  }
  if (result == "unknown") {
    std::cerr << "vigil: no watch or group named '" << a.name << "'\n";
    return kLsbUnknown;
  }
  if (result == "timeout") {
    std::cerr << "vigil: " << a.name << " is " << state << ", not " << a.until << ", after "
              << fmt_seconds(*a.timeout) << "s\n";
    return kExitWaitTimeout;
  }
  std::cerr << "vigil: " << a.name << " is " << state << ": it will not become " << a.until
            << " without an operator\n";
  return kExitFailed;
}

int cmd_events(Global& g, const EventsArgs& a) {
  json req = {{"cmd", "events"}};
  double history_since = -1;
  size_t history_limit = 0;
  if (a.n) {
    req["n"] = *a.n;
    history_limit = static_cast<size_t>(*a.n);
  }
  if (!a.watch.empty()) req["watch"] = a.watch;
  if (!a.id.empty()) req["id"] = a.id;
  if (!a.since.empty()) {
    double secs = parse_duration(a.since);
    if (secs < 0) throw UsageError("--since: expected a duration such as 90s, 30m, 1h, 2d");
    history_since = wall_seconds() - secs;
    if (!a.n) req["n"] = 1;  // only the history path is needed
  }
  std::string error;
  ControlCall call = g.call;
  std::optional<json> reply;
  if (g.node) {
    // The history is a file of the node's: over the API, the node's ring.
    if (history_since >= 0)
      throw UsageError("events --since reads the node's history file: run it on that node");
    int code = 0;
    reply = request(g, req, code);
    if (!reply) return code;
  } else {
    reply = control_request(g.socket, req, error, &call);
  }
  if (!reply && history_since >= 0) {
    // The history outlives the daemon: what happened before it stopped.
    std::cerr << "vigil: " << error << "; reading the history in " << a.state_dir << "\n";
    reply = json{{"ok", true}, {"events", json::array()}, {"history", a.state_dir + "/events.jsonl"}};
  }
  if (!reply) {
    std::cerr << "vigil: " << error << "\n";
    return call.timed_out ? kExitSilent : kExitNoDaemon;
  }
  int code = 0;
  if (!ok_or_say(reply, code)) return code;
  if (history_since >= 0) {
    json filter = {{"since", rfc3339(history_since, true)}};
    if (!a.watch.empty()) filter["watch"] = a.watch;
    if (!a.id.empty()) filter["id"] = a.id;
    auto history =
        read_history(reply->value("history", std::string()), filter, history_limit, error);
    if (!history) {
      std::cerr << "vigil: " << error << "\n";
      return kExitFailed;
    }
    (*reply)["events"] = std::move(*history);
  }
  if (a.json)
    std::cout << (*reply)["events"].dump(2) << "\n";
  else
    print_events(field(*reply, "events"));
  return 0;
}

int cmd_dumps(Global& g, const DumpsArgs& a) {
  json req = {{"cmd", "dumps"}};
  if (!a.watch.empty()) req["watch"] = a.watch;
  int code = 0;
  auto reply = ok_or_say(request(g, req, code), code);
  if (!reply) return code;
  if (a.json) {
    std::cout << (*reply)["dumps"].dump(2) << "\n";
    return 0;
  }
  for (const auto& d : (*reply)["dumps"])
    printf("%-20s %-26s %-6s %3d files %10llu bytes  %s\n",
           field(d, "watch").get<std::string>().c_str(),
           field(d, "time").get<std::string>().c_str(),
           field(d, "trigger").get<std::string>().c_str(), field(d, "files").get<int>(),
           static_cast<unsigned long long>(field(d, "bytes").get<uint64_t>()),
           field(d, "path").get<std::string>().c_str());
  return 0;
}

}  // namespace vigil::cli

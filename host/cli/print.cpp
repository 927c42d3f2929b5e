// What the control commands print for people (--json prints the replies).
#include <cstdio>
#include <string>

#include "host/cli/cli.hpp"
#include "host/core/json_read.hpp"
#include "host/core/strings.hpp"

using nlohmann::json;

namespace vigil::cli {

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

namespace {
std::string text_of(const json& v) {
  if (v.is_null()) return "-";
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string last_exit_text(const json& e) {
  if (e.is_null()) return "-";
  if (e.contains("error")) return "failed: " + field(e, "error").get<std::string>();
  if (!field(e, "signal").is_null()) return "signal " + field(e, "signal").get<std::string>();
  return "exit " + std::to_string(field(e, "code").get<int>());
}

// One group and its members, indented by depth.
void print_group(const json& g, int depth);

// A group's members, one line each (nested groups with their heading).
void print_members(const json& g, int depth) {
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

// A clustered group's holding: "active here", "standby (held by nodeb)".
std::string holding_text(const json& c) {
  std::string role = text_of(field(c, "role"));
  std::string holder = field(c, "holder").is_string() ? field(c, "holder").get<std::string>() : "";
  std::string out = role + (holder.empty() ? ", no holder" : ", held by " + holder);
  if (field(c, "lease_left").is_number()) {
    char buf[48];
    snprintf(buf, sizeof buf, ", lease %.1fs left", field(c, "lease_left").get<double>());
    out += buf;
  }
  return out;
}

void print_group(const json& g, int depth) {
  std::string cluster = g.contains("cluster") ? "; " + holding_text(field(g, "cluster")) : "";
  printf("%*s%s %s (%s, %llu restarts%s)\n", depth * 2, "",
         field(g, "group").get<std::string>().c_str(), field(g, "state").get<std::string>().c_str(),
         field(g, "strategy").get<std::string>().c_str(),
         static_cast<unsigned long long>(field(g, "restarts").get<uint64_t>()), cluster.c_str());
  print_members(g, depth);
}

}  // namespace

namespace {
// One table row per watch; `node` leads it when the table spans nodes.
void print_watch_rows(const json& r, const char* node) {
  for (const auto& w : field(r, "watches")) {
    std::string pid = field(w, "pid").is_null() ? "-" : std::to_string(field(w, "pid").get<int>());
    if (w.contains("count")) pid = std::to_string(field(w, "count").get<int>()) + " procs";
    std::string up =
        field(w, "uptime").is_null() ? "-" : human_duration(field(w, "uptime").get<double>());
    // mode = "observe": vigil watches it and never acts.
    std::string state = field(w, "state").get<std::string>();
    if (w.contains("mode") && field(w, "mode") == "observe") state += " (observe)";
    if (node) printf("%-12s ", node);
    printf("%-24s %-10s %-8s %-9s %-8llu %s\n", field(w, "name").get<std::string>().c_str(),
           state.c_str(), pid.c_str(), up.c_str(),
           static_cast<unsigned long long>(field(w, "restarts").get<uint64_t>()),
           last_exit_text(field(w, "last_exit")).c_str());
  }
}
void print_heading(bool nodes) {
  if (nodes) printf("%-12s ", "NODE");
  printf("%-24s %-10s %-8s %-9s %-8s %s\n", "NAME", "STATE", "PID", "UPTIME", "RESTARTS",
         "LAST EXIT");
}
}  // namespace

void print_status(const json& r) {
  print_heading(false);
  print_watch_rows(r, nullptr);
  // Containers: what the engine says of each container watch (the row
  // above has its process: the container's main process).
  bool heading = false;
  for (const auto& w : field(r, "watches")) {
    if (!w.contains("container")) continue;
    const json& c = field(w, "container");
    if (!heading) {
      printf("\n%-24s %-32s %-12s %-10s %-9s %s\n", "CONTAINER", "IMAGE", "ID", "STATE", "HEALTH",
             "RESTARTS");
      heading = true;
    }
    std::string health = text_of(field(c, "health"));
    // A counted set has no container of its own: its number of members.
    std::string id = c.contains("members") ? std::to_string(field(c, "members").size()) + " running"
                     : field(c, "id").is_null() ? "-"
                                                : text_of(field(c, "id"));
    printf("%-24s %-32s %-12s %-10s %-9s %llu (engine %llu)\n",
           field(w, "name").get<std::string>().c_str(), text_of(field(c, "image")).c_str(),
           id.c_str(),
           text_of(field(c, "state")).c_str(), health.empty() ? "-" : health.c_str(),
           static_cast<unsigned long long>(field(w, "restarts").get<uint64_t>()),
           static_cast<unsigned long long>(field(c, "engine_restarts").get<uint64_t>()));
  }
  if (r.contains("groups") && !field(r, "groups").empty()) {
    printf("\nGROUPS\n");
    for (const auto& g : field(r, "groups")) print_group(g, 0);
  }
  // Remote watches: another node's watch, its state as that node says
  // (or unknown while the node does not answer).
  if (!field(r, "remote").empty()) {
    printf("\n%-24s %-12s %-10s %-9s %s\n", "REMOTE", "NODE", "STATE", "READY", "PEER");
    for (const auto& w : field(r, "remote"))
      printf("%-24s %-12s %-10s %-9s %s\n", field(w, "name").get<std::string>().c_str(),
             field(w, "node").get<std::string>().c_str(),
             field(w, "state").get<std::string>().c_str(),
             field(w, "ready").get<bool>() ? "ready" : "not ready",
             field(w, "peer").get<std::string>().c_str());
  }
}

void print_status_nodes(const std::vector<NodeStatus>& nodes) {
  print_heading(true);
  for (const auto& n : nodes) {
    if (n.reply.is_null()) {
      printf("%-12s (%s)\n", n.name.c_str(), n.error.c_str());
      continue;
    }
    print_watch_rows(n.reply, n.name.c_str());
  }
  bool heading = false;
  for (const auto& n : nodes) {
    if (n.reply.is_null() || !n.reply.contains("groups") || field(n.reply, "groups").empty())
      continue;
    if (!heading) printf("\nGROUPS\n");
    heading = true;
    printf("%s:\n", n.name.c_str());
    for (const auto& g : field(n.reply, "groups")) print_group(g, 1);
  }
}

namespace {
std::string plain(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

}  // namespace

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

void print_events(const json& events) {
  for (const auto& e : events)
    printf("%s %s %-8s %s\n", field(e, "time").get<std::string>().c_str(),
           field(e, "id").get<std::string>().c_str(),
           field(e, "severity").get<std::string>().c_str(),
           field(e, "message").get<std::string>().c_str());
}

// `vigil status NAME`: one watch or group, everything known about it.
void print_inspect(const json& it) {
  bool group = field(it, "kind") == "group";
  bool remote = field(it, "kind") == "remote";
  std::string name = text_of(field(it, "name"));
  printf("%s %s: %s\n", group ? "group" : remote ? "remote watch" : "watch", name.c_str(),
         text_of(field(it, "state")).c_str());
  if (remote) {
    printf("  where:     %s\n", text_of(field(it, "where")).c_str());
    printf("  node:      %s (peer %s)\n", text_of(field(it, "node")).c_str(),
           text_of(field(it, "peer")).c_str());
    printf("  there:     %s\n", text_of(field(it, "remote")).c_str());
    printf("  ready:     %s\n", field(it, "ready") == true ? "yes" : "no");
  } else if (group) {
    printf("  strategy:  %s (%s)\n", text_of(field(it, "strategy")).c_str(),
           text_of(field(it, "where")).c_str());
    printf("  restarts:  %s\n", text_of(field(it, "restarts")).c_str());
    if (it.contains("cluster")) {
      const json& c = field(it, "cluster");
      printf("  cluster:   %s (node %s, adapter %s)\n", holding_text(c).c_str(),
             text_of(field(c, "node")).c_str(), text_of(field(c, "adapter")).c_str());
      for (const auto& [node, at] : field(c, "failed_on").items())
        printf("  failed on: %s at %s\n", node.c_str(), text_of(at).c_str());
    }
    printf("  members:\n");
    print_members(it, 1);
  } else {
    printf("  where:     %s\n", text_of(field(it, "where")).c_str());
    if (field(it, "mode") == "observe")
      printf("  mode:      observe (vigil alerts but never starts, stops or kills it)\n");
    std::string pid = text_of(field(it, "pid"));
    if (it.contains("count")) pid = text_of(field(it, "count")) + " processes";
    printf("  pid:       %s%s\n", pid.c_str(),
           field(it, "adopted") == true ? " (adopted)" : "");
    const json& up = field(it, "uptime");
    printf("  uptime:    %s\n", up.is_number() ? human_duration(up.get<double>()).c_str() : "-");
    printf("  ready:     %s\n", field(it, "ready") == true ? "yes" : "no");
    printf("  restarts:  %s\n", text_of(field(it, "restarts")).c_str());
    printf("  last exit: %s\n", last_exit_text(field(it, "last_exit")).c_str());
    if (it.contains("group")) printf("  group:     %s\n", text_of(field(it, "group")).c_str());
    if (it.contains("container")) {
      const json& c = field(it, "container");
      printf("  container: %s %s (%s), image %s, health %s, restart policy %s%s\n",
             text_of(field(c, "id")).c_str(), text_of(field(c, "name")).c_str(),
             text_of(field(c, "state")).c_str(), text_of(field(c, "image")).c_str(),
             text_of(field(c, "health")).c_str(), text_of(field(c, "restart_policy")).c_str(),
             field(c, "observes") == true ? " (the engine restarts it; vigil counts)" : "");
    }
    if (it.contains("waiting_for") && !field(it, "waiting_for").empty()) {
      std::string names;
      for (const auto& n : field(it, "waiting_for")) names += (names.empty() ? "" : ", ") + text_of(n);
      printf("  waiting:   for %s\n", names.c_str());
    }
  }
  const json& b = field(it, "budget");
  if (b.is_object()) {
    std::string owner = text_of(field(b, "owner"));
    printf("  budget:    %s of %s restarts used within %s, %s left%s\n",
           text_of(field(b, "used")).c_str(), text_of(field(b, "limit")).c_str(),
           field(b, "within").is_number() ? human_duration(field(b, "within").get<double>()).c_str()
                                          : "-",
           text_of(field(b, "left")).c_str(),
           owner != name ? (" (group " + owner + "'s budget)").c_str() : "");
  }
  if (it.contains("overrides")) {
    for (const auto& [k, v] : field(it, "overrides").items())
      printf("  set:       %s = %s (vigil set; --default restores the rule's)\n", k.c_str(),
             text_of(v).c_str());
  }
  if (it.contains("probes")) {
    printf("  probes:\n");
    for (const auto& p : field(it, "probes")) {
      std::string result = !p.contains("passing")      ? "not running"
                           : field(p, "last").is_null() ? "not run yet"
                           : field(p, "passing") == true ? "passing"
                                                         : "failing: " + text_of(field(p, "reason"));
      printf("    %-16s %-7s %-10s %s (last %s, %s fails)\n", text_of(field(p, "name")).c_str(),
             text_of(field(p, "kind")).c_str(),
             field(p, "readiness") == true ? "readiness" : "liveness", result.c_str(),
             text_of(field(p, "last")).c_str(), text_of(field(p, "fails")).c_str());
    }
  }
  const json& c = field(it, "checks");
  if (c.is_object() && !field(c, "checks").empty()) {
    const json& healthy = field(c, "healthy_every");
    if (healthy.is_number() && healthy != field(c, "every"))
      printf("  checks (every %ss while healthy, every %ss once one is bad):\n", text_of(healthy).c_str(),
             text_of(field(c, "every")).c_str());
    else
      printf("  checks (every %ss):\n", text_of(field(c, "every")).c_str());
    for (const auto& k : field(c, "checks")) {
      std::string seen = !k.contains("bad")      ? "not sampled yet"
                         : field(k, "bad") == true ? "BAD for " + text_of(field(k, "for_seconds")) + "s"
                                                   : "ok";
      printf("    %-12s above %-12s %s\n", text_of(field(k, "check")).c_str(),
             text_of(field(k, "threshold")).c_str(), seen.c_str());
    }
  }
  const json& d = field(it, "decision");
  if (d.is_object())
    printf("  decision:  %s (%s)%s\n", text_of(d.value("action", json("?"))).c_str(),
           text_of(d.value("at", json("?"))).c_str(),
           d.contains("why") ? ("; " + text_of(field(d, "why"))).c_str() : "");
  const json& evs = field(it, "events");
  if (evs.is_array() && !evs.empty()) {
    printf("  last events:\n");
    for (const auto& e : evs)
      printf("    %s %s %s\n", text_of(field(e, "time")).c_str(), text_of(field(e, "id")).c_str(),
             text_of(field(e, "message")).c_str());
  }
}

// `vigil cluster`: the adapter, the nodes and what each holds, then the
// clustered groups as this node sees them.
void print_cluster(const json& r) {
  printf("adapter %s, this node %s\n", text_of(field(r, "adapter")).c_str(),
         text_of(field(r, "node")).c_str());
  printf("\n%-16s %s\n", "NODE", "HOLDS");
  for (const auto& n : field(r, "nodes")) {
    std::string holds;
    for (const auto& g : field(n, "holds")) holds += (holds.empty() ? "" : ", ") + text_of(g);
    std::string name = text_of(field(n, "node")) + (field(n, "self") == true ? " *" : "");
    printf("%-16s %s\n", name.c_str(), holds.empty() ? "-" : holds.c_str());
  }
  if (field(r, "groups").empty()) return;
  printf("\n%-20s %-10s %s\n", "GROUP", "STATE", "HOLDING");
  for (const auto& g : field(r, "groups"))
    printf("%-20s %-10s %s\n", text_of(field(g, "group")).c_str(),
           text_of(field(g, "state")).c_str(), holding_text(g).c_str());
}

}  // namespace vigil::cli

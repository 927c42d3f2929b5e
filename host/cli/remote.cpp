// The CLI on other nodes: `vigil --node URL ...` sends the same requests as
// on the control socket to a node's remote API (the routes of
// host/control/routes.hpp, over HTTPS with libcurl: host/net/http_client),
// and `vigil --nodes FILE status` prints one table across the peers a Lua
// file declares.
#include <cstdio>
#include <iostream>

#include "host/cli/cli.hpp"
#include "host/control/routes.hpp"
#include "host/net/http_client.hpp"
#include "host/remote/http_transport.hpp"
#include "lua/runtime.hpp"

using nlohmann::json;

namespace vigil::cli {

std::vector<PeerConfig> load_nodes(const std::string& file, const std::string& stdlib_dir) {
  RuntimeOptions ro;
  ro.stdlib_dir = stdlib_dir;
  RuleRuntime rt(ro, HostContext{});
  LoadResult res = rt.load(file);
  if (!res.ok) {
    std::string all;
    for (const auto& e : res.errors) all += "\n  " + e;
    throw UsageError("--nodes " + file + ":" + all);
  }
  std::vector<PeerConfig> nodes;
  for (const auto& p : rt.peers()) nodes.push_back(PeerConfig::from_json(p));
  if (nodes.empty()) throw UsageError("--nodes " + file + ": declares no peer (peer \"name\" { url = ... })");
  return nodes;
}

std::optional<json> remote_request(const Global& g, const PeerConfig& node, const json& req, int& code,
                                   std::string* error_out) {
  auto fail = [&](const std::string& e, int c) -> std::optional<json> {
    if (error_out) *error_out = e;
    else std::cerr << "vigil: " << e << "\n";
    code = c;
    return std::nullopt;
  };
  std::string error;
  auto call = control_http_call(req, error);
  if (!call) return fail(error, kExitUsage);
  HttpClientRequest r;
  if (!peer_request(node, r, error)) return fail(error, kExitUsage);
  r.method = call->method;
  r.url += call->target;
  if (!call->body.empty() || r.method == "POST") {
    r.body = call->body.empty() ? "{}" : call->body;
    r.headers.push_back({"Content-Type", "application/json"});
  }
  if (r.bearer_token.empty())
    if (const char* t = getenv("VIGIL_TOKEN"); t && *t) r.bearer_token = t;
  // As on the socket: the node may be silent for --timeout (a held stop
  // sends spaces meanwhile), however long the whole command takes.
  auto t = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(g.call.timeout));
  r.timeout = Duration::zero();
  r.connect_timeout = t;
  r.idle_timeout = t;
  HttpResponse resp = http_run(std::move(r));
  std::string where = node.name.empty() ? node.url : node.name + " (" + node.url + ")";
  if (!resp.ok())
    return fail(where + ": " + resp.error,
                resp.failure == HttpResponse::Failure::Timeout ? kExitSilent : kExitNoDaemon);
  json reply = json::parse(resp.body, nullptr, false);
  if (!reply.is_object() && (resp.status == 404 || resp.status == 405))
    return fail(where + ": the remote API does not serve '" + req.value("cmd", std::string()) +
                    "' (HTTP " + std::to_string(resp.status) + "; docs/api.md lists what it does)",
                kExitFailed);
  if (!reply.is_object())
    return fail(where + ": unexpected reply (HTTP " + std::to_string(resp.status) + ")",
                kExitNoDaemon);
  if (resp.status == 401 || resp.status == 403) {
    reply["ok"] = false;
    reply["error"] = where + ": " + std::to_string(resp.status) + " " +
                     reply.value("error", std::string("refused"));
  }
  return reply;
}

int cmd_status_nodes(Global& g, const StatusArgs& a) {
  if (!a.names.empty() || a.check)
    throw UsageError("--nodes: status of every watch only (no NAMEs, no --check); use --node URL "
                     "for one node's details");
  std::vector<NodeStatus> out;
  int code = 0;
  bool all_failed = true;
  for (const auto& n : g.nodes) {
    NodeStatus s;
    s.name = n.name;
    int c = 0;
    std::string error;
    auto reply = remote_request(g, n, {{"cmd", "status"}}, c, &error);
    if (!reply) {
      s.error = error;
    } else if (!reply->value("ok", false)) {
      s.error = reply->value("error", std::string("refused"));
    } else {
      s.reply = std::move(*reply);
      all_failed = false;
    }
    out.push_back(std::move(s));
  }
  if (a.json) {
    json j = json::object();
    for (auto& s : out) {
      if (s.reply.is_null()) j[s.name] = {{"error", s.error}};
      else j[s.name] = a.all ? s.reply : s.reply["watches"];
    }
    std::cout << j.dump(2) << "\n";
  } else {
    print_status_nodes(out);
  }
  for (const auto& s : out)
    if (s.reply.is_null()) code = kExitFailed;
  return all_failed ? kExitNoDaemon : code;
}

}  // namespace vigil::cli

// RuleRuntime: one Lua 5.4 state holding the rules. The host sees Lua only
// through this class (lua.h stays inside lua/). A reload builds a new
// runtime, loads and validates every rule file, and only then replaces the
// live one; while validating, rules can declare but not act.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/cluster/cluster.hpp"
#include "host/cluster/hub.hpp"
#include "host/core/events.hpp"
#include "host/log/sink.hpp"
#include "host/proc/proc_events.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

class EventLoop;
class RemoteHub;
struct RuntimeState;

struct HostContext {
  EventLoop* loop = nullptr;
  EventLog* log = nullptr;
  Supervisor* supervisor = nullptr;
  ProcEvents* proc_events = nullptr;        // null: not available (vigil.proc.on refuses)
  ProbeEngine* probes = nullptr;            // null: vigil.probe checks fail with a reason
  const ClusterOptions* cluster = nullptr;  // null: reboots refused
  RemoteHub* remote = nullptr;              // null: vigil.remote refuses
};

struct RuntimeOptions {
  std::string stdlib_dir = VIGIL_STDLIB_DIR;
  double callback_budget = 0.5;  // seconds a rule callback may run
  double load_budget = 5.0;      // seconds loading all rule files may take
  size_t memory_limit = 256u << 20;
  // vigil run --api-listen ...: {listen, cert, key, client_ca, tokens,
  // operators}, declared as if by api { } before the rule files; null: none.
  nlohmann::json api;
};

struct LoadResult {
  bool ok = true;
  std::vector<std::string> errors;  // "file:line: message"
  std::vector<std::string> files;
};

class RuleRuntime : public Policy {
 public:
  // `validating`: a candidate (reload, `vigil check`) whose rules must not
  // act until go_live().
  RuleRuntime(RuntimeOptions options, HostContext host);
  ~RuleRuntime() override;
  RuleRuntime(const RuleRuntime&) = delete;
  RuleRuntime& operator=(const RuleRuntime&) = delete;

  // Loads one rule file, or every *.lua file of a directory in name order.
  // The directory's lib/ (or the file's directory's lib/) is on the
  // require path, after nothing and before stdlib/.
  LoadResult load(const std::string& path);

  const std::vector<Declaration>& declarations() const;
  // Hands the declarations over (the supervisor keeps its own copy of
  // each spec; the runtime need not carry a second one).
  std::vector<Declaration> take_declarations();
  std::vector<GroupDecl> take_groups();

  // The sinks the rules declared with vigil.log.sink (their formatters
  // call into this state while it lives).
  std::vector<SinkSpec> take_sinks();

  // The state becomes the live one: actions are allowed, timers armed,
  // events delivered.
  void go_live();

  // Policy: asks the rules what to do about an ended process, a count out
  // of its limits, a process in a bad state.
  void on_exit(Unit& unit, const ExitInfo& exit) override;
  bool arm(Unit& unit) override;
  void on_count(Unit& unit, const nlohmann::json& ev) override;
  void on_state(Unit& unit, const nlohmann::json& ev) override;
  void on_hung(Unit& unit, const nlohmann::json& ev) override;
  void run_probe(Unit& unit, size_t index, uint64_t token) override;

  // `vigil set`: returns the normalized value, or an error in `error`.
  std::optional<std::string> set_param(const std::string& watch, const std::string& key,
                                       const std::string& value, std::string& error);
  // `vigil set NAME KEY --default`: the key back to its declared value;
  // returns that value's text, or an error in `error`.
  std::optional<std::string> reset_param(const std::string& name, const std::string& key,
                                         std::string& error);
  // The restart budget deciding for a watch or group now: {owner, used,
  // left, limit, within (seconds)}, or null (no such name, no rules).
  nlohmann::json budget(const std::string& name);

  // The rules' `api { }` declaration (normalized by vigil.api: listen,
  // cert, key, client_ca, tokens, operators, where), or null.
  nlohmann::json api();
  // A rule kind's closed schema as data ("watch", "group":
  // vigil.schema.describe of the stdlib's own schema), or null for an
  // unknown kind. GET /v1/schema/KIND; the dashboard's form is made of it.
  nlohmann::json schema(const std::string& kind);
  // The container engine the rules need: {"socket": path or ""} when they
  // declare a container or a docker block; null when they need none.
  nlohmann::json docker();
  // The rules' `discover { }` schedule ({every, window, scans, where},
  // seconds; normalized by vigil.discover), or null.
  nlohmann::json discover_schedule();
  // What the rules set in vigil.discover (weights, threshold, supervisors,
  // shells, interpreters, secret_names): input.tuning of a discovery run
  // in another state.
  nlohmann::json discover_tuning();
  // The declared peers, in order (vigil.peer, normalized), as an array.
  nlohmann::json peers();
  // The declared remote watches (watch "db@nodeb" { on = "nodeb" }), in
  // name order: {name, on, remote, where} each.
  nlohmann::json remote_watches();
  // The rules' cluster { } block as the host takes it, or nullopt.
  const std::optional<ClusterConfig>& cluster_config() const;
  // The daemon's cluster hub (made at the first cluster block), for
  // vigil.cluster's holder, nodes and failover; null: none.
  void set_cluster_hub(ClusterHub* hub);
  // vigil.api.authorize(identity, method, path), under the callback
  // budget: true, or false with the reason. A hook that fails, overruns
  // or answers nonsense denies (fail closed).
  struct Verdict {
    bool allowed = false;
    std::string reason;
  };
  Verdict authorize(const nlohmann::json& identity, const std::string& method,
                    const std::string& path);

  // Delivers a host event to rule subscribers (vigil.on): queued, and
  // delivered from the loop once the host callback that emitted it has
  // returned (so handlers see the unit after the policy's decision).
  void on_event(const Event& ev);
  // A kernel process event, for vigil.proc.on subscribers (delivered the
  // same way).
  void on_proc_event(const ProcEvent& ev);
  unsigned wants_proc_events() const;  // ProcEvents bits the subscriptions need

  // `vigil discover`: hands the observed processes to vigil.discover's
  // run (stdlib/vigil/discover.lua, after any rules loaded) and returns
  // its answer; null and `error` when it failed (lua/lua_discover.cpp).
  nlohmann::json discover(const nlohmann::json& input, std::string& error);

  // Runs a chunk in the state (tests, and `vigil eval` later).
  bool run_string(const std::string& code, const std::string& chunkname, std::string& error);

  size_t memory_used() const;
  // A full collection (after a load has started its watches: the
  // garbage of a thousand starts is freed before malloc_trim).
  void collect();
  // Values on the state's Lua stack between calls (tests: it stays 0).
  int stack_top() const;

 private:
  std::unique_ptr<RuntimeState> state_;
};

}  // namespace vigil

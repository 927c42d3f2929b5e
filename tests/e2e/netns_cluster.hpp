// Fixture for the cluster tests: a real 3-member etcd cluster, one member
// per network namespace, the namespaces joined by a bridge in a fourth
// (RECIPES-HA §1, plus --pre-vote=true: see start()). A Vigil daemon under test runs inside a member's
// namespace (Daemon::set_prefix(in_node(i))) and talks to its member at
// 127.0.0.1:2379; partition(i) takes that node off the bridge (its member
// and its daemon together), heal(i) puts it back.
//
// Names carry the test's pid (gtest_discover_tests runs each test in its
// own process), so tests run in parallel; addresses are the same in every
// test, each test's bridge being its own namespace. Teardown always runs
// (the destructor, also after a failed assertion): every process left in
// the test's namespaces is killed by pid, then the namespaces go (with the
// veths).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/e2e/harness.hpp"

namespace vigil::test {

class EtcdNetns {
 public:
  static constexpr int kMembers = 3;
  // Builds the namespaces and starts the members; waits (with a deadline)
  // until the cluster takes a write. ok() says whether it did.
  EtcdNetns();
  ~EtcdNetns();
  EtcdNetns(const EtcdNetns&) = delete;
  EtcdNetns& operator=(const EtcdNetns&) = delete;

  // Why a test that needs this cannot run here ("" when it can): not
  // root, no ip(8), no etcd.
  static std::string missing();

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& dir() const { return dir_; }

  // Members are numbered 1..3.
  std::string netns(int i) const { return prefix_ + "e" + std::to_string(i); }
  static std::string addr(int i) { return "10.203.0." + std::to_string(i); }
  // argv prefix that runs a command inside node i.
  std::vector<std::string> in_node(int i) const { return {"ip", "netns", "exec", netns(i)}; }
  pid_t member_pid(int i) const { return pids_[i - 1]; }
  // The end of member i's log (for failure messages).
  std::string member_log(int i) const;

  // Node i's link to the bridge down (its member and whatever runs in its
  // namespace are cut off from the others) / up again.
  bool partition(int i);
  bool heal(int i);
  // SIGKILL member i (and reap it) / start it again on its data dir.
  bool kill_member(int i);
  bool start_member(int i);

  // POST `body` to the v3 JSON gateway of node i's member, from inside
  // node i (127.0.0.1:2379). The reply body, parsed (null when curl
  // failed or timed out, e.g. while partitioned).
  nlohmann::json gateway(int i, const std::string& path, const nlohmann::json& body,
                         double timeout_s = 2) const;
  // A put / a range read of one key through node i's gateway. put is
  // true when the cluster accepted it; get is the value, "" when absent
  // or unreachable.
  bool put(int i, const std::string& key, const std::string& value) const;
  std::string get(int i, const std::string& key) const;
  // Waits until node i's member takes a write (false after `timeout`).
  bool wait_writable(int i, std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  // As Vigil keeps them under the default prefix "vigil", read through
  // node `via`: the holder of `group` (the election leader's value; ""
  // when none or unreachable), and whether NODE's key (on its lease) is
  // there.
  std::string holder(const std::string& group, int via = 3) const;
  bool node_live(const std::string& node, int via = 3) const;
  // The nodes campaigning for `group` (the candidates' values, the holder
  // first: lowest create revision).
  std::vector<std::string> candidates(const std::string& group, int via = 3) const;

  // A cluster block for a Vigil daemon on a node: its member at
  // 127.0.0.1:2379.
  static std::string cluster_block(const std::string& node, const std::string& ttl,
                                   const std::string& extra = "");

 private:
  bool sh(const std::string& cmd);
  void start(int i);

  std::string prefix_;  // e.g. "vc12345": netns <prefix>sw, <prefix>e1..3
  std::string dir_;     // data dirs and logs
  pid_t pids_[kMembers] = {-1, -1, -1};
  bool ok_ = false;
  std::string error_;
};

// Every event in a state dir's events.jsonl (all runs of that daemon),
// oldest first; readable after the daemon was killed.
std::vector<nlohmann::json> read_events(const std::string& state_dir);
// An event's wall time (its "time", RFC 3339 UTC with milliseconds) in
// seconds since the epoch.
double event_time(const nlohmann::json& event);

// When one node ran members of a group: from a member's process_started
// (VGL0101) to its exit (VGL0102) or stop (VGL0109), per pid, from one
// node's event log; `to` is +inf while still running at the log's end.
struct RunInterval {
  std::string node, watch;
  long pid = 0;
  double from = 0, to = 0;
};
std::vector<RunInterval> run_intervals(const std::vector<nlohmann::json>& events,
                                       const std::vector<std::string>& watches,
                                       const std::string& node);
// Pairs of intervals of different nodes that overlap in time, as text
// ("" when none): the proof that a group never ran on two nodes at once.
std::string overlaps(const std::vector<RunInterval>& a, const std::vector<RunInterval>& b);

// The group the scenarios and the bench run: "orders" of two tiers, db
// and app (app refuses to start without db), each tests/e2e/tools/tier.py
// with a TCP readiness probe on its port (the node's own: each node is a
// network namespace); clustered, on_exhausted = "failover", restart =
// { limit = 2, within = "1m" }, or group_extra instead of that budget.
extern const std::vector<std::string> kOrdersMembers;
std::string orders_rules(const std::string& node, const std::string& ttl,
                         const std::string& cluster_extra = "", const std::string& group_extra = "");

// A Vigil daemon inside node `index`'s namespace on `rules`. Its events
// are read from its events.jsonl (all runs), so that they can still be
// read after a kill -9.
struct VigilNode {
  std::string name;  // "node<index>"
  Daemon d;
  VigilNode(const EtcdNetns& c, int index, const std::string& rules);
  std::vector<nlohmann::json> events() const;
  // Events with `id` (for `watch`, "" any) after the first `from` lines.
  std::vector<nlohmann::json> find(const std::string& id, const std::string& watch = "",
                                   size_t from = 0) const;
  size_t mark() const { return events().size(); }
  bool wait(const std::string& id, const std::string& watch, size_t at_least = 1,
            std::chrono::milliseconds timeout = std::chrono::seconds(30), size_t from = 0) const;
  bool ready() const;         // every member of orders is ready
  bool none_running() const;  // no member of orders has a pid
  std::vector<RunInterval> runs() const;
  std::string log() const { return name + " stderr:\n" + d.output(); }
};

double now_wall();
// The latest end / the first start after `after` of these intervals.
double last_end(const std::vector<RunInterval>& runs);
double first_start_after(const std::vector<RunInterval>& runs, double after);

std::string base64(const std::string& s);
std::string unbase64(const std::string& s);

}  // namespace vigil::test

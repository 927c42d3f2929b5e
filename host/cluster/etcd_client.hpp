// EtcdClient: the etcd v3 JSON gateway (etcd 3.4's `/v3/...`), asynchronous
// on the loop's HttpClient. Every call is one POST; keys, values and
// election names travel base64 (done here), IDs and revisions as decimal
// strings, and proto3 leaves out false and zero fields (a failed txn has
// no "succeeded", a dead lease's keepalive no "TTL"): the typed calls below
// read them with those defaults. See docs/architecture.md (cluster) and
// RECIPES-HA §1 for the shapes.
//
// Several endpoints: a call that cannot reach one (connect, resolve, TLS,
// timeout, or etcd's "no leader"/"unavailable") is tried on the next, once
// each; the endpoint that answered stays the first choice. Nothing blocks:
// each call reports exactly once, later than the call itself, unless it was
// cancelled.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/loop/event_loop.hpp"
#include "host/net/http_client.hpp"

namespace vigil {

std::string base64_encode(std::string_view in);
// nullopt when `in` is not base64 (padding optional).
std::optional<std::string> base64_decode(std::string_view in);

// How EtcdClient sends a request: the loop's HttpClient in the daemon, a
// fake in unit tests. `done` runs exactly once, never inside post(),
// unless cancelled.
class EtcdTransport {
 public:
  virtual ~EtcdTransport() = default;
  virtual uint64_t post(HttpClientRequest request, std::function<void(const HttpResponse&)> done) = 0;
  virtual void cancel(uint64_t id) = 0;
};
std::unique_ptr<EtcdTransport> http_etcd_transport(EventLoop& loop);

struct EtcdClientOptions {
  std::vector<std::string> endpoints;  // "http://10.1.0.1:2379" (a path after the authority is kept)
  HttpTlsOptions tls;                  // https:// endpoints
  Duration timeout = std::chrono::seconds(2);          // per attempt, unless a call says otherwise
  Duration connect_timeout = std::chrono::seconds(1);  // per attempt
};

// One call's outcome.
struct EtcdResult {
  bool ok = false;           // a 2xx JSON answer without "error"
  bool unreachable = false;  // no endpoint answered (every attempt failed to connect or timed out)
  int code = 0;              // etcd's gRPC code when it refused (5 not found, 14 unavailable, ...)
  std::string error;         // in words, naming the endpoint: "http://127.0.0.1:2379: connection refused"
  std::string endpoint;      // the endpoint of the last attempt
  nlohmann::json body;       // the answer (object), also for an error
};

struct EtcdKv {
  std::string key;    // decoded
  std::string value;  // decoded
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

// What campaign returns and resign and fenced writes need: the winning
// candidate's key (`name/<lease hex>`) and its create revision.
struct EtcdLeader {
  std::string name;  // decoded
  std::string key;   // decoded
  int64_t rev = 0;   // the key's create revision: the fencing token
  int64_t lease = 0;
  bool valid() const { return rev > 0 && !key.empty(); }
};

// A txn's operations (put or delete one key).
struct EtcdOp {
  enum class Kind { Put, Delete } kind = Kind::Put;
  std::string key;
  std::string value;
  int64_t lease = 0;
  static EtcdOp put(std::string k, std::string v, int64_t lease = 0) {
    return {Kind::Put, std::move(k), std::move(v), lease};
  }
  static EtcdOp del(std::string k) { return {Kind::Delete, std::move(k), {}, 0}; }
};

class EtcdClient {
 public:
  using CallId = uint64_t;
  using Done = std::function<void(const EtcdResult&)>;

  EtcdClient(EtcdClientOptions options, std::unique_ptr<EtcdTransport> transport);
  ~EtcdClient();  // cancels every call; no callback runs
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Any gateway path ("/v3/kv/put") with a JSON body. `timeout` zero: the
  // options' per-attempt timeout.
  CallId call(std::string_view path, nlohmann::json body, Done done, Duration timeout = Duration::zero());
  void cancel(CallId id);
  size_t in_flight() const { return calls_.size(); }

  // Typed calls. The extra values are meaningful only when r.ok.
  // lease/grant: id and granted TTL (etcd may raise a TTL below its minimum).
  CallId lease_grant(double ttl, std::function<void(const EtcdResult&, int64_t id, int64_t ttl)> done,
                     Duration timeout = Duration::zero());
  // lease/keepalive: ttl 0 means the lease is gone (proto3 left TTL out).
  CallId lease_keepalive(int64_t id, std::function<void(const EtcdResult&, int64_t ttl)> done,
                         Duration timeout = Duration::zero());
  // lease/timetolive: ttl -1 when gone.
  CallId lease_timetolive(int64_t id, std::function<void(const EtcdResult&, int64_t ttl)> done,
                          Duration timeout = Duration::zero());
  CallId lease_revoke(int64_t id, Done done, Duration timeout = Duration::zero());
  // election/campaign blocks in etcd until this candidate leads: give it a
  // long timeout (a campaign cut by the timeout is withdrawn by etcd).
  CallId campaign(std::string_view name, int64_t lease, std::string_view value,
                  std::function<void(const EtcdResult&, const EtcdLeader&)> done, Duration timeout);
  // election/leader: nullopt (and r.ok) when the election has no leader.
  CallId leader(std::string_view name, std::function<void(const EtcdResult&, const std::optional<EtcdKv>&)> done,
                Duration timeout = Duration::zero());
  CallId resign(const EtcdLeader& leader, Done done, Duration timeout = Duration::zero());
  // kv/txn fenced on a key's create revision: `ops` run only if `key` still
  // has create revision `create_revision` (the election key we won).
  // succeeded false (and r.ok): nothing was written, the key is gone.
  CallId txn_if_created(std::string_view key, int64_t create_revision, const std::vector<EtcdOp>& ops,
                        std::function<void(const EtcdResult&, bool succeeded)> done,
                        Duration timeout = Duration::zero());
  // kv/range: one key, or every key starting with `key` when prefix.
  CallId range(std::string_view key, bool prefix, std::function<void(const EtcdResult&, const std::vector<EtcdKv>&)> done,
               Duration timeout = Duration::zero());
  CallId put(std::string_view key, std::string_view value, int64_t lease, Done done,
             Duration timeout = Duration::zero());
  CallId delete_range(std::string_view key, bool prefix, Done done, Duration timeout = Duration::zero());

  // The endpoint tried first now.
  const std::string& current_endpoint() const { return options_.endpoints[current_]; }
  // The endpoint a call in flight waits on ("" unknown id). A long call
  // (a campaign) on an endpoint the client has since moved off (an attempt
  // failed there) may be stuck on a member that lost its cluster.
  std::string endpoint_of(CallId id) const;
  const EtcdClientOptions& options() const { return options_; }

  // Proto3 JSON helpers (exposed for tests): an int64 given as a decimal
  // string or a number, 0 when absent or not a number.
  static int64_t json_int(const nlohmann::json& obj, std::string_view field);
  static EtcdKv parse_kv(const nlohmann::json& kv);
  // The end of the range of keys starting with `prefix` (etcd's range_end).
  static std::string prefix_end(std::string_view prefix);

 private:
  struct Call;
  void attempt(CallId id);
  void finish(CallId id, const HttpResponse& response);

  EtcdClientOptions options_;
  std::unique_ptr<EtcdTransport> transport_;
  size_t current_ = 0;
  CallId next_id_ = 1;
  std::unordered_map<CallId, std::unique_ptr<Call>> calls_;
};

}  // namespace vigil

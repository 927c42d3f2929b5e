#include "host/cluster/etcd_client.hpp"

#include <cstdlib>

namespace vigil {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// An attempt that did not reach etcd, or reached a member that cannot
// serve (no leader, unavailable): worth the next endpoint.
bool try_next(const HttpResponse& r, const nlohmann::json& body) {
  if (!r.ok()) return r.failure != HttpResponse::Failure::LineTooLong;
  if (r.status == 502 || r.status == 503 || r.status == 504) return true;
  if (body.is_object() && body.contains("code") && body["code"].is_number_integer()) {
    int code = body["code"].get<int>();
    // 14 Unavailable; 4 DeadlineExceeded ("etcdserver: request timed out")
    return code == 14 || code == 4;
  }
  return false;
}

class HttpEtcdTransport : public EtcdTransport {
 public:
  explicit HttpEtcdTransport(EventLoop& loop) : client_(HttpClient::for_loop(loop)) {}
  uint64_t post(HttpClientRequest request, std::function<void(const HttpResponse&)> done) override {
    return client_->start(std::move(request), {.on_headers = nullptr, .on_line = nullptr, .on_done = std::move(done)});
  }
  void cancel(uint64_t id) override { client_->cancel(id); }

 private:
  std::shared_ptr<HttpClient> client_;
};
}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = b64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::unique_ptr<EtcdTransport> http_etcd_transport(EventLoop& loop) {
  return std::make_unique<HttpEtcdTransport>(loop);
}

struct EtcdClient::Call {
  std::string path;
  std::string body;
  Done done;
  Duration timeout{};
  size_t attempts = 0;
  uint64_t request = 0;
  size_t endpoint = 0;  // of the attempt in flight
  std::string errors;  // of the endpoints tried, "; "-joined
};

EtcdClient::EtcdClient(EtcdClientOptions options, std::unique_ptr<EtcdTransport> transport)
    : options_(std::move(options)), transport_(std::move(transport)) {
  for (auto& e : options_.endpoints)
    while (!e.empty() && e.back() == '/') e.pop_back();
  if (options_.endpoints.empty()) options_.endpoints.push_back("http://127.0.0.1:2379");
}

EtcdClient::~EtcdClient() {
  for (auto& [id, call] : calls_)
    if (call->request) transport_->cancel(call->request);
}

EtcdClient::CallId EtcdClient::call(std::string_view path, nlohmann::json body, Done done, Duration timeout) {
  CallId id = next_id_++;
  auto c = std::make_unique<Call>();
  c->path = std::string(path);
  c->body = body.dump();
  c->done = std::move(done);
  c->timeout = timeout == Duration::zero() ? options_.timeout : timeout;
  calls_.emplace(id, std::move(c));
  attempt(id);
  return id;
}

void EtcdClient::cancel(CallId id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  if (it->second->request) transport_->cancel(it->second->request);
  calls_.erase(it);
}

std::string EtcdClient::endpoint_of(CallId id) const {
  auto it = calls_.find(id);
  return it == calls_.end() ? "" : options_.endpoints[it->second->endpoint];
}

void EtcdClient::attempt(CallId id) {
  Call& c = *calls_.at(id);
  const std::string& endpoint = options_.endpoints[current_];
  HttpClientRequest q;
  q.method = "POST";
  q.url = endpoint + c.path;
  q.headers = {{"Content-Type", "application/json"}};
  q.body = c.body;
  q.timeout = c.timeout;
  q.connect_timeout = std::min(options_.connect_timeout, c.timeout);
  q.tls = options_.tls;
  c.attempts++;
  c.endpoint = current_;
  c.request = transport_->post(std::move(q), [this, id](const HttpResponse& r) { finish(id, r); });
}

void EtcdClient::finish(CallId id, const HttpResponse& response) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Call& c = *it->second;
  c.request = 0;
  const std::string endpoint = options_.endpoints[c.endpoint];
  nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_object()) body = nlohmann::json::object();
  if (try_next(response, body)) {
    std::string why = !response.ok() ? response.error
                                      : body.value("message", std::string("HTTP ") + std::to_string(response.status));
    if (!c.errors.empty()) c.errors += "; ";
    c.errors += endpoint + ": " + why;
    // Move on from the endpoint that failed, unless another call already
    // did (a late failure must not move the client back onto it).
    if (current_ == c.endpoint) current_ = (current_ + 1) % options_.endpoints.size();
    if (c.attempts < options_.endpoints.size()) {
      attempt(id);
      return;
    }
    EtcdResult r;
    r.unreachable = !response.ok();
    r.error = c.errors;
    r.endpoint = endpoint;
    r.code = body.contains("code") && body["code"].is_number_integer() ? body["code"].get<int>() : 0;
    r.body = std::move(body);
    Done done = std::move(c.done);
    calls_.erase(it);
    done(r);
    return;
  }
  EtcdResult r;
  r.endpoint = endpoint;
  if (!response.ok()) {
    r.error = endpoint + ": " + response.error;
  } else if (body.contains("error") || response.status / 100 != 2) {
    r.code = body.contains("code") && body["code"].is_number_integer() ? body["code"].get<int>() : 0;
    r.error = endpoint + ": " + body.value("message", body.value("error", "HTTP " + std::to_string(response.status)));
  } else {
    r.ok = true;
  }
  r.body = std::move(body);
  Done done = std::move(c.done);
  calls_.erase(it);
  done(r);
}

int64_t EtcdClient::json_int(const nlohmann::json& obj, std::string_view field) {
  if (!obj.is_object()) return 0;
  auto it = obj.find(std::string(field));
  if (it == obj.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number()) return static_cast<int64_t>(it->get<double>());
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    return end && *end == '\0' && !s.empty() ? v : 0;
  }
  return 0;
}

EtcdKv EtcdClient::parse_kv(const nlohmann::json& kv) {
  EtcdKv out;
  if (!kv.is_object()) return out;
  out.key = base64_decode(kv.value("key", "")).value_or("");
  out.value = base64_decode(kv.value("value", "")).value_or("");
  out.create_revision = json_int(kv, "create_revision");
  out.mod_revision = json_int(kv, "mod_revision");
  out.lease = json_int(kv, "lease");
  return out;
}

std::string EtcdClient::prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = char(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdClient::CallId EtcdClient::lease_grant(double ttl, std::function<void(const EtcdResult&, int64_t, int64_t)> done,
                                           Duration timeout) {
  return call("/v3/lease/grant", {{"TTL", static_cast<int64_t>(ttl + 0.999)}},
              [done = std::move(done)](const EtcdResult& r) {
                done(r, json_int(r.body, "ID"), json_int(r.body, "TTL"));
              },
              timeout);
}

EtcdClient::CallId EtcdClient::lease_keepalive(int64_t id, std::function<void(const EtcdResult&, int64_t)> done,
                                               Duration timeout) {
  return call("/v3/lease/keepalive", {{"ID", std::to_string(id)}},
              [done = std::move(done)](const EtcdResult& r) {
                const auto& result = r.body.contains("result") ? r.body["result"] : r.body;
                done(r, json_int(result, "TTL"));
              },
              timeout);
}

EtcdClient::CallId EtcdClient::lease_timetolive(int64_t id, std::function<void(const EtcdResult&, int64_t)> done,
                                                Duration timeout) {
  return call("/v3/lease/timetolive", {{"ID", std::to_string(id)}},
              [done = std::move(done)](const EtcdResult& r) { done(r, json_int(r.body, "TTL")); }, timeout);
}

EtcdClient::CallId EtcdClient::lease_revoke(int64_t id, Done done, Duration timeout) {
  return call("/v3/lease/revoke", {{"ID", std::to_string(id)}}, std::move(done), timeout);
}

EtcdClient::CallId EtcdClient::campaign(std::string_view name, int64_t lease, std::string_view value,
                                        std::function<void(const EtcdResult&, const EtcdLeader&)> done,
                                        Duration timeout) {
  nlohmann::json body = {{"name", base64_encode(name)}, {"lease", std::to_string(lease)},
                         {"value", base64_encode(value)}};
  return call("/v3/election/campaign", std::move(body),
              [done = std::move(done)](const EtcdResult& r) {
                EtcdLeader l;
                if (r.ok && r.body.contains("leader")) {
                  const auto& j = r.body["leader"];
                  l.name = base64_decode(j.value("name", "")).value_or("");
                  l.key = base64_decode(j.value("key", "")).value_or("");
                  l.rev = json_int(j, "rev");
                  l.lease = json_int(j, "lease");
                }
                done(r, l);
              },
              timeout);
}

EtcdClient::CallId EtcdClient::leader(std::string_view name,
                                      std::function<void(const EtcdResult&, const std::optional<EtcdKv>&)> done,
                                      Duration timeout) {
  return call("/v3/election/leader", {{"name", base64_encode(name)}},
              [done = std::move(done)](const EtcdResult& r) {
                if (r.ok && r.body.contains("kv")) return done(r, parse_kv(r.body["kv"]));
                // "election: no leader" is an answer, not a failure.
                if (!r.ok && !r.unreachable && r.body.value("error", "").find("no leader") != std::string::npos) {
                  EtcdResult none = r;
                  none.ok = true;
                  none.error.clear();
                  return done(none, std::nullopt);
                }
                done(r, std::nullopt);
              },
              timeout);
}

EtcdClient::CallId EtcdClient::resign(const EtcdLeader& leader, Done done, Duration timeout) {
  nlohmann::json l = {{"name", base64_encode(leader.name)}, {"key", base64_encode(leader.key)},
                      {"rev", std::to_string(leader.rev)}, {"lease", std::to_string(leader.lease)}};
  return call("/v3/election/resign", {{"leader", std::move(l)}}, std::move(done), timeout);
}

EtcdClient::CallId EtcdClient::txn_if_created(std::string_view key, int64_t create_revision,
                                              const std::vector<EtcdOp>& ops,
                                              std::function<void(const EtcdResult&, bool)> done, Duration timeout) {
  nlohmann::json success = nlohmann::json::array();
  for (const auto& op : ops) {
    if (op.kind == EtcdOp::Kind::Put) {
      nlohmann::json put = {{"key", base64_encode(op.key)}, {"value", base64_encode(op.value)}};
      if (op.lease) put["lease"] = std::to_string(op.lease);
      success.push_back({{"requestPut", std::move(put)}});
    } else {
      success.push_back({{"requestDeleteRange", {{"key", base64_encode(op.key)}}}});
    }
  }
  nlohmann::json body = {
      {"compare", nlohmann::json::array({{{"target", "CREATE"},
                                          {"key", base64_encode(key)},
                                          {"create_revision", std::to_string(create_revision)},
                                          {"result", "EQUAL"}}})},
      {"success", std::move(success)}};
  return call("/v3/kv/txn", std::move(body),
              [done = std::move(done)](const EtcdResult& r) {
                done(r, r.ok && r.body.value("succeeded", false));
              },
              timeout);
}

EtcdClient::CallId EtcdClient::range(std::string_view key, bool prefix,
                                     std::function<void(const EtcdResult&, const std::vector<EtcdKv>&)> done,
                                     Duration timeout) {
  nlohmann::json body = {{"key", base64_encode(key)}};
  if (prefix) body["range_end"] = base64_encode(prefix_end(key));
  return call("/v3/kv/range", std::move(body),
              [done = std::move(done)](const EtcdResult& r) {
                std::vector<EtcdKv> kvs;
                if (r.ok && r.body.contains("kvs") && r.body["kvs"].is_array())
                  for (const auto& kv : r.body["kvs"]) kvs.push_back(parse_kv(kv));
                done(r, kvs);
              },
              timeout);
}

EtcdClient::CallId EtcdClient::put(std::string_view key, std::string_view value, int64_t lease, Done done,
                                   Duration timeout) {
  nlohmann::json body = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease) body["lease"] = std::to_string(lease);
  return call("/v3/kv/put", std::move(body), std::move(done), timeout);
}

EtcdClient::CallId EtcdClient::delete_range(std::string_view key, bool prefix, Done done, Duration timeout) {
  nlohmann::json body = {{"key", base64_encode(key)}};
  if (prefix) body["range_end"] = base64_encode(prefix_end(key));
  return call("/v3/kv/deleterange", std::move(body), std::move(done), timeout);
}

}  // namespace vigil

#include "host/container/docker_engine.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "host/core/fd.hpp"
#include "host/core/pidfd.hpp"
#include "host/net/http_server.hpp"  // percent_encode

namespace vigil {
namespace {

using json = nlohmann::json;

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number()) return static_cast<int64_t>(it->get<double>());
  if (it->is_string()) return std::strtoll(it->get<std::string>().c_str(), nullptr, 10);
  return 0;
}

const json& obj(const json& j, const char* key) {
  static const json empty = json::object();
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : empty;
}

std::map<std::string, std::string> string_map(const json& j) {
  std::map<std::string, std::string> m;
  if (!j.is_object()) return m;
  for (auto& [k, v] : j.items()) m[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return m;
}

std::vector<std::string> test_of(const json& config) {
  std::vector<std::string> out;
  auto hc = config.find("Healthcheck");
  if (hc == config.end() || !hc->is_object()) return out;
  auto t = hc->find("Test");
  if (t == hc->end() || !t->is_array()) return out;
  for (auto& x : *t)
    if (x.is_string()) out.push_back(x.get<std::string>());
  if (!out.empty() && out[0] == "NONE") out.clear();
  return out;
}

// RFC 3339 "2026-12-07T11:59:01.123456789Z" (or with an offset) to unix seconds.
double rfc3339(const std::string& s) {
  struct tm tm{};
  const char* p = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!p) return 0;
  double t = static_cast<double>(::timegm(&tm));
  if (*p == '.') {
    double frac = std::strtod(p, nullptr);
    t += frac;
    ++p;
    while (*p >= '0' && *p <= '9') ++p;
  }
  if (*p == '+' || *p == '-') {
    int sign = *p == '+' ? 1 : -1;
    int hh = std::atoi(p + 1), mm = std::atoi(p + 4);
    t -= sign * (hh * 3600 + mm * 60);
  }
  return t;
}

// The engine's multiplexed output (exec, logs): frames of an 8-byte
// header (byte 0 the stream, 1 stdout or 2 stderr; bytes 1-3 zero; bytes
// 4-7 the payload's length, big-endian) and the payload. Visits every
// frame in order (a truncated last one as far as it goes) and returns
// true when every header is well formed; false, visiting nothing, when
// `raw` is not framed (a Tty's raw output, or under 8 bytes).
template <class Fn>
bool each_frame(std::string_view raw, Fn fn) {
  if (raw.size() < 8) return false;
  auto length = [raw](size_t p) {
    return size_t((uint32_t(uint8_t(raw[p + 4])) << 24) | (uint32_t(uint8_t(raw[p + 5])) << 16) |
                  (uint32_t(uint8_t(raw[p + 6])) << 8) | uint32_t(uint8_t(raw[p + 7])));
  };
  for (size_t p = 0; p + 8 <= raw.size(); p += 8 + length(p))
    if (uint8_t(raw[p]) > 2 || raw[p + 1] || raw[p + 2] || raw[p + 3]) return false;
  for (size_t p = 0; p + 8 <= raw.size(); p += 8 + length(p))
    fn(int(uint8_t(raw[p])), raw.substr(p + 8, std::min(length(p), raw.size() - (p + 8))));
  return true;
}

ExecResult exec_error(std::string why) {
  ExecResult r;
  r.error = std::move(why);
  return r;
}

std::string seconds_words(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", s);
  return b;
}

}  // namespace

EngineConfig EngineConfig::from_environment(const std::string& socket) {
  EngineConfig c;
  if (const char* h = std::getenv("DOCKER_HOST"); h && *h) c.host = h;
  if (!socket.empty()) c.host = socket.find("://") == std::string::npos ? "unix://" + socket : socket;
  return c;
}

std::unique_ptr<ContainerEngine> make_docker_engine(EventLoop& loop, const EngineConfig& config) {
  return std::make_unique<DockerEngine>(loop, config);
}

DockerEngine::DockerEngine(EventLoop& loop, EngineConfig config)
    : loop_(loop), config_(std::move(config)), http_(HttpClient::for_loop(loop)) {
  const std::string& h = config_.host;
  if (h.rfind("unix://", 0) == 0) {
    unix_socket_ = h.substr(7);
    base_ = "http://d";
  } else if (h.rfind("tcp://", 0) == 0) {
    base_ = "http://" + h.substr(6);
  } else if (h.rfind("http://", 0) == 0) {
    base_ = h;
  } else if (!h.empty() && h[0] == '/') {
    unix_socket_ = h;
    base_ = "http://d";
  } else if (h.find("://") != std::string::npos) {
    bad_host_ = "unsupported address (unix://PATH, tcp://HOST:PORT or http://HOST:PORT; no TLS, no ssh)";
    base_ = "http://invalid";
  } else {
    base_ = "http://" + h;
  }
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
}

DockerEngine::~DockerEngine() {
  *alive_ = false;
  for (RequestId id : in_flight_) http_->cancel(id);
  if (retry_) loop_.cancel(retry_);
}

void DockerEngine::later(std::function<void()> f) {
  std::weak_ptr<bool> alive = alive_;
  loop_.post([alive, f = std::move(f)] {
    if (auto a = alive.lock(); a && *a) f();
  });
}

RequestId DockerEngine::call(const std::string& method, const std::string& path, std::string body,
                             Reply done, double timeout, size_t max_body) {
  if (!bad_host_.empty()) {
    later([done = std::move(done)] {
      HttpResponse r;
      r.error = "unsupported address";
      r.failure = HttpResponse::Failure::Other;
      done(r);
    });
    return 0;
  }
  HttpClientRequest q;
  q.method = method;
  q.url = base_ + "/v" + config_.api + path;
  q.unix_socket = unix_socket_;
  q.body = std::move(body);
  if (method == "POST" || method == "PUT") q.headers.emplace_back("Content-Type", "application/json");
  double t = timeout < 0 ? config_.timeout : timeout;
  q.timeout = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(t));
  q.connect_timeout = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double>(std::min(t > 0 ? t : 10.0, 10.0)));
  q.max_body = max_body;
  auto holder = std::make_shared<RequestId>(0);
  RequestId id = http_->start(q, {.on_headers = nullptr, .on_line = nullptr, .on_done = [this, holder, done = std::move(done)](const HttpResponse& r) {
                                    in_flight_.erase(*holder);
                                    done(r);  // last: it may destroy the engine
                                  }});
  *holder = id;
  in_flight_.insert(id);
  return id;
}

std::string DockerEngine::transport_error(const HttpResponse& r) const {
  std::string why = r.error;
  if (!bad_host_.empty()) why = bad_host_;
  if (!unix_socket_.empty() && r.failure == HttpResponse::Failure::Connect) {
    struct stat st{};
    if (::stat(unix_socket_.c_str(), &st) != 0 && errno == ENOENT) why = "no such file";
    else if (st.st_mode && !S_ISSOCK(st.st_mode)) why = "not a socket";
  }
  return "no engine at " + config_.host + ": " + why;
}

std::string DockerEngine::error_of(const HttpResponse& r, const std::string& what) const {
  if (!r.ok()) return transport_error(r);
  std::string msg;
  try {
    auto j = json::parse(r.body);
    if (j.is_object()) msg = str(j, "message");
  } catch (const std::exception&) {
  }
  // A 404 with the engine's JSON message is a missing object; a 404
  // without one is a route the engine does not have.
  if (r.status == 404 && !msg.empty() && !what.empty()) return "no such container: " + what;
  if (r.status == 404 && msg.empty())
    return "the engine has no such API call (404 " + r.body.substr(0, 60) + ")";
  if (msg.empty()) msg = r.body.substr(0, 200);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  return "the engine answered " + std::to_string(r.status) + (msg.empty() ? "" : ": " + msg);
}

// ---- pure helpers

bool DockerEngine::version_at_least(const std::string& have, const std::string& need) {
  auto parse = [](const std::string& v) {
    int a = 0, b = 0;
    std::sscanf(v.c_str(), "%d.%d", &a, &b);
    return std::pair(a, b);
  };
  return parse(have) >= parse(need);
}

ContainerInfo DockerEngine::info_from_list(const json& j) {
  ContainerInfo c;
  c.id = str(j, "Id");
  if (auto n = j.find("Names"); n != j.end() && n->is_array() && !n->empty() && (*n)[0].is_string())
    c.name = (*n)[0].get<std::string>();
  if (!c.name.empty() && c.name[0] == '/') c.name.erase(0, 1);
  c.image = str(j, "Image");
  c.image_id = str(j, "ImageID");
  if (!c.image_id.empty() && c.image_id.rfind("sha256:", 0) != 0) c.image_id = "sha256:" + c.image_id;
  c.labels = string_map(obj(j, "Labels"));
  c.status = str(j, "State");
  c.running = c.status == "running";
  c.created = static_cast<double>(num(j, "Created"));
  return c;
}

ContainerInfo DockerEngine::info_from_inspect(const json& j) {
  ContainerInfo c;
  c.id = str(j, "Id");
  c.name = str(j, "Name");
  if (!c.name.empty() && c.name[0] == '/') c.name.erase(0, 1);
  const json& config = obj(j, "Config");
  const json& state = obj(j, "State");
  c.image = str(config, "Image");
  c.image_id = str(j, "Image");
  if (!c.image_id.empty() && c.image_id.rfind("sha256:", 0) != 0) c.image_id = "sha256:" + c.image_id;
  c.labels = string_map(obj(config, "Labels"));
  c.status = str(state, "Status");
  c.running = state.value("Running", false);
  c.pid = static_cast<pid_t>(num(state, "Pid"));
  if (!c.running) c.pid = 0;
  c.exit_code = static_cast<int>(num(state, "ExitCode"));
  c.started_at = str(state, "StartedAt");
  c.finished_at = str(state, "FinishedAt");
  c.health = str(obj(state, "Health"), "Status");
  c.restart_count = num(j, "RestartCount");
  std::string policy = str(obj(obj(j, "HostConfig"), "RestartPolicy"), "Name");
  c.restart_policy = policy.empty() ? "no" : policy;
  c.healthcheck = test_of(config);
  if (auto cr = j.find("Created"); cr != j.end()) {
    if (cr->is_string()) c.created = rfc3339(cr->get<std::string>());
    else if (cr->is_number()) c.created = cr->get<double>();
  }
  c.inspected = true;
  c.raw = j;
  return c;
}

std::optional<ContainerEvent> DockerEngine::parse_event(std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  std::string type = str(j, "Type");
  if (type.empty()) type = str(j, "type");
  if (type != "container") return std::nullopt;
  ContainerEvent ev;
  const json& actor = obj(j, "Actor");
  ev.id = str(actor, "ID");
  if (ev.id.empty()) ev.id = str(j, "id");
  ev.action = str(j, "Action");
  if (ev.action.empty()) ev.action = str(j, "status");
  ev.attributes = string_map(obj(actor, "Attributes"));
  if (auto n = ev.attributes.find("name"); n != ev.attributes.end()) ev.name = n->second;
  // Docker: "health_status: healthy"; Podman: "health_status" with an attribute.
  if (ev.action.rfind("health_status", 0) == 0) {
    if (auto c = ev.action.find(": "); c != std::string::npos) ev.health = ev.action.substr(c + 2);
    ev.action = "health_status";
    if (auto h = ev.attributes.find("health_status"); ev.health.empty() && h != ev.attributes.end())
      ev.health = h->second;
  } else if (auto c = ev.action.find(':'); c != std::string::npos) {
    ev.action = ev.action.substr(0, c);  // "exec_die: sh -c ..." (Docker)
  }
  if (ev.action == "die") {
    auto e = ev.attributes.find("exitCode");
    if (e == ev.attributes.end()) e = ev.attributes.find("containerExitCode");
    if (e != ev.attributes.end()) ev.exit_code = std::atoi(e->second.c_str());
  }
  if (int64_t n = num(j, "timeNano")) ev.time = static_cast<double>(n) / 1e9;
  else ev.time = static_cast<double>(num(j, "time"));
  return ev;
}

bool DockerEngine::demultiplex(std::string_view raw, std::string& out, std::string& err, size_t limit) {
  out.clear();
  err.clear();
  bool framed = each_frame(raw, [&](int stream, std::string_view payload) {
    std::string& dst = stream == 2 ? err : out;
    if (dst.size() < limit) dst.append(payload.substr(0, limit - dst.size()));
  });
  if (!framed) {
    out = std::string(raw.substr(0, limit));
    return raw.empty();
  }
  return true;
}

bool DockerEngine::matches(const ContainerMatch& m, const ContainerInfo& c) {
  if (!m.name.empty()) {
    std::string n = m.name[0] == '/' ? m.name.substr(1) : m.name;
    if (c.name != n) return false;
  }
  if (!m.id.empty()) {
    if (m.id.size() < 12 || c.id.rfind(m.id, 0) != 0) return false;
  }
  for (auto& [k, v] : m.labels) {
    auto it = c.labels.find(k);
    if (it == c.labels.end() || (!v.empty() && it->second != v)) return false;
  }
  auto label_is = [&](const char* k, const std::string& v) {
    if (v.empty()) return true;
    auto it = c.labels.find(k);
    return it != c.labels.end() && it->second == v;
  };
  return label_is("com.docker.compose.project", m.compose_project) &&
         label_is("com.docker.compose.service", m.compose_service);
}

// ---- the watch

void DockerEngine::set_listener(EngineListener* l) {
  listener_ = l;
  ++generation_;
  if (stream_) http_->cancel(stream_), in_flight_.erase(stream_), stream_ = 0;
  if (version_call_) http_->cancel(version_call_), in_flight_.erase(version_call_), version_call_ = 0;
  if (retry_) loop_.cancel(retry_), retry_ = 0;
  up_ = false;
  reported_ = false;
  backoff_ = std::chrono::milliseconds(100);
  uint64_t gen = generation_;
  if (l) later([this, gen] {
    if (gen == generation_) connect();
  });
}

bool DockerEngine::set_up(const std::string& version) {
  bool change = !up_ || !reported_;
  up_ = true;
  reported_ = true;
  version_ = version;
  std::weak_ptr<bool> alive = alive_;
  if (change && listener_) listener_->engine_up(version);
  return !alive.expired();  // the listener may have destroyed the engine
}

bool DockerEngine::set_down(const std::string& why) {
  bool change = up_ || !reported_;
  up_ = false;
  reported_ = true;
  std::weak_ptr<bool> alive = alive_;
  if (change && listener_) listener_->engine_down(why);
  return !alive.expired();
}

void DockerEngine::reconnect_later() {
  if (!listener_ || retry_) return;
  Duration wait = backoff_;
  backoff_ = std::min<Duration>(backoff_ * 2, std::chrono::seconds(5));
  retry_ = loop_.after(wait, [this] {
    retry_ = 0;
    connect();
  });
}

void DockerEngine::connect() {
  if (!listener_) return;
  uint64_t gen = ++generation_;
  if (!bad_host_.empty()) {
    later([this] {
      if (listener_) set_down(transport_error(HttpResponse{}));
    });
    return;
  }
  version_call_ = call("GET", "/version", {}, [this, gen](const HttpResponse& r) {
    version_call_ = 0;
    if (gen != generation_) return;
    if (!r.ok()) {
      if (set_down(transport_error(r))) reconnect_later();
      return;
    }
    json j = json::parse(r.body, nullptr, false);
    std::string api = j.is_object() ? str(j, "ApiVersion") : "";
    if (r.status != 200 || api.empty()) {
      if (set_down("the engine at " + config_.host + " answered /version with " + std::to_string(r.status) +
                   (api.empty() ? " and no ApiVersion" : "")))
        reconnect_later();
      return;
    }
    if (!version_at_least(api, config_.min_api)) {
      if (set_down("the engine at " + config_.host + " speaks API " + api + "; vigil needs " + config_.min_api +
                   " or newer"))
        reconnect_later();
      return;
    }
    std::string version = str(j, "Version");
    if (version.empty()) version = api;
    // The stream: no timeout; its lines come as the engine has news.
    HttpClientRequest q;
    q.url = base_ + "/v" + config_.api + "/events?filters=" + percent_encode(R"({"type":["container"]})");
    q.unix_socket = unix_socket_;
    q.timeout = Duration::zero();
    q.connect_timeout = std::chrono::seconds(10);
    q.max_line = 256 * 1024;
    auto holder = std::make_shared<RequestId>(0);
    stream_ = http_->start(
        q, {.on_headers =
                [this, gen, version](const HttpResponse& h) {
                  if (gen != generation_) return;
                  if (h.status / 100 != 2) return;  // reported by on_done
                  backoff_ = std::chrono::milliseconds(100);
                  if (set_up(version) && gen == generation_) resync();
                },
            .on_line =
                [this, gen](std::string_view line) {
                  if (gen != generation_ || !listener_) return;
                  if (auto ev = parse_event(line)) listener_->container_event(*ev);
                },
            .on_done =
                [this, gen, holder](const HttpResponse& d) {
                  in_flight_.erase(*holder);
                  if (gen != generation_) return;
                  stream_ = 0;
                  // A stream that was answered and then ended (the engine
                  // restarting, a line too long) is not news by itself:
                  // the reconnection's /version says whether it is down.
                  bool alive = true;
                  if (d.status == 0) alive = set_down(transport_error(d));
                  else if (d.status / 100 != 2)
                    alive = set_down("the event stream of " + config_.host + ": " + error_of(d, ""));
                  if (alive) reconnect_later();
                }});
    *holder = stream_;
    in_flight_.insert(stream_);
  });
}

void DockerEngine::resync() {
  uint64_t gen = generation_;
  list_inspected(true, [this, gen](const std::string& error, std::vector<ContainerInfo> all) {
    if (gen != generation_ || !listener_) return;
    if (!error.empty()) return;  // the stream's end will tell
    listener_->resync(all);
  });
}

// ---- queries

void DockerEngine::list_inspected(bool all, Listed done) {
  find(ContainerMatch{}, all, std::move(done));
}

void DockerEngine::find(const ContainerMatch& m, bool all, Listed done) {
  auto shared_done = std::make_shared<Listed>(std::move(done));
  auto with_image = [this, m, all, shared_done](const std::string& want_image) {
    call("GET", std::string("/containers/json") + (all ? "?all=1" : ""), {},
         [this, m, want_image, shared_done](const HttpResponse& r) {
           if (!r.ok() || r.status != 200) return (*shared_done)(error_of(r, ""), {});
           json j = json::parse(r.body, nullptr, false);
           if (!j.is_array()) return (*shared_done)("the engine's container list is not a JSON array", {});
           std::vector<std::string> ids;
           for (auto& x : j) {
             if (!x.is_object()) continue;
             ContainerInfo c = info_from_list(x);
             if (!matches(m, c)) continue;
             if (!want_image.empty() && !c.image_id.empty() && c.image_id != want_image) continue;
             ids.push_back(c.id);
           }
           if (ids.empty()) return (*shared_done)("", {});
           struct Acc {
             size_t left;
             std::vector<std::optional<ContainerInfo>> got;
             std::string error;
           };
           auto acc = std::make_shared<Acc>(Acc{ids.size(), std::vector<std::optional<ContainerInfo>>(ids.size()), ""});
           for (size_t i = 0; i < ids.size(); ++i) {
             inspect(ids[i], [i, acc, want_image, shared_done](const std::string& error, const ContainerInfo& c) {
                    if (error.empty()) {
                      if (want_image.empty() || c.image_id == want_image) acc->got[i] = c;
                    } else if (error.rfind("no such container", 0) != 0 && acc->error.empty()) {
                      acc->error = error;  // a container removed since the list is left out
                    }
                    if (--acc->left) return;
                    std::vector<ContainerInfo> out;
                    for (auto& g : acc->got)
                      if (g) out.push_back(std::move(*g));
                    if (!acc->error.empty()) out.clear();
                    (*shared_done)(acc->error, std::move(out));
                  });
           }
         });
  };
  if (m.image.empty()) return with_image("");
  image_id(m.image, [with_image, shared_done](const std::string& error, const std::string& id) {
    if (!error.empty()) return (*shared_done)(error, {});
    if (id.empty()) return (*shared_done)("", {});  // no such image: nothing can match
    with_image(id);
  });
}

void DockerEngine::inspect(const std::string& id, Inspected done) {
  call("GET", "/containers/" + percent_encode(id) + "/json", {}, [this, id, done = std::move(done)](const HttpResponse& r) {
    if (!r.ok() || r.status != 200) return done(error_of(r, id), ContainerInfo{});
    json j = json::parse(r.body, nullptr, false);
    if (!j.is_object()) return done("the engine's answer for " + id + " is not JSON", ContainerInfo{});
    auto c = std::make_shared<ContainerInfo>(info_from_inspect(j));
    if (!c->healthcheck.empty() || c->image_id.empty()) return done("", *c);
    // No healthcheck of its own: the image's, if any.
    image_healthcheck(c->image_id, [c, done](const std::vector<std::string>& test) {
      c->healthcheck = test;
      done("", *c);
    });
  });
}

void DockerEngine::image_healthcheck(const std::string& image_id,
                                     std::function<void(const std::vector<std::string>&)> done) {
  // An image ID names content, so its config never changes: kept (bounded).
  if (auto it = image_health_.find(image_id); it != image_health_.end()) return done(it->second);
  auto& waiting = image_waiters_[image_id];
  waiting.push_back(std::move(done));
  if (waiting.size() > 1) return;  // asked already
  call("GET", "/images/" + percent_encode(image_id) + "/json", {}, [this, image_id](const HttpResponse& q) {
    std::vector<std::string> test;
    if (q.ok() && q.status == 200) {
      json ij = json::parse(q.body, nullptr, false);
      if (ij.is_object()) {
        test = test_of(obj(ij, "Config"));
        if (image_health_.size() >= 256) image_health_.clear();
        image_health_[image_id] = test;
      }
    }
    auto waiters = std::move(image_waiters_[image_id]);
    image_waiters_.erase(image_id);
    std::weak_ptr<bool> alive = alive_;
    for (auto& w : waiters) {
      auto a = alive.lock();
      if (!a || !*a) return;  // a callback destroyed the engine
      w(test);
    }
  });
}

void DockerEngine::image_id(const std::string& ref,
                            std::function<void(const std::string& error, const std::string& id)> done) {
  call("GET", "/images/" + percent_encode(ref) + "/json", {}, [this, done = std::move(done)](const HttpResponse& r) {
    if (r.ok() && r.status == 404) return done("", "");
    if (!r.ok() || r.status != 200) return done(error_of(r, ""), "");
    json j = json::parse(r.body, nullptr, false);
    std::string id = j.is_object() ? str(j, "Id") : "";
    if (!id.empty() && id.rfind("sha256:", 0) != 0) id = "sha256:" + id;
    done(id.empty() ? "the engine's answer for the image has no Id" : "", id);
  });
}

// ---- actions

void DockerEngine::simple(const std::string& method, const std::string& id, const std::string& path_tail,
                          std::string body, Done done, double extra_timeout) {
  call(method, "/containers/" + percent_encode(id) + path_tail, std::move(body),
       [this, id, done = std::move(done)](const HttpResponse& r) {
         if (r.ok() && (r.status / 100 == 2 || r.status == 304)) return done("");
         done(error_of(r, id));
       },
       config_.timeout + extra_timeout);
}

void DockerEngine::start(const std::string& id, Done done) { simple("POST", id, "/start", {}, std::move(done)); }

void DockerEngine::stop(const std::string& id, double timeout, Done done) {
  simple("POST", id, "/stop?t=" + std::to_string(static_cast<int>(std::ceil(timeout))), {}, std::move(done),
         timeout);
}

void DockerEngine::restart(const std::string& id, double timeout, Done done) {
  simple("POST", id, "/restart?t=" + std::to_string(static_cast<int>(std::ceil(timeout))), {}, std::move(done),
         timeout);
}

void DockerEngine::kill(const std::string& id, const std::string& signal, Done done) {
  simple("POST", id, "/kill?signal=" + percent_encode(signal.empty() ? "SIGKILL" : signal), {}, std::move(done));
}

void DockerEngine::remove(const std::string& id, bool force, Done done) {
  simple("DELETE", id, force ? "?force=1" : "", {}, std::move(done));
}

void DockerEngine::set_restart_policy(const std::string& id, const std::string& policy, Done done) {
  json body = {{"RestartPolicy", {{"Name", policy}}}};
  call("POST", "/containers/" + percent_encode(id) + "/update", body.dump(),
       [this, id, policy, done = std::move(done)](const HttpResponse& r) {
         if (r.ok() && r.status / 100 == 2) return done("");
         std::string e = error_of(r, id);
         // Podman 4.3 has no /containers/{id}/update: its 404 is plain "Not Found".
         if (e.rfind("the engine has no such API call", 0) == 0)
           e = "the engine cannot change the restart policy of " + id + " to \"" + policy +
               "\" (POST /containers/{id}/update answered 404 Not Found; Podman 4.3 has no such call)";
         done(e);
       });
}

void DockerEngine::create(const ContainerTemplate& t,
                          std::function<void(const std::string& error, const std::string& id)> done) {
  json body = {{"Image", t.image}, {"Labels", t.labels}, {"HostConfig", t.host_config}};
  if (!t.cmd.empty()) body["Cmd"] = t.cmd;
  std::string path = "/containers/create";
  if (!t.name.empty()) path += "?name=" + percent_encode(t.name);
  call("POST", path, body.dump(), [this, image = t.image, done = std::move(done)](const HttpResponse& r) {
    if (r.ok() && r.status == 404) return done("no such image: " + image, "");
    if (!r.ok() || r.status / 100 != 2) return done(error_of(r, ""), "");
    json j = json::parse(r.body, nullptr, false);
    std::string id = j.is_object() ? str(j, "Id") : "";
    done(id.empty() ? "the engine's create answer has no Id" : "", id);
  });
}

void DockerEngine::exec(const std::string& id, const std::vector<std::string>& argv, double timeout,
                        std::function<void(const ExecResult&)> done) {
  auto t0 = std::chrono::steady_clock::now();
  auto finish = [t0, done = std::move(done)](ExecResult r) {
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    done(r);
  };
  if (argv.empty()) {
    later([finish] { finish(exec_error("exec: no command")); });
    return;
  }
  json body = {{"Cmd", argv}, {"AttachStdout", true}, {"AttachStderr", true}};
  call("POST", "/containers/" + percent_encode(id) + "/exec", body.dump(),
       [this, id, timeout, t0, finish](const HttpResponse& r) {
         if (!r.ok() || r.status / 100 != 2) return finish(exec_error(error_of(r, id)));
         json j = json::parse(r.body, nullptr, false);
         std::string ex = j.is_object() ? str(j, "Id") : "";
         if (ex.empty()) return finish(exec_error("exec: the engine's answer has no Id"));
         double left = timeout - std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
         if (left <= 0.001) left = 0.001;
         call("POST", "/exec/" + percent_encode(ex) + "/start", R"({"Detach":false,"Tty":false})",
              [this, ex, timeout, finish](const HttpResponse& s) {
                if (!s.ok() && s.failure == HttpResponse::Failure::Timeout)
                  return kill_exec(ex, timeout, finish);
                if (!s.ok() || s.status / 100 != 2) {
                  ExecResult e = exec_error(error_of(s, ""));
                  if (s.ok()) {
                    json sj = json::parse(s.body, nullptr, false);
                    if (sj.is_object() && !str(sj, "message").empty()) e.error = "exec: " + str(sj, "message");
                  }
                  return finish(e);
                }
                auto res = std::make_shared<ExecResult>();
                demultiplex(s.body, res->out, res->err, kExecOutput);
                call("GET", "/exec/" + percent_encode(ex) + "/json", {}, [this, res, finish](const HttpResponse& q) {
                  json qj = json::parse(q.body, nullptr, false);
                  if (!q.ok() || q.status != 200 || !qj.is_object()) {
                    res->error = "exec: cannot read the exit code: " + error_of(q, "");
                  } else if (qj.value("Running", false)) {
                    res->error = "exec: still running after its output ended";
                  } else {
                    res->exit_code = static_cast<int>(num(qj, "ExitCode"));
                    // A command missing from the image: runc's message on
                    // stderr, exit code 127 (Podman) or 126.
                    if ((res->exit_code == 127 || res->exit_code == 126) &&
                        (res->err.find("executable file not found") != std::string::npos ||
                         res->err.find("no such file or directory") != std::string::npos)) {
                      std::string line = res->err.substr(0, res->err.find('\n'));
                      auto at = line.find("exec: \"");
                      res->error = "exec: " + (at != std::string::npos ? line.substr(at + 6) : line);
                    }
                  }
                  finish(*res);
                });
              },
              left, 4 * kExecOutput);
       },
       std::min(timeout, config_.timeout));
}

// The API has no call to end an exec, but its inspect gives the
// command's host pid: a command past its timeout is killed through a
// pidfd, so probes that hang do not pile up in the container.
void DockerEngine::kill_exec(const std::string& ex, double timeout,
                             std::function<void(ExecResult)> finish) {
  call("GET", "/exec/" + percent_encode(ex) + "/json", {}, [timeout, finish](const HttpResponse& q) {
    ExecResult e = exec_error("timed out after " + seconds_words(timeout) + " s");
    json qj = json::parse(q.body, nullptr, false);
    pid_t pid = q.ok() && qj.is_object() && qj.value("Running", false)
                    ? static_cast<pid_t>(num(qj, "Pid"))
                    : 0;
    if (pid > 1) {
      Fd fd(pidfd_open(pid, 0));
      if (fd && pidfd_send_signal(fd.get(), SIGKILL, nullptr, 0) == 0)
        e.error += " (killed, pid " + std::to_string(pid) + ")";
    }
    finish(e);
  });
}

void DockerEngine::logs(const std::string& id, int tail,
                        std::function<void(const std::string& error, const std::string& text)> done) {
  std::string path = "/containers/" + percent_encode(id) + "/logs?stdout=1&stderr=1&tail=" +
                     (tail < 0 ? std::string("all") : std::to_string(tail));
  call("GET", path, {}, [this, id, done = std::move(done)](const HttpResponse& r) {
    if (!r.ok() || r.status != 200) return done(error_of(r, id), "");
    // Interleaved as logged: frames in order, whatever their stream.
    std::string text;
    if (!each_frame(r.body, [&](int, std::string_view payload) { text.append(payload); })) text = r.body;
    done("", text);
  });
}

}  // namespace vigil

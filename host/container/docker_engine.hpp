// DockerEngine: ContainerEngine over the Docker Engine API (Docker, or
// Podman's `system service`), spoken through the loop's HttpClient on a
// unix socket or plain HTTP. No call blocks the loop; every answer comes
// later than its call, and none after the engine is destroyed (the
// destructor cancels what is in flight; a liveness token guards posts).
//
// set_listener() starts the watch: GET /version (the engine's ApiVersion
// must be at least EngineConfig::min_api), then the long-lived GET /events
// stream (type container; actions filtered here, since Podman's event
// filter drops some), reconnected with capped exponential backoff (100 ms
// doubling to 5 s) whenever it ends or fails. After each connection every
// container (all=1) is listed and inspected and handed to resync().
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "host/container/engine.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/http_client.hpp"

namespace vigil {

class DockerEngine : public ContainerEngine {
 public:
  DockerEngine(EventLoop& loop, EngineConfig config);
  ~DockerEngine() override;
  DockerEngine(const DockerEngine&) = delete;
  DockerEngine& operator=(const DockerEngine&) = delete;

  void set_listener(EngineListener* l) override;
  bool up() const override { return up_; }
  const EngineConfig& config() const override { return config_; }

  void find(const ContainerMatch& m, bool all, Listed done) override;
  void inspect(const std::string& id, Inspected done) override;
  void image_id(const std::string& ref,
                std::function<void(const std::string& error, const std::string& id)> done) override;
  void start(const std::string& id, Done done) override;
  void stop(const std::string& id, double timeout, Done done) override;
  void restart(const std::string& id, double timeout, Done done) override;
  void kill(const std::string& id, const std::string& signal, Done done) override;
  void remove(const std::string& id, bool force, Done done) override;
  void create(const ContainerTemplate& t,
              std::function<void(const std::string& error, const std::string& id)> done) override;
  void set_restart_policy(const std::string& id, const std::string& policy, Done done) override;
  void exec(const std::string& id, const std::vector<std::string>& argv, double timeout,
            std::function<void(const ExecResult&)> done) override;
  void logs(const std::string& id, int tail,
            std::function<void(const std::string& error, const std::string& text)> done) override;

  // The list of every container (all=1), inspected: what resync() gets.
  void list_inspected(bool all, Listed done);

  // Pure helpers, public for the tests.
  static ContainerInfo info_from_list(const nlohmann::json& j);
  static ContainerInfo info_from_inspect(const nlohmann::json& j);
  // nullopt: not a container event (or not JSON).
  static std::optional<ContainerEvent> parse_event(std::string_view line);
  // Splits Docker's multiplexed stream (8-byte headers); false when `raw`
  // is not one (a Tty container's), then out is raw unchanged. Each
  // stream is cut after `limit` bytes.
  static bool demultiplex(std::string_view raw, std::string& out, std::string& err, size_t limit);
  // "1.41" >= "1.24"
  static bool version_at_least(const std::string& have, const std::string& need);
  static bool matches(const ContainerMatch& m, const ContainerInfo& c);

  static constexpr size_t kExecOutput = 64 * 1024;

 private:
  // A timed-out exec's command, killed by the host pid its inspect gives.
  void kill_exec(const std::string& ex, double timeout, std::function<void(ExecResult)> finish);
  using Reply = std::function<void(const HttpResponse&)>;
  RequestId call(const std::string& method, const std::string& path, std::string body, Reply done,
                 double timeout = -1, size_t max_body = 1024 * 1024);
  std::string transport_error(const HttpResponse& r) const;
  // The engine's message of a non-2xx answer, or the transport's error.
  std::string error_of(const HttpResponse& r, const std::string& what) const;
  void simple(const std::string& method, const std::string& id, const std::string& path_tail,
              std::string body, Done done, double extra_timeout = 0);
  void later(std::function<void()> f);

  // The HEALTHCHECK test of an image (by ID), asked once per ID.
  void image_healthcheck(const std::string& image_id, std::function<void(const std::vector<std::string>&)> done);
  void connect();
  void reconnect_later();
  // Tell the listener on a change; false when it destroyed the engine.
  bool set_up(const std::string& version);
  bool set_down(const std::string& why);
  void resync();

  EventLoop& loop_;
  EngineConfig config_;
  std::string base_;         // "http://d" or "http://host:port"
  std::string unix_socket_;  // "" for TCP
  std::string bad_host_;     // why config_.host cannot be used ("": it can)
  std::shared_ptr<HttpClient> http_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::set<RequestId> in_flight_;
  EngineListener* listener_ = nullptr;
  bool up_ = false;
  bool reported_ = false;  // engine_up or engine_down told once at least
  std::string version_;
  RequestId stream_ = 0;
  RequestId version_call_ = 0;
  TimerId retry_ = 0;
  Duration backoff_ = std::chrono::milliseconds(100);
  uint64_t generation_ = 0;
  std::map<std::string, std::vector<std::string>> image_health_;
  std::map<std::string, std::vector<std::function<void(const std::vector<std::string>&)>>> image_waiters_;  // a new one per connection attempt
};

}  // namespace vigil

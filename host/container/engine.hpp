// ContainerEngine: what the supervisor needs from a container engine
// (Docker Engine API; Podman's `system service` speaks it too), and
// nothing of how it is spoken. The supervisor keeps containers as units
// like processes (budgets, groups, probes, events) and calls this seam to
// find, start, stop and inspect them; the engine's own news (its event
// stream, and a full re-list after each reconnect, since the stream's
// replay cannot be trusted) comes back through EngineListener.
//
// Liveness is not the engine's job: a running container's main process
// (ContainerInfo::pid, a host pid) is adopted by pidfd, so its death is
// seen at once; the engine's `die` event brings the exit code and the
// engine's own restarts.
//
// Every call answers exactly once through its callback, always later than
// the call (never from inside it), on the loop. Callbacks of calls still
// in flight never run after the engine is destroyed. Errors are one line
// in words ("no engine at /run/podman/podman.sock: connection refused",
// "no such container: web1", "the engine speaks API 1.20; vigil needs
// 1.24 or newer", "exec: executable file `wget` not found in $PATH").
//
// The implementation over HTTP is DockerEngine (docker_engine.hpp); unit
// tests of the supervisor use a fake.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace vigil {

class EventLoop;

// Where the engine is: DOCKER_HOST's forms (unix:///path, tcp://host:port,
// http://host:port) or the rules' `docker = { socket = "/run/podman/podman.sock" }`.
struct EngineConfig {
  std::string host = "unix:///var/run/docker.sock";
  // The API version asked for in every path (/v1.41/...). The engine's
  // own (from /version) must be at least min_api.
  std::string api = "1.41";
  std::string min_api = "1.24";
  double timeout = 30;  // each call but the event stream and exec
  bool operator==(const EngineConfig&) const = default;
  // From DOCKER_HOST when set, else the default; `socket` (the rules'),
  // when not empty, wins over both.
  static EngineConfig from_environment(const std::string& socket = {});
};

// What selects a watch's containers. Every field set must match; labels
// must all be present with these values ("" matches any value).
struct ContainerMatch {
  std::string name;   // the container's name (no leading '/')
  std::string id;     // full id or a prefix of at least 12 hex digits
  std::string image;  // an image reference; matched by the image ID it names now
  std::map<std::string, std::string> labels;
  std::string compose_project;  // label com.docker.compose.project
  std::string compose_service;  // label com.docker.compose.service
  bool operator==(const ContainerMatch&) const = default;
};

struct ContainerInfo {
  std::string id;        // full id
  std::string name;      // without the leading '/'
  std::string image;     // as the container was created from ("localhost/shop-web:1.4")
  std::string image_id;  // "sha256:..." (what same-image counts compare)
  std::map<std::string, std::string> labels;
  // created | running | paused | restarting | removing | exited | dead
  std::string status;
  bool running = false;
  pid_t pid = 0;  // the main process on the host; 0 when not running
  int exit_code = 0;
  std::string started_at, finished_at;  // RFC 3339 as the engine gave them
  int64_t restart_count = 0;            // the engine's own restarts
  std::string health;                   // "", "starting", "healthy", "unhealthy"
  std::string restart_policy = "no";    // no | always | on-failure | unless-stopped
  // The image's (or the container's) HEALTHCHECK test as the engine gives
  // it: {"CMD-SHELL", "test -e /tmp/ok"} or {"CMD", "wget", ...}; empty: none.
  std::vector<std::string> healthcheck;
  double created = 0;  // unix seconds
  // list() fills only what /containers/json has (no pid, exit code,
  // health, restart count or policy); inspect() fills everything and
  // keeps the whole answer here (for dumps).
  bool inspected = false;
  nlohmann::json raw;
};

// A line of the engine's event stream, for containers only.
struct ContainerEvent {
  std::string id;
  std::string name;
  // start, die, restart, stop, kill, oom, destroy (removed), create,
  // health_status, pause, unpause, exec_die, ... as the engine names them
  std::string action;
  std::optional<int> exit_code;  // die
  std::string health;            // health_status: healthy | unhealthy
  double time = 0;               // unix seconds (timeNano)
  std::map<std::string, std::string> attributes;
};

// What `on_under = "start"` creates.
struct ContainerTemplate {
  std::string image;
  std::vector<std::string> cmd;  // empty: the image's
  std::map<std::string, std::string> labels;
  std::string name;  // "": the engine picks one
  nlohmann::json host_config = nlohmann::json::object();  // as the API takes it
  bool operator==(const ContainerTemplate&) const = default;
};

struct ExecResult {
  std::string error;  // "": the command ran (whatever its exit code)
  int exit_code = -1;
  std::string out, err;  // the first bytes of each stream (bounded)
  double seconds = 0;
};

class EngineListener {
 public:
  virtual ~EngineListener() = default;
  // The engine answers (and speaks a version vigil supports), or stopped
  // answering: `why` says what failed. Reported on each change only.
  virtual void engine_up(const std::string& version) = 0;
  virtual void engine_down(const std::string& why) = 0;
  virtual void container_event(const ContainerEvent& ev) = 0;
  // After each (re)connection of the event stream: every container the
  // engine has (all=1), inspected, so a death or restart the stream
  // missed is found by comparing started_at and restart_count.
  virtual void resync(const std::vector<ContainerInfo>& all) = 0;
};

class ContainerEngine {
 public:
  virtual ~ContainerEngine() = default;
  using Done = std::function<void(const std::string& error)>;
  using Listed = std::function<void(const std::string& error, std::vector<ContainerInfo> found)>;
  using Inspected = std::function<void(const std::string& error, const ContainerInfo& info)>;

  // Starts talking to the engine: version check, the event stream (kept
  // open, reconnected with backoff), resync after each connection. The
  // listener outlives the engine or is detached by set_listener(nullptr).
  virtual void set_listener(EngineListener* l) = 0;
  virtual bool up() const = 0;
  virtual const EngineConfig& config() const = 0;

  // The containers `m` selects (all = stopped ones too), inspected.
  virtual void find(const ContainerMatch& m, bool all, Listed done) = 0;
  virtual void inspect(const std::string& id, Inspected done) = 0;
  // The image ID a reference names now ("" when the engine has no such image).
  virtual void image_id(const std::string& ref, std::function<void(const std::string& error, const std::string& id)> done) = 0;

  virtual void start(const std::string& id, Done done) = 0;
  virtual void stop(const std::string& id, double timeout, Done done) = 0;  // TERM, KILL after timeout
  virtual void restart(const std::string& id, double timeout, Done done) = 0;
  virtual void kill(const std::string& id, const std::string& signal, Done done) = 0;
  virtual void remove(const std::string& id, bool force, Done done) = 0;
  virtual void create(const ContainerTemplate& t, std::function<void(const std::string& error, const std::string& id)> done) = 0;
  // HostConfig.RestartPolicy (take_over = true sets "no").
  virtual void set_restart_policy(const std::string& id, const std::string& policy, Done done) = 0;

  // Runs argv in the container and waits for it (exec create, start
  // attached, inspect): the exit code and the demultiplexed output.
  // Killed after `timeout` seconds (error "timed out after N s (killed, pid P)").
  virtual void exec(const std::string& id, const std::vector<std::string>& argv, double timeout,
                    std::function<void(const ExecResult&)> done) = 0;
  // The last `tail` lines of its stdout and stderr, interleaved as logged.
  virtual void logs(const std::string& id, int tail, std::function<void(const std::string& error, const std::string& text)> done) = 0;
};

// The Docker Engine API over HttpClient (docker_engine.cpp): what the
// daemon makes when the rules watch containers.
std::unique_ptr<ContainerEngine> make_docker_engine(EventLoop& loop, const EngineConfig& config);

}  // namespace vigil

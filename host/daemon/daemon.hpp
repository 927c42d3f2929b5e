// Daemon: wires the mechanisms together on one event loop: signals
// (signalfd), the control socket, inotify on the rule files, the
// supervisor and the live rule runtime, and reload (build a candidate
// runtime, validate, swap).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "host/api/api_server.hpp"
#include "host/api/event_stream.hpp"
#include "host/cluster/hub.hpp"
#include "host/control/server.hpp"
#include "host/core/events.hpp"
#include "host/daemon/discovery.hpp"
#include "host/daemon/service_notify.hpp"
#include "host/log/sink.hpp"
#include "host/loop/event_loop.hpp"
#include "host/metrics/metrics.hpp"
#include "host/proc/proc_events.hpp"
#include "host/remote/remote_hub.hpp"
#include "host/container/engine.hpp"
#include "host/supervise/supervisor.hpp"
#include "lua/runtime.hpp"

namespace vigil {

class RequestFields;
class Waits;  // daemon.cpp: typed access to a control request's fields

struct DaemonOptions {
  std::string rules;  // directory (or one file)
  std::string state_dir;
  std::string socket_path;
  std::string stdlib_dir = VIGIL_STDLIB_DIR;
  LogOptions log;
  std::vector<SinkSpec> sinks;  // from the command line (--syslog, --json-log, ...)
  // The event history behind `vigil events --since`: STATE_DIR/events.jsonl
  // and one rotated file, each at most this size.
  size_t history_max_bytes = 8u << 20;
  double callback_budget = 0.5;
  bool watch_rules = true;      // inotify-driven reload
  bool proc_events = true;      // use the kernel's process events (else scan /proc)
  double scan_interval = 5;     // seconds between /proc scans without them
  ClusterOptions cluster;       // reboot guard (state_dir filled in at start)
  MetricsOptions metrics;       // off unless metrics.interval > 0
  // The remote API from the command line (vigil run --api-listen ...):
  // RuntimeOptions::api (both it and the rules' api { } is a load error).
  nlohmann::json api;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options);
  ~Daemon();

  // Sets up everything and loads the rules; false (and `error`) when the
  // daemon cannot start (bad rules at start are an error too).
  bool start(std::string& error);
  int run();

  // Reload: returns the errors (empty on success).
  std::vector<std::string> reload(const std::string& reason);

 private:
  void replay_overrides();
  friend struct DaemonFuzzAccess;  // tests/fuzz/control_fuzz.cpp drives handle()
  void on_signal();
  void on_inotify();
  void handle(const nlohmann::json& req, ControlServer::Reply reply);
  void serve(const std::string& cmd, const RequestFields& req, const ControlServer::Reply& reply);
  void shutdown(const std::string& reason, bool keep_processes = false);
  void on_proc_event(const ProcEvent& ev);
  bool watch_rule_dirs(std::string& error);
  void apply_rule_sinks(std::vector<SinkSpec> specs);
  nlohmann::json status_json() const;
  bool lock_state_dir(std::string& error);
  std::string status_text() const;
  std::string status_summary() const;
  nlohmann::json daemon_json() const;
  nlohmann::json loop_json() const;
  // A group's status object, with its cluster holding when clustered.
  nlohmann::json group_status(const Group& g) const;
  nlohmann::json inspect(const RequestFields& req) const;
  void trim_soon();
  // The API the candidate rules (or the command line) declare, its files
  // loaded; errors reject the reload. nullopt in `out`: no API.
  void configure_engine(const nlohmann::json& docker);
  void configure_discovery(const nlohmann::json& schedule);
  std::vector<pid_t> watched_pids() const;
  bool prepare_api(RuleRuntime& candidate, std::optional<ApiServer::Prepared>& out,
                   std::vector<std::string>& errors);

  DaemonOptions options_;
  EventLoop loop_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<ProcEvents> proc_events_;
  // Before the supervisor: it cancels its probes when it goes.
  std::unique_ptr<ProbeEngine> probes_;
  std::unique_ptr<NotifySocket> notify_;
  // The container engine (host/container/): made when the rules declare a
  // container or a docker block; before the supervisor, which detaches
  // from it when it goes.
  std::unique_ptr<ContainerEngine> engine_;
  std::unique_ptr<Supervisor> supervisor_;
  // Peers and remote watches: after the supervisor whose readiness they
  // set, before the runtime whose vigil.remote calls them (gone after it).
  std::unique_ptr<LoopClock> peer_clock_;
  std::unique_ptr<RemoteHub> remote_;
  // The cluster adapter and what it says (host/cluster/hub.hpp): made at
  // the first cluster { } declared, after the supervisor it drives,
  // before the runtime whose vigil.cluster reaches it (gone after it).
  std::unique_ptr<ClusterHub> cluster_;
  std::unique_ptr<RuleRuntime> runtime_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<EventStreams> streams_;  // GET /v1/events/stream, socket and API
  std::unique_ptr<ApiServer> api_;         // the remote API (api { } or --api-listen)
  ApiHooks api_hooks_;                     // what api_ is made with
  std::unique_ptr<Waits> waits_;  // `vigil wait`: replies held until a state is reached
  std::unique_ptr<Metrics> metrics_;  // after the supervisor it reads: gone first
  // discover { every = ... }: made at the first declared, dropped when the
  // rules no longer declare it; after the supervisor whose pids it asks.
  std::unique_ptr<Discovery> discovery_;
  // Vigil's own service manager (systemd, Type=notify), when it gave a
  // NOTIFY_SOCKET: READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1.
  std::unique_ptr<ServiceNotifier> service_;
  Fd lock_fd_;                        // STATE_DIR/vigil.lock, flock'ed for the daemon's life
  Fd signal_fd_;
  Fd inotify_fd_;
  TimerId reload_debounce_ = 0;
  TimerId trim_timer_ = 0;
  MonoTime last_trim_{};
  bool shutting_down_ = false;
  double started_ = 0;
  size_t loaded_watches_ = 0;  // declared by the live rules
};

}  // namespace vigil

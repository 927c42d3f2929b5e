#include "host/daemon/daemon.hpp"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "host/api/rule_check.hpp"
#include "host/control/protocol.hpp"
#include "host/core/json_out.hpp"
#include "host/core/strings.hpp"
#include "host/daemon/paths.hpp"
#include "host/daemon/waits.hpp"
#include "host/remote/http_transport.hpp"

namespace vigil {

namespace {
std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

Daemon::Daemon(DaemonOptions options) : options_(std::move(options)) {}

Daemon::~Daemon() {
  // Children first, then the rules that reference them.
  waits_.reset();
  if (supervisor_) supervisor_->set_change_listener({});
  service_.reset();
  api_.reset();
  control_.reset();
  streams_.reset();
  metrics_.reset();
  discovery_.reset();
  if (proc_events_) proc_events_->set_handler({});
  if (supervisor_) supervisor_->set_policy(nullptr);
  if (log_) log_->set_listener({});
  runtime_.reset();
  cluster_.reset();
  remote_.reset();
  supervisor_.reset();
}

bool Daemon::start(std::string& error) {
  started_ = wall_seconds();
  // Read (and removed from the environment) before anything is started:
  // what vigil starts must not inherit its service manager's socket.
  std::string notify_error;
  service_ = ServiceNotifier::from_environment(loop_, notify_error);
  // Orphans of supervised programs reparent to us and are reaped at once
  // (PID 1 may reap late), and their death is ours to see.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // A pidfd per watched process and a socket per probe in flight: the
  // soft limit of open files goes up to the hard one, and what vigil
  // starts gets the limit vigil was given.
  if (rlimit nofile; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    set_child_nofile(nofile);
    rlimit raised = nofile;
    raised.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &raised);
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal_fd_ = Fd(signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) {
    error = "signalfd: " + errno_text(errno);
    return false;
  }
  loop_.add(signal_fd_.get(), EPOLLIN, [this](uint32_t) { on_signal(); });

  // One daemon per state directory, decided before anything in it is read
  // or written (journal, adoption, logs) and before the socket is bound.
  if (auto e = make_dirs(options_.state_dir, 0750); !e.empty()) {
    error = "state directory: " + e;
    return false;
  }
  if (!lock_state_dir(error)) return false;
  std::string log_dir = options_.state_dir + "/logs";
  for (const auto& dir : {options_.state_dir, log_dir}) {
    if (auto e = make_dirs(dir, 0750); !e.empty()) {
      error = "state directory: " + e;
      return false;
    }
  }
  std::string sock_dir = options_.socket_path.substr(0, options_.socket_path.rfind('/'));
  if (!sock_dir.empty()) {
    if (auto e = make_dirs(sock_dir, 0755); !e.empty()) {
      error = "socket directory: " + e;
      return false;
    }
  }
  if (options_.log.file.empty()) options_.log.file = options_.state_dir + "/vigil.log";
  try {
    LogOptions lo = options_.log;
    lo.file.clear();  // made below, on the loop: its lines are written once per iteration
    log_ = std::make_unique<EventLog>(lo);
  } catch (const std::exception& e) {
    error = std::string("event log: ") + e.what();
    return false;
  }
  // Sequence numbers go on from the history's, and the ring holds its
  // newest events again: an event stream's Last-Event-ID means the same
  // event across a restart of vigil (the API's /v1/events/stream).
  log_->restore({options_.state_dir + "/events.jsonl", options_.state_dir + "/events.jsonl.1"});
  // The history (`vigil events --since`) and the command line's sinks.
  auto reporter = [this](Msg m, nlohmann::json f) { log_->report(m, std::move(f)); };
  SinkSpec history;
  history.kind = "json";
  history.path = options_.state_dir + "/events.jsonl";
  history.max_bytes = options_.history_max_bytes;
  history.keep = 1;
  history.min_severity = Severity::Debug;
  SinkSpec text;
  text.kind = "file";
  text.path = options_.log.file;
  text.max_bytes = options_.log.file_max_bytes;
  text.keep = options_.log.file_keep;
  text.min_severity = options_.log.min_severity;
  std::vector<SinkSpec> specs = options_.sinks;
  specs.insert(specs.begin(), {text, history});
  for (const auto& spec : specs) {
    std::string e;
    auto sink = make_sink(spec, &loop_, reporter, e);
    if (!sink) {
      error = e;
      return false;
    }
    log_->add_sink(std::move(sink));
  }
  log_->set_listener([this](const Event& ev) {
    if (runtime_) runtime_->on_event(ev);
    if (streams_) streams_->on_event();
    // Every event may be the change a wait is for (a re-arm, a member
    // found): judged once after this iteration's work, however many came.
    if (waits_) waits_->poke();
    if (service_) service_->changed();
  });
  if (!notify_error.empty())
    log_->emit(Msg::ServiceNotifyFailed, "", {{"socket", ""}, {"error", notify_error}});
  if (service_) {
    service_->set_summary([this] { return status_summary(); });
    service_->set_failure_log([this](const std::string& e) {
      log_->emit(Msg::ServiceNotifyFailed, "", {{"socket", service_->address()}, {"error", e}});
    });
  }
  supervisor_ = std::make_unique<Supervisor>(loop_, *log_, log_dir,
                                             options_.state_dir + "/processes.journal");
  supervisor_->set_dump_dir(options_.state_dir + "/dumps");
  supervisor_->load_journal();
  // Kernel process events: counts at fork time, restarted processes found
  // the moment they exec, exit statuses of adopted processes.
  std::string pe_error = "disabled with --no-proc-events";
  if (options_.proc_events) {
    proc_events_ = std::make_unique<ProcEvents>(loop_);
    if (!proc_events_->open(pe_error)) proc_events_.reset();
  }
  if (proc_events_) {
    proc_events_->set_handler([this](const ProcEvent& ev) { on_proc_event(ev); });
    proc_events_->set_overrun_handler([this] {
      log_->emit(Msg::ProcEventsLost, "", {});
      loop_.post([this] { supervisor_->rescan(); });
    });
  } else {
    log_->emit(Msg::ProcEventsUnavailable, "",
               {{"error", pe_error}, {"interval", options_.scan_interval}});
  }
  supervisor_->set_proc_events(proc_events_.get(), options_.scan_interval);
  probes_ = std::make_unique<ProbeEngine>(loop_);
  notify_ = std::make_unique<NotifySocket>(loop_);
  if (std::string ne; !notify_->open(options_.state_dir, ne)) {
    log_->emit(Msg::RuleError, "", {{"callback", "sd_notify socket"}, {"error", ne}});
    notify_.reset();
  }
  supervisor_->set_probes(probes_.get(), notify_.get());
  // The peers of the rules (host/remote/): links made at each reload.
  peer_clock_ = std::make_unique<LoopClock>(loop_);
  remote_ = std::make_unique<RemoteHub>(
      *peer_clock_, *log_, *supervisor_,
      [this](const PeerConfig& c, std::string& error) -> std::unique_ptr<PeerTransport> {
        return http_peer_transport(loop_, c, error);
      });
  waits_ = std::make_unique<Waits>(loop_, *supervisor_);
  supervisor_->set_hold_check([this](const std::string& group) {
    return cluster_ && cluster_->adapter() && cluster_->adapter()->holds(group);
  });
  supervisor_->set_change_listener([this] {
    waits_->poke();
    if (cluster_) cluster_->poke();  // the keepalived adapter's track file
  });

  // status is the request made in loops (dashboards, scripts) and the
  // biggest reply: written as text, no JSON tree of every watch; the
  // socket and the API alike.
  ControlTextHandlers as_text;
  as_text["status"] = [this](const nlohmann::json&) {
    std::string out = status_text();
    trim_soon();
    return out;
  };
  control_ = std::make_unique<ControlServer>(
      loop_,
      [this](const nlohmann::json& req, ControlServer::Reply reply) {
        handle(req, std::move(reply));
      },
      [this](const std::string& err) {
        log_->emit(Msg::ControlRejected, "", {{"error", err}});
      },
      as_text);
  if (!control_->listen(options_.socket_path, error)) return false;
  streams_ = std::make_unique<EventStreams>(loop_, *log_);
  control_->router().add("GET", "/v1/events/stream", [this](HttpRequest& req, HttpReply reply) {
    streams_->serve(req, std::move(reply));
  });
  ApiHooks hooks;
  hooks.handle = [this](const nlohmann::json& req, HttpReply reply) {
    handle(req, [reply](const nlohmann::json& r) mutable {
      // The history file's path is for a CLI on this machine (events
      // --since reads it); a remote client has no use for a local path.
      if (r.is_object() && r.contains("history")) {
        nlohmann::json shown = r;
        shown.erase("history");
        return send_control_reply(reply, shown);
      }
      send_control_reply(reply, r);
    });
  };
  hooks.text = std::move(as_text);
  hooks.authorize = [this](const nlohmann::json& id, const std::string& method,
                           const std::string& path) -> std::pair<bool, std::string> {
    if (!runtime_) return {false, "the rules are not loaded"};
    auto v = runtime_->authorize(id, method, path);
    return {v.allowed, v.reason};
  };
  hooks.metrics = [this] { return metrics_ ? metrics_->prometheus() : std::string(); };
  hooks.streams = streams_.get();
  hooks.dashboard.rules_dir = is_dir(options_.rules) ? options_.rules : "";
  hooks.dashboard.check = [this](const std::string& path) {
    RuntimeOptions ro;  // as reload()'s candidate, with a shorter budget: it runs on the loop
    ro.load_budget = 1.0;
    ro.stdlib_dir = options_.stdlib_dir;
    ro.callback_budget = options_.callback_budget;
    ro.api = options_.api;
    return check_rules(ro, path).errors;
  };
  hooks.dashboard.reload = [this] { return reload("dashboard"); };
  hooks.dashboard.output_path = [this](const std::string& name, bool err, std::string& why,
                                       int& status) -> std::string {
    const Unit* u = supervisor_->find(name);
    if (!u) return status = 404, why = "no watch named '" + name + "'", "";
    return supervisor_->output_path(*u, err, why);
  };
  hooks.dashboard.schema = [this](const std::string& kind) {
    return runtime_ ? runtime_->schema(kind) : nlohmann::json();
  };
  hooks.dashboard.authorize = hooks.authorize;
  api_hooks_ = std::move(hooks);  // the ApiServer is made when an api is declared

  auto errors = reload("start");
  if (!errors.empty()) {
    error = "rules rejected:\n  " + join(errors, "\n  ");
    return false;
  }
  if (options_.watch_rules && !watch_rule_dirs(error)) return false;
  if (options_.metrics.enabled()) {
    if (options_.metrics.csv_dir.empty())
      options_.metrics.csv_dir = options_.state_dir + "/metrics";
    metrics_ = std::make_unique<Metrics>(loop_, *log_, *supervisor_, options_.metrics);
    metrics_->start();
  }
  log_->emit(Msg::DaemonStarted, "",
             {{"version", VIGIL_VERSION},
              {"pid", getpid()},
              {"rules", options_.rules},
              {"socket", options_.socket_path},
              {"state_dir", options_.state_dir}});
  if (service_) {
    log_->emit(Msg::ServiceNotifying, "",
               {{"socket", service_->address()}, {"watchdog", service_->watchdog_interval()}});
    service_->ready();
  }
  return true;
}

// An exclusive flock on STATE_DIR/vigil.lock, held until the daemon's
// process ends (the kernel drops it then, however it ends: quit, crash,
// KILL). The file holds the holder's pid, for the refusal's message.
bool Daemon::lock_state_dir(std::string& error) {
  std::string path = options_.state_dir + "/vigil.lock";
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) {
    error = "cannot open " + path + ": " + errno_text(errno);
    return false;
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err != EWOULDBLOCK) {
      error = "cannot lock " + path + ": " + errno_text(err);
      return false;
    }
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    error = "another vigil (pid " + (holder.empty() ? std::string("unknown") : holder) +
            ") is running on the state directory " + options_.state_dir + " (it holds " + path +
            "); stop it first, or give this one its own --state-dir";
    return false;
  }
  std::string pid = std::to_string(getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // The lock holds without the pid: a second daemon's message lacks it.
  }
  lock_fd_ = std::move(fd);
  return true;
}

int Daemon::run() {
  return loop_.run();
}

std::vector<std::string> Daemon::reload(const std::string& reason) {
  // Around a reload once started (the first load is before READY=1).
  if (service_) service_->reloading();
  struct Reloaded {
    ServiceNotifier* s;
    ~Reloaded() {
      if (s) s->reloaded();
    }
  } reloaded{service_.get()};
  RuntimeOptions ro;
  ro.stdlib_dir = options_.stdlib_dir;
  ro.callback_budget = options_.callback_budget;
  ro.api = options_.api;
  auto candidate = std::make_unique<RuleRuntime>(
      ro, HostContext{&loop_, log_.get(), supervisor_.get(), proc_events_.get(), probes_.get(),
                      &options_.cluster, remote_.get()});
  LoadResult res = candidate->load(options_.rules);
  std::optional<ApiServer::Prepared> api;
  if (res.ok && !prepare_api(*candidate, api, res.errors)) res.ok = false;
  if (!res.ok) {
    log_->emit(Msg::RulesRejected, "",
               {{"error", join(res.errors, "; ")}, {"errors", res.errors}, {"reason", reason}});
    return res.errors;
  }
  runtime_ = std::move(candidate);  // the old state and its timers go here
  // Made at the first api declared (a daemon without one carries none of
  // it), then kept: a reload without api closes its listener.
  if (api && !api_) api_ = std::make_unique<ApiServer>(loop_, *log_, api_hooks_);
  if (api_) api_->apply(std::move(api));
  supervisor_->set_policy(runtime_.get());
  runtime_->go_live();
  supervisor_->set_rule_interest(runtime_->wants_proc_events());
  apply_rule_sinks(runtime_->take_sinks());
  // Peers and remote watches first: what requires a remote watch finds
  // its readiness known when the supervisor applies the watches.
  std::vector<RemoteWatchDecl> remotes;
  for (const auto& r : runtime_->remote_watches()) remotes.push_back(RemoteWatchDecl::from_json(r));
  if (remote_) remote_->configure(runtime_->peers(), std::move(remotes));
  std::vector<Declaration> decls = runtime_->take_declarations();
  size_t watches = decls.size();
  loaded_watches_ = watches;
  // The cluster adapter: made at the first cluster { } (a daemon without
  // one has none of it), told the rules' settings before the groups are
  // applied (standby until it says this node holds them).
  if (runtime_->cluster_config() && !cluster_)
    cluster_ = std::make_unique<ClusterHub>(loop_, *log_, *supervisor_);
  if (cluster_) cluster_->configure(runtime_->cluster_config());
  runtime_->set_cluster_hub(cluster_.get());
  configure_engine(runtime_->docker());
  configure_discovery(runtime_->discover_schedule());
  std::vector<GroupDecl> groups = runtime_->take_groups();
  if (cluster_) {
    std::vector<std::string> clustered;
    for (const auto& g : groups)
      if (g.clustered) clustered.push_back(g.name);
    cluster_->set_groups(clustered);
  }
  supervisor_->apply(std::move(decls), std::move(groups));
  decls = {};
  replay_overrides();
  supervisor_->forget_orders();
  log_->emit(Msg::RulesLoaded, "",
             {{"files", res.files.size()}, {"watches", watches}, {"reason", reason}});
  // A reload frees a whole Lua state and the load's garbage (and the
  // starts' questions to the rules): give the pages back instead of
  // carrying them as resident memory.
  runtime_->collect();
  malloc_trim(0);
  return {};
}

// The container engine the rules need (`docker`: {"socket": ...}, or
// null): made at the first rules that declare a container, kept by a
// reload with the same address, remade when it changes, dropped when the
// rules watch no container any more. Process watches never wait on it.
void Daemon::configure_engine(const nlohmann::json& docker) {
  if (docker.is_null()) {
    supervisor_->set_containers(nullptr);
    engine_.reset();
    return;
  }
  EngineConfig config = EngineConfig::from_environment(docker.value("socket", std::string()));
  if (engine_ && engine_->config() == config) return;
  supervisor_->set_containers(nullptr);
  engine_ = make_docker_engine(loop_, config);
  supervisor_->set_containers(engine_.get());
}

// The rules' discover { } (null: none): a Discovery made at the first,
// told a changed schedule, dropped with a run in flight when the rules no
// longer declare it (GET /v1/discover then says none has run).
void Daemon::configure_discovery(const nlohmann::json& schedule) {
  auto s = DiscoverSchedule::from_json(schedule);
  if (!s || shutting_down_) {
    discovery_.reset();
    return;
  }
  if (!discovery_) {
    DiscoveryOptions o;
    o.stdlib_dir = options_.stdlib_dir;
    o.watched = [this] { return watched_pids(); };
    o.matchers = [this] {
      std::vector<Matcher> out;
      for (const auto& [name, u] : supervisor_->units())
        if (u->m) out.push_back(u->m->match);
      return out;
    };
    o.tuning = [this] { return runtime_ ? runtime_->discover_tuning() : nlohmann::json(); };
    discovery_ = std::make_unique<Discovery>(loop_, *log_, std::move(o));
  }
  discovery_->configure(*s);
}

// Every process a watch holds: a started or adopted one, a members
// watch's members (discovery does not propose them).
std::vector<pid_t> Daemon::watched_pids() const {
  std::vector<pid_t> out;
  for (const auto& [name, u] : supervisor_->units()) {
    if (u->child) out.push_back(u->child->pid);
    if (u->m)
      for (const auto& [pid, start] : u->m->members) out.push_back(pid);
  }
  return out;
}

bool Daemon::prepare_api(RuleRuntime& candidate, std::optional<ApiServer::Prepared>& out,
                         std::vector<std::string>& errors) {
  nlohmann::json declared = candidate.api();  // api { } or --api-listen (RuntimeOptions::api)
  if (declared.is_null()) return true;
  std::string e;
  auto spec = ApiSpec::from_json(declared, e);
  if (!spec) {
    errors.push_back(e);
    return false;
  }
  out = ApiServer::prepare(*spec, errors);
  return out.has_value();
}

// Live changes made with `vigil set` outlive reloads while their key is
// still valid. They are replayed once the new rules are live and applied:
// before, the new declarations (a count's bounds, say) would overwrite them.
void Daemon::replay_overrides() {
  auto replay = [this](const std::string& name, std::map<std::string, std::string>& overrides) {
    for (auto it = overrides.begin(); it != overrides.end();) {
      std::string err;
      if (runtime_->set_param(name, it->first, it->second, err)) {
        ++it;
      } else {
        log_->emit(Msg::ParameterSet, name,
                   {{"key", it->first}, {"value", "(dropped: " + err + ")"}});
        it = overrides.erase(it);
      }
    }
  };
  for (const auto& [name, unit] : supervisor_->units()) replay(name, unit->overrides);
  for (auto& [name, group] : supervisor_->groups()) replay(name, group.overrides);
}

// The rules' sinks after a load: a destination that is still declared
// keeps its sink (connection, queue) and takes the new formatter; the
// others are closed, new ones opened.
void Daemon::apply_rule_sinks(std::vector<SinkSpec> specs) {
  std::vector<std::unique_ptr<Sink>> old = log_->take_rule_sinks(), next;
  for (auto& spec : specs) {
    auto same = std::find_if(old.begin(), old.end(), [&](const std::unique_ptr<Sink>& s) {
      return s && s->spec().key() == spec.key();
    });
    if (same != old.end()) {
      (*same)->set_formatter(std::move(spec.format));
      next.push_back(std::move(*same));
      continue;
    }
    std::string e;
    auto sink = make_sink(
        spec, &loop_, [this](Msg m, nlohmann::json f) { log_->report(m, std::move(f)); }, e);
    if (sink)
      next.push_back(std::move(sink));
    else
      log_->emit(Msg::SinkRejected, "",
                 {{"sink", spec.name()}, {"error", e}, {"where", spec.where}});
  }
  old.clear();
  log_->set_rule_sinks(std::move(next));
}

void Daemon::on_proc_event(const ProcEvent& ev) {
  supervisor_->on_proc_event(ev);
  if (runtime_) runtime_->on_proc_event(ev);
  // Held for the watches, not for discovery: its execs are a bonus.
  if (discovery_ && ev.kind == ProcEvent::Kind::Exec) discovery_->on_exec(ev.pid);
}

void Daemon::on_signal() {
  signalfd_siginfo si;
  std::vector<Reaper::ChildSignal> children;  // read together, handled together
  while (::read(signal_fd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
    switch (si.ssi_signo) {
      case SIGCHLD:
        children.push_back({static_cast<pid_t>(si.ssi_pid), si.ssi_code});
        break;
      case SIGHUP: reload("SIGHUP"); break;
      case SIGTERM: shutdown("SIGTERM"); break;
      case SIGINT: shutdown("SIGINT"); break;
      default: break;
    }
  }
  if (!children.empty()) supervisor_->reaper().on_sigchld(children);
}

void Daemon::shutdown(const std::string& reason, bool keep_processes) {
  if (shutting_down_) {
    loop_.stop(0);  // a second signal: leave now
    return;
  }
  shutting_down_ = true;
  if (service_) service_->stopping();
  log_->emit(Msg::DaemonStopping, "", {{"reason", reason}});
  discovery_.reset();  // no scan starts while the watches stop
  if (keep_processes) {
    // An upgrade or a restart of vigil: the processes go on, the journal
    // names them, and the next vigil adopts them.
    supervisor_->detach_all();
    loop_.post([this] { loop_.stop(0); });
    return;
  }
  supervisor_->stop_all([this] { loop_.stop(0); });
}

bool Daemon::watch_rule_dirs(std::string& error) {
  inotify_fd_ = Fd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify_fd_) {
    error = "inotify: " + errno_text(errno);
    return false;
  }
  std::string dir = options_.rules;
  if (!is_dir(dir)) dir = dir.substr(0, std::max<size_t>(dir.rfind('/'), 1));
  uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE;
  for (const auto& d : {dir, dir + "/lib"})
    if (is_dir(d)) inotify_add_watch(inotify_fd_.get(), d.c_str(), mask);
  loop_.add(inotify_fd_.get(), EPOLLIN, [this](uint32_t) { on_inotify(); });
  return true;
}

void Daemon::on_inotify() {
  alignas(inotify_event) char buf[4096];
  std::string changed;
  for (;;) {
    ssize_t n = ::read(inotify_fd_.get(), buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      std::string name = ev->len ? ev->name : "";
      if (name.ends_with(".lua") && name[0] != '.') changed = name;
      p += sizeof(inotify_event) + ev->len;
    }
  }
  if (changed.empty()) return;
  // Editors write in several steps: reload once things settle.
  if (reload_debounce_) loop_.cancel(reload_debounce_);
  reload_debounce_ = loop_.after(std::chrono::milliseconds(200), [this, changed] {
    reload_debounce_ = 0;
    log_->emit(Msg::RulesChanged, "", {{"path", changed}});
    reload("rule files changed");
  });
}

// Gives freed pages back (malloc_trim) after a big reply, at most once a
// second: trimming after every reply made `status` in a loop pay for the
// trim and for faulting the pages in again each time.
void Daemon::trim_soon() {
  if (trim_timer_) return;
  MonoTime next = last_trim_ + std::chrono::seconds(1);
  auto trim = [this] {
    trim_timer_ = 0;
    last_trim_ = loop_.now();
    malloc_trim(0);
  };
  if (loop_.now() >= next) return trim();
  trim_timer_ = loop_.at(next, trim);
}

// The loop's bound on the work of one iteration, made observable: how
// often it left work (deferred tasks, due timers) for the next iteration
// so as to serve its fds, the control socket among them, first.
nlohmann::json Daemon::loop_json() const {
  const EventLoop::Stats& s = loop_.stats();
  return {{"iterations", s.iterations},
          {"deferred_run", s.deferred_run},
          {"deferred_queued", loop_.deferred()},
          {"deferred_peak", s.deferred_peak},
          {"slices_cut", s.slices_cut},
          {"timers_cut", s.timers_cut},
          {"slice_ms", to_seconds(EventLoop::kSlice) * 1e3},
          {"worst_iteration_ms", to_seconds(loop_.worst_iteration()) * 1e3}};
}

nlohmann::json Daemon::status_json() const {
  return nlohmann::json::parse(status_text());
}

// The status reply as text: the watches written straight from the units
// (Unit::write_json), the small parts through nlohmann.
std::string Daemon::status_text() const {
  std::string out;
  out.reserve(400 * supervisor_->units().size() + 1024);
  JsonText w(out);
  w.begin_object();
  w.key("ok").boolean(true);
  w.key("daemon").value(daemon_json());
  w.key("watches").begin_array();
  for (const auto& [name, u] : supervisor_->units()) {
    w.element();
    u->write_json(out);
  }
  w.end_array();
  w.key("groups").begin_array();
  for (const auto& [name, g] : supervisor_->groups())
    if (g.decl.parent.empty()) w.value(group_status(g));
  w.end_array();
  if (cluster_) w.key("cluster").value(cluster_->cluster_json());
  if (remote_ && remote_->size() > 0) {
    w.key("remote").value(remote_->watches_json());
    w.key("peers").value(remote_->peers_json());
  }
  w.end_object();
  return out;
}

nlohmann::json Daemon::group_status(const Group& g) const {
  nlohmann::json j = supervisor_->group_json(g);
  if (g.decl.clustered)
    j["cluster"] = cluster_ ? cluster_->group_json(g.decl.name)
                            : nlohmann::json{{"role", "down"}, {"holder", nullptr}};
  return j;
}

// One line for the service manager's STATUS= ("12 watches: 11 running,
// 1 backoff"): the number of watches, then how many are in each state.
std::string Daemon::status_summary() const {
  std::map<std::string, size_t> by_state;
  for (const auto& [name, u] : supervisor_->units())
    ++by_state[u->paused ? "paused" : unit_state_name(u->state)];
  size_t n = supervisor_->units().size();
  std::string out = std::to_string(n) + (n == 1 ? " watch" : " watches");
  const char* sep = ": ";
  // The usual states first, in the order an operator reads them.
  for (const char* s : {"running", "starting", "backoff", "waiting", "paused", "stopped", "exhausted"})
    if (auto it = by_state.find(s); it != by_state.end()) {
      out += sep + std::to_string(it->second) + " " + s;
      sep = ", ";
    }
  return out;
}

nlohmann::json Daemon::daemon_json() const {
  return {{"pid", getpid()},
          {"version", VIGIL_VERSION},
          {"rules", options_.rules},
          {"since", rfc3339(started_)},
          // Subscribed now (only while a watch or rule needs the events),
          // to what, and whether the connector can be used here at all.
          {"proc_events", proc_events_ && proc_events_->subscribed()},
          {"proc_events_available", proc_events_ != nullptr},
          {"proc_events_filtered", proc_events_ && proc_events_->filtering()},
          {"proc_events_wanted", proc_events_ && proc_events_->subscribed()
                                     ? ProcEvents::names(proc_events_->events_wanted())
                                     : std::vector<std::string>{}},
          {"checks",
           {{"passes", supervisor_->check_passes()}, {"samples", supervisor_->check_samples()},
            {"unchanged", supervisor_->check_unchanged()}}},
          // Output logs whose size was looked at (after a write, or opened).
          {"output_logs", {{"looked", supervisor_->logs_looked()}}},
          {"lua_memory", runtime_ ? runtime_->memory_used() : 0},
          {"api", api_ ? api_->status() : nlohmann::json()},
          {"event_streams", streams_ ? streams_->clients() : 0},
          {"loop", loop_json()}};
}

namespace {
// A request that cannot be served as sent: the text is the error reply,
// the status its HTTP status (404: no such watch or group; 409: an action
// refused in the state things are in).
struct BadRequest : std::runtime_error {
  explicit BadRequest(const std::string& what, int status = 400)
      : std::runtime_error(what), status(status) {}
  int status;
};
}  // namespace

// Typed access to a request's fields, the only way handlers read them: a
// field that is present has the type asked for, or the request is refused
// with an error naming the field, the type expected and the type sent.
class RequestFields {
 public:
  RequestFields(const nlohmann::json& req, const std::string& cmd) : req_(req), cmd_(cmd) {}

  std::optional<std::string> str(const char* key) const {
    const nlohmann::json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) wrong(key, "a string", *v);
    return v->get<std::string>();
  }
  std::string str_or(const char* key, std::string fallback = "") const {
    return str(key).value_or(std::move(fallback));
  }
  // Present and not empty.
  std::string required_str(const char* key, const char* what) const {
    std::string s = str_or(key);
    if (s.empty()) throw BadRequest(cmd_ + ": " + what + " is required (field \"" + key + "\")");
    return s;
  }
  bool flag(const char* key, bool fallback) const {
    const nlohmann::json* v = get(key);
    if (!v) return fallback;
    if (!v->is_boolean()) wrong(key, "a boolean", *v);
    return v->get<bool>();
  }
  // "a string", "the number 1.5", "null": what a value is, for errors.
  static std::string shown(const nlohmann::json& v) {
    if (v.is_number() || v.is_boolean())
      return std::string("the ") + v.type_name() + " " + v.dump();
    if (v.is_null()) return "null";
    return std::string(v.is_array() || v.is_object() ? "an " : "a ") + v.type_name();
  }
  // "group" when the request names a group only (the /v1/groups routes),
  // "watch" or "" (a watch, or a group by that name, as the CLI means it).
  std::string kind() const {
    std::string k = str_or("kind");
    if (!k.empty() && k != "group" && k != "watch")
      throw BadRequest(cmd_ + ": field \"kind\" must be \"watch\" or \"group\", got '" + k + "'");
    return k;
  }
  // An array, when present (nullptr when not).
  const nlohmann::json* array(const char* key) const {
    const nlohmann::json* v = get(key);
    if (v && !v->is_array()) wrong(key, "an array", *v);
    return v;
  }
  std::optional<int64_t> integer(const char* key, int64_t min, int64_t max) const {
    const nlohmann::json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) wrong(key, "an integer", *v);
    // nlohmann keeps a non-negative integer as unsigned: compare as such.
    bool in_range = v->is_number_unsigned()
                        ? v->get<uint64_t>() <= static_cast<uint64_t>(max) &&
                              (min <= 0 || v->get<uint64_t>() >= static_cast<uint64_t>(min))
                        : v->get<int64_t>() >= min && v->get<int64_t>() <= max;
    if (!in_range)
      throw BadRequest(cmd_ + ": field \"" + key + "\" must be an integer from " +
                       std::to_string(min) + " to " + std::to_string(max) + ", got " + shown(*v));
    return v->get<int64_t>();
  }

 private:
  const nlohmann::json* get(const char* key) const {
    auto it = req_.find(key);
    return it == req_.end() ? nullptr : &*it;
  }
  [[noreturn]] void wrong(const char* key, const char* expected, const nlohmann::json& v) const {
    throw BadRequest((cmd_.empty() ? std::string("request") : cmd_) + ": field \"" + key +
                     "\" must be " + expected + ", got " + shown(v));
  }

  const nlohmann::json& req_;
  const std::string& cmd_;
};

// `vigil status NAME...`: everything about each watch or group named, in
// the order asked; the names that are neither in "unknown".
nlohmann::json Daemon::inspect(const RequestFields& req) const {
  nlohmann::json items = nlohmann::json::array(), unknown = nlohmann::json::array();
  size_t n = static_cast<size_t>(req.integer("events", 0, 1000).value_or(5));
  // One name (GET /v1/watches/NAME, /v1/groups/NAME with kind "group"):
  // not found is an error; several ("names"): the unknown ones are listed.
  nlohmann::json one;
  if (auto name = req.str("name")) {
    bool group = req.kind() == "group";
    if (group ? !supervisor_->find_group(*name)
              : !supervisor_->find(*name) && !supervisor_->find_group(*name))
      throw BadRequest("no " + std::string(group ? "group" : "watch or group") + " named '" + *name + "'",
                       404);
    one = nlohmann::json::array({*name});
  }
  const nlohmann::json* names = one.is_array() ? &one : req.array("names");
  if (!names) throw BadRequest("inspect: field \"names\" (an array of names) is required");
  bool only_groups = one.is_array() && req.kind() == "group";
  for (const auto& v : *names) {
    if (!v.is_string()) throw BadRequest("inspect: \"names\" must hold strings, got " + RequestFields::shown(v));
    std::string name = v.get<std::string>();
    nlohmann::json j;
    if (const Unit* u = only_groups ? nullptr : supervisor_->find(name)) {
      j = u->to_json();
      j["kind"] = "watch";
      j["checks"] = supervisor_->checks_json(*u);
      j["decision"] = u->ledger.decision;
    } else if (const Group* g = supervisor_->find_group(name)) {
      j = group_status(*g);
      j["kind"] = "group";
      j["name"] = name;
      j["decision"] = g->ledger.decision;
    } else if (j = remote_ ? remote_->watch_json(name) : nlohmann::json(); !j.is_null()) {
      j["kind"] = "remote";
    } else {
      unknown.push_back(name);
      continue;
    }
    j["budget"] = runtime_ ? runtime_->budget(name) : nlohmann::json(nullptr);
    nlohmann::json events = nlohmann::json::array();
    if (n > 0)
      for (auto& ev : log_->recent(n, name)) events.push_back(std::move(ev));
    j["events"] = std::move(events);
    items.push_back(std::move(j));
  }
  return {{"items", std::move(items)}, {"unknown", std::move(unknown)}};
}

// The one place control requests are served: whatever a handler throws
// becomes an error reply (and an event); the daemon lives on. The reply
// goes out at most once, however a handler ends.
void Daemon::handle(const nlohmann::json& req, ControlServer::Reply reply) {
  auto replied = std::make_shared<bool>(false);
  ControlServer::Reply once = [reply = std::move(reply), replied](const nlohmann::json& r) {
    if (*replied) return;
    *replied = true;
    reply(r);
  };
  std::string cmd;
  auto refuse = [&](Msg m, const std::string& err, int status) {
    try {
      nlohmann::json f = {{"error", err}};
      if (!cmd.empty() || m == Msg::ControlFailed) f["cmd"] = cmd.empty() ? "?" : cmd;
      log_->emit(m, "", std::move(f));
    } catch (...) {
      // The reply still says it.
    }
    once(error_reply(err, status == 400 ? 0 : status));
  };
  try {
    if (!req.is_object()) throw BadRequest("request must be a JSON object");
    auto it = req.find("cmd");
    if (it == req.end()) throw BadRequest("request has no \"cmd\" (a string naming the command)");
    if (!it->is_string())
      throw BadRequest("field \"cmd\" must be a string, got " + RequestFields::shown(*it));
    cmd = it->get<std::string>();
    serve(cmd, RequestFields(req, cmd), once);
  } catch (const BadRequest& e) {
    refuse(Msg::ControlRejected, e.what(), e.status);
  } catch (const std::exception& e) {
    refuse(Msg::ControlFailed, e.what(), 500);
  } catch (...) {
    refuse(Msg::ControlFailed, "unknown exception", 500);
  }
}

void Daemon::serve(const std::string& cmd, const RequestFields& req,
                   const ControlServer::Reply& reply) {
  auto str = [&](const char* key) { return req.str_or(key); };
  auto reject = [&](const std::string& err, int status = 400) { throw BadRequest(err, status); };
  auto unit_arg = [&]() -> Unit* {
    std::string name = req.required_str("name", "a watch name");
    Unit* u = supervisor_->find(name);
    if (!u) reject("no watch or group named '" + name + "'", 404);
    return u;
  };
  // A request for one kind only (the /v1/groups/NAME routes): the name
  // must be one of that kind.
  if (std::string kind = req.kind(); !kind.empty() && cmd != "inspect") {
    std::string name = req.required_str("name", kind == "group" ? "a group name" : "a watch name");
    if (kind == "group" ? !supervisor_->find_group(name) : !supervisor_->find(name))
      reject("no " + kind + " named '" + name + "'", 404);
  }

  if (cmd == "ping") return reply(ok_reply({{"pid", getpid()}}));
  if (cmd == "quit") {
    bool keep = req.flag("keep", false);
    reply(ok_reply({{"pid", getpid()}, {"keep", keep}}));
    shutdown(keep ? "vigil quit --keep" : "vigil quit", keep);
    return;
  }
  if (cmd == "status") {  // the socket answers it with status_text; this for direct callers
    reply(status_json());
    return;
  }
  if (cmd == "discover") {
    if (!discovery_) reject("no discovery has run (declare discover { every = ... })", 404);
    if (discovery_->last().is_null())
      reject("no discovery has run yet (the first ends about " +
                 std::to_string(static_cast<int>(discovery_->schedule().window)) +
                 "s after the rules were loaded)",
             404);
    return reply(ok_reply(discovery_->last()));
  }
  if (cmd == "metrics") {
    if (!metrics_) return reply(error_reply("metrics are off: start vigil with --metrics"));
    if (auto name = req.str("name")) {
      // One watch's last hour (the dashboard's plots).
      nlohmann::json h = metrics_->history(*name);
      if (h.is_null()) return reply(error_reply("no metrics of '" + *name + "' (yet)", 404));
      return reply(ok_reply(h));
    }
    return reply(ok_reply(metrics_->to_json()));
  }
  if (cmd == "reload") {
    auto errors = reload("vigil reload");
    if (errors.empty()) return reply(ok_reply({{"watches", loaded_watches_}}));
    nlohmann::json r = error_reply(join(errors, "\n"));
    r["errors"] = errors;
    return reply(r);
  }
  if (cmd == "events") {
    auto n = req.integer("n", 1, INT64_MAX);
    auto max = req.integer("max", 1, INT64_MAX);
    auto since = req.integer("since", 0, INT64_MAX);
    nlohmann::json out = nlohmann::json::array();
    nlohmann::json fields;
    if (since) {
      // Resuming: the ring's events after that sequence number, oldest
      // first; `gap` says some were already gone from the ring (the
      // history files hold them). last_seq is where to resume next.
      size_t most = static_cast<size_t>(std::min<int64_t>(max.value_or(n.value_or(1000)), 10000));
      for (const auto& line : log_->since(static_cast<uint64_t>(*since), most, str("watch"), str("id")))
        out.push_back(nlohmann::json::parse(line, nullptr, false));
      uint64_t oldest = log_->oldest_seq();
      fields["gap"] = oldest > static_cast<uint64_t>(*since) + 1;
      // Cut at `most`: resume after the last one given, not at the newest.
      fields["more"] = out.size() >= most;
      fields["last_seq"] = out.size() >= most && out.back().is_object()
                               ? out.back().value("seq", log_->last_seq())
                               : log_->last_seq();
    } else {
      for (auto& ev : log_->recent(static_cast<size_t>(n.value_or(max.value_or(20))), str("watch"),
                                   str("id")))
        out.push_back(std::move(ev));
    }
    // Older events: the CLI reads the history files itself, so a long
    // query never holds up the loop.
    fields["events"] = std::move(out);
    fields["history"] = options_.state_dir + "/events.jsonl";
    if (!fields.contains("last_seq")) fields["last_seq"] = log_->last_seq();
    return reply(ok_reply(std::move(fields)));
  }
  if (cmd == "dumps") {
    // STATE/dumps/WATCH/TIME: what each holds, oldest first.
    std::string only = str("watch");
    nlohmann::json list = nlohmann::json::array();
    std::error_code ec;
    std::vector<std::filesystem::path> dirs;
    for (const auto& w : std::filesystem::directory_iterator(supervisor_->dump_dir(), ec))
      if (only.empty() || w.path().filename() == only)
        for (const auto& d : std::filesystem::directory_iterator(w.path(), ec))
          if (d.is_directory(ec)) dirs.push_back(d.path());
    std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) {
      return a.filename() != b.filename() ? a.filename() < b.filename() : a < b;
    });
    for (const auto& d : dirs) {
      uint64_t bytes = 0;
      size_t files = 0;
      for (const auto& f : std::filesystem::directory_iterator(d, ec)) {
        ++files;
        bytes += f.is_regular_file(ec) ? f.file_size(ec) : 0;
      }
      std::string trigger;
      auto ev = nlohmann::json::parse(read_text(d.string() + "/event.json"), nullptr, false);
      if (ev.is_object() && ev.contains("trigger") && ev["trigger"].is_object())
        trigger = ev["trigger"].value("trigger", "");
      list.push_back({{"watch", d.parent_path().filename().string()},
                      {"time", d.filename().string()},
                      {"path", d.string()},
                      {"trigger", trigger},
                      {"files", files},
                      {"bytes", bytes}});
    }
    return reply(ok_reply({{"dumps", std::move(list)}}));
  }
  if (cmd == "inspect") return reply(ok_reply(inspect(req)));
  if (cmd == "logs") {
    Unit* u = unit_arg();
    std::string why;
    std::string out = supervisor_->output_path(*u, false, why);
    if (out.empty()) return reject(why);
    return reply(ok_reply(
        {{"name", u->name}, {"stdout", out}, {"stderr", supervisor_->output_path(*u, true, why)}}));
  }
  if (cmd == "signal") {
    std::string name = req.required_str("name", "a watch or group name");
    std::string signame = req.required_str("signal", "a signal (a name such as HUP or a number)");
    auto sig = parse_signal(signame);
    if (!sig) return reject("signal: unknown signal '" + signame + "' (a name such as HUP, USR1, or a number from 1 to " + std::to_string(NSIG - 1) + ")");
    std::vector<Unit*> targets;
    if (Unit* u = supervisor_->find(name))
      targets.push_back(u);
    else if (Group* g = supervisor_->find_group(name))
      for (const auto& w : g->decl.units)
        if (Unit* m = supervisor_->find(w)) targets.push_back(m);
    if (targets.empty()) return reject("no watch or group named '" + name + "'", 404);
    nlohmann::json sent = nlohmann::json::array();
    std::vector<std::string> errors;
    for (Unit* u : targets) {
      std::string err;
      std::vector<pid_t> pids = supervisor_->send_signal(*u, *sig, err);
      if (pids.empty()) {
        errors.push_back(err);
        continue;
      }
      std::string list;
      for (pid_t p : pids) list += (list.empty() ? "" : " ") + std::to_string(p);
      log_->emit(Msg::SignalSent, u->name,
                 {{"signal", signal_name(*sig)}, {"pids", list}, {"count", pids.size()}});
      sent.push_back({{"watch", u->name}, {"pids", pids}});
    }
    // A group signals the members that run; one with nothing running at
    // all is refused like a watch.
    if (sent.empty()) return reject(join(errors, "; "), 409);
    return reply(ok_reply({{"signal", signal_name(*sig)}, {"sent", std::move(sent)}, {"skipped", errors}}));
  }
  if (cmd == "wait") {
    std::string name = req.required_str("name", "a watch or group name");
    std::string until = req.str_or("until", "ready");
    if (!Waits::valid_target(until))
      return reject("wait: cannot wait until '" + until + "' (ready, running, stopped, exhausted, done or standby)");
    std::optional<double> timeout;
    if (auto ms = req.integer("timeout_ms", 0, 7LL * 86400 * 1000)) timeout = static_cast<double>(*ms) / 1e3;
    std::string err;
    if (!waits_->add(name, until, timeout, control_ ? control_->connection() : std::weak_ptr<void>(), reply, err))
      return reject(err);
    return;
  }
  if (cmd == "explain") {
    std::string name = str("name");
    if (Unit* u = supervisor_->find(name)) {
      nlohmann::json j = u->ledger.to_json();
      return reply(ok_reply({{"kind", "watch"},
                             {"name", name},
                             {"status", u->to_json()},
                             {"decision", u->ledger.decision},
                             {"restarts_recorded", j["history"].size()}}));
    }
    if (Group* g = supervisor_->find_group(name))
      return reply(ok_reply({{"kind", "group"},
                             {"name", name},
                             {"status", supervisor_->group_json(*g)},
                             {"decision", g->ledger.decision},
                             {"restarts_recorded", g->ledger.history.size()}}));
    if (name.empty()) return reject("explain: a watch or group name is required");
    return reject("no watch or group named '" + name + "'", 404);
  }
  if (cmd == "cluster") {
    if (!cluster_) return reject("no cluster here: the rules declare no cluster { } block", 409);
    return reply(ok_reply(cluster_->cluster_json()));
  }
  if (cmd == "failover") {
    std::string name = req.required_str("name", "a group name");
    std::string to = str("to");
    Group* g = supervisor_->find_group(name);
    if (!g) reject("no group named '" + name + "'", 404);
    if (!cluster_ || !cluster_->adapter())
      reject("failover " + name + ": no cluster adapter here (cluster { adapter = ... } in the rules)", 409);
    const std::string& adapter = cluster_->config().adapter;
    if (!g->decl.clustered && (adapter == "etcd" || adapter == "pacemaker"))
      reject("failover " + name + ": not a clustered group (clustered = true): the " + adapter +
                 " adapter hands over only clustered groups",
             409);
    std::string err = cluster_->failover(name, "operator failover" + (to.empty() ? "" : " to " + to), to, {});
    if (!err.empty()) reject("failover " + name + ": " + err, 409);
    return reply(ok_reply({{"group", name}, {"to", to.empty() ? nlohmann::json(nullptr) : nlohmann::json(to)}}));
  }
  // A member of a clustered group this node does not hold starts with its group.
  if (Unit* u = cmd == "start" || cmd == "restart" ? supervisor_->find(str("name")) : nullptr;
      u && supervisor_->in_standby(*u)) {
    const Group* cg = supervisor_->clustered_group_of(*u);
    reject("'" + u->name + "' belongs to clustered group '" + cg->decl.name +
               "', which this node does not hold (standby): start the group (vigil start " +
               cg->decl.name + ")",
           409);
  }
  // A group: the command acts on its watches, in dependency order.
  if (Group* g = supervisor_->find_group(str("name"));
      g &&
      (cmd == "start" || cmd == "stop" || cmd == "restart" || cmd == "pause" || cmd == "resume")) {
    std::string name = g->decl.name;
    if (cmd == "restart")
      // Each watch is stopped and started again: one that cannot be
      // started would be left dead. Refused before anything is touched.
      for (const auto& w : g->decl.units)
        if (Unit* u = supervisor_->find(w); u && !u->can_start())
          return reject("cannot restart group '" + name + "': its watch '" + w +
                        "' has nothing to restart it with (no 'start' and no 'restart_script'; "
                        "vigil only watches the process its match finds)",
                        409);
    auto done = [this, reply, name] {
      Group* grp = supervisor_->find_group(name);
      reply(ok_reply({{"group", grp ? supervisor_->group_json(*grp) : nlohmann::json(nullptr)}}));
    };
    if (cmd == "start") {
      if (cluster_) cluster_->operator_start(*g);
      else g->held = g->decl.clustered;  // nobody else to ask
      supervisor_->start_group(*g);
      return done();
    }
    if (cmd == "stop") {
      if (cluster_) cluster_->operator_stop(*g);
      return supervisor_->stop_group(*g, done);
    }
    if (cmd == "restart") return supervisor_->restart_group(*g, done);
    for (const auto& w : g->decl.units)
      if (Unit* u = supervisor_->find(w))
        cmd == "pause" ? supervisor_->pause(*u) : supervisor_->resume(*u);
    return done();
  }
  if (cmd == "pause" || cmd == "resume") {
    std::vector<Unit*> targets;
    if (req.flag("all", false)) {
      for (const auto& [name, u] : supervisor_->units()) targets.push_back(u.get());
    } else if (Unit* u = unit_arg()) {
      targets.push_back(u);
    } else {
      return;
    }
    for (Unit* u : targets) cmd == "pause" ? supervisor_->pause(*u) : supervisor_->resume(*u);
    return reply(ok_reply({{"count", targets.size()}}));
  }
  if (cmd == "start" || cmd == "stop" || cmd == "restart") {
    Unit* u = unit_arg();
    if (!u) return;
    std::string name = u->name;
    auto done = [this, reply, name] {
      Unit* unit = supervisor_->find(name);
      reply(ok_reply({{"watch", unit ? unit->to_json() : nlohmann::json(nullptr)}}));
    };
    if (cmd == "start") {
      supervisor_->start(*u);
      return done();
    }
    if (cmd == "stop") return supervisor_->stop(*u, done);
    if (!u->can_start())
      // Stopping it would leave it dead: vigil did not start it and has
      // no way to. Refused before anything is touched.
      return reject("cannot restart '" + name +
                    "': nothing to restart it with (it has no 'start' and no 'restart_script'; "
                    "vigil only watches the process its match finds). Restart it the way it was "
                    "started, or give the watch a 'restart_script'",
                    409);
    return supervisor_->restart(*u, done);
  }
  if (cmd == "set") {  // on a watch or a group
    std::string name = req.required_str("name", "a watch or group name");
    std::map<std::string, std::string>* overrides = nullptr;
    if (Unit* u = supervisor_->find(name))
      overrides = &u->overrides;
    else if (Group* g = supervisor_->find_group(name))
      overrides = &g->overrides;
    else
      return reject("no watch or group named '" + name + "'", 404);
    std::string key = str("key"), value = str("value");
    if (key.empty()) return reject("set: a key is required");
    std::string err;
    if (req.flag("default", false)) {
      // Back to the rule's value, and no override left to replay at a reload.
      auto declared = runtime_->reset_param(name, key, err);
      if (!declared) return reject("set " + name + " " + key + " --default: " + err);
      overrides->erase(key);
      supervisor_->forget_orders();
      log_->emit(Msg::ParameterReset, name, {{"key", key}, {"value", *declared}});
      return reply(ok_reply({{"key", key}, {"value", *declared}, {"default", true}}));
    }
    auto normalized = runtime_->set_param(name, key, value, err);
    if (!normalized) return reject("set " + name + " " + key + ": " + err);
    (*overrides)[key] = *normalized;
    supervisor_->forget_orders();
    log_->emit(Msg::ParameterSet, name, {{"key", key}, {"value", *normalized}});
    return reply(ok_reply({{"key", key}, {"value", *normalized}}));
  }
  reject("unknown command '" + cmd + "'");
}

}  // namespace vigil

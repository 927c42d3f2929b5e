#include "host/core/events.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "host/core/clock.hpp"
#include "host/core/fd.hpp"
#include "host/log/sink.hpp"

namespace vigil {

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::Debug: return "debug";
    case Severity::Info: return "info";
    case Severity::Notice: return "notice";
    case Severity::Warning: return "warning";
    case Severity::Error: return "error";
    case Severity::Critical: return "critical";
  }
  return "info";
}

namespace {

using S = Severity;
// Keep in step with docs/messages.md (a test checks every id is documented).
const std::vector<MessageDef> kCatalog = {
    {Msg::DaemonStarted, "VGL0001", S::Notice, "daemon_started",
     "vigil {version} started (pid {pid}, rules {rules})"},
    {Msg::DaemonStopping, "VGL0002", S::Notice, "daemon_stopping", "vigil stopping ({reason})"},
    {Msg::RulesLoaded, "VGL0003", S::Notice, "rules_loaded",
     "rules loaded: {files} files, {watches} watches ({reason})"},
    {Msg::RulesRejected, "VGL0004", S::Error, "rules_rejected",
     "rules rejected, previous rules keep running: {error}"},
    {Msg::RuleError, "VGL0005", S::Error, "rule_error", "rule error in {callback}: {error}"},
    {Msg::RuleBudget, "VGL0006", S::Error, "rule_budget", "rule cut off in {callback}: {error}"},
    {Msg::ControlRejected, "VGL0007", S::Warning, "control_rejected",
     "control request rejected: {error}"},
    {Msg::RulesChanged, "VGL0008", S::Info, "rules_changed",
     "rule files changed, reloading ({path})"},
    {Msg::ProcEventsUnavailable, "VGL0009", S::Warning, "proc_events_unavailable",
     "kernel process events unavailable ({error}); scanning /proc every {interval}s instead"},
    {Msg::ProcEventsLost, "VGL0010", S::Warning, "proc_events_lost",
     "kernel process events were lost (receive buffer overrun); rescanning /proc"},
    {Msg::JournalUnreadable, "VGL0011", S::Error, "journal_unreadable",
     "cannot read the process journal {path}: {error}; the processes vigil started before are "
     "looked for by their marks instead"},
    {Msg::SinkUnreachable, "VGL0012", S::Error, "sink_unreachable",
     "log sink {sink}: cannot deliver to {address}: {error}; events are queued (at most "
     "{queue}) and delivery is retried"},
    {Msg::SinkRecovered, "VGL0013", S::Notice, "sink_recovered",
     "log sink {sink}: delivering to {address} again"},
    {Msg::EventsDropped, "VGL0014", S::Warning, "events_dropped",
     "log sink {sink}: {count} events dropped (its queue of {queue} was full)"},
    {Msg::SinkWriteFailed, "VGL0015", S::Error, "sink_write_failed",
     "log sink {sink}: cannot write {path}: {error}; events for it are lost until it works "
     "again"},
    {Msg::SinkFormatFailed, "VGL0016", S::Error, "sink_format_failed",
     "log sink {sink}: formatter failed: {error}; using the default text (reported once)"},
    {Msg::SinkRejected, "VGL0017", S::Error, "sink_rejected", "log sink {sink}: {error}"},
    {Msg::MetricsStarted, "VGL0020", S::Info, "metrics_started",
     "metrics: sampling every {interval}s (csv {csv}, prometheus {listen})"},
    {Msg::MetricsWriteFailed, "VGL0021", S::Error, "metrics_write_failed",
     "metrics CSV {path}: {error}; samples are dropped until it can be written again, "
     "monitoring goes on"},
    {Msg::MetricsWriteRecovered, "VGL0022", S::Notice, "metrics_write_recovered",
     "metrics CSV {path} is written again ({dropped} rows were dropped)"},
    {Msg::MetricsListenFailed, "VGL0023", S::Error, "metrics_listen_failed",
     "metrics endpoint cannot listen on {address}: {error}; monitoring goes on without it"},
    {Msg::JournalDamaged, "VGL0030", S::Warning, "journal_damaged",
     "process journal {path} is damaged: {error}; kept {kept} entries, the processes vigil "
     "started before are looked for by their marks"},
    {Msg::ControlFailed, "VGL0031", S::Error, "control_failed",
     "control request {cmd} failed inside the daemon: {error}; the daemon goes on"},
    {Msg::StackImbalance, "VGL0045", S::Error, "stack_imbalance",
     "internal error: the Lua stack after {callback} held {found} values, not {expected}; "
     "repaired"},
    {Msg::ProcessStarted, "VGL0101", S::Info, "process_started", "{watch}: started pid {pid}"},
    {Msg::ProcessExited, "VGL0102", S::Warning, "process_exited",
     "{watch}: pid {pid} {how} after {uptime}s"},
    {Msg::SpawnFailed, "VGL0103", S::Error, "spawn_failed", "{watch}: cannot start: {error}"},
    {Msg::RestartScheduled, "VGL0104", S::Notice, "restart_scheduled",
     "{watch}: restart {restart} of {limit} in {delay}s"},
    {Msg::BudgetExhausted, "VGL0105", S::Critical, "budget_exhausted",
     "{watch}: restart budget exhausted ({used} restarts within {within}s), giving up"},
    {Msg::ExhaustedHook, "VGL0106", S::Notice, "exhausted_hook", "{watch}: on_exhausted: {action}"},
    {Msg::Rearmed, "VGL0107", S::Notice, "rearmed", "{watch}: re-armed ({reason})"},
    {Msg::StopRequested, "VGL0108", S::Info, "stop_requested",
     "{watch}: stopping pid {pid} ({how})"},
    {Msg::Stopped, "VGL0109", S::Info, "stopped", "{watch}: stopped ({how})"},
    {Msg::KilledAfterGrace, "VGL0110", S::Warning, "killed_after_grace",
     "{watch}: pid {pid} still alive after {timeout}s, sent KILL to its process group"},
    {Msg::Paused, "VGL0111", S::Notice, "paused", "{watch}: monitoring paused"},
    {Msg::Resumed, "VGL0112", S::Notice, "resumed", "{watch}: monitoring resumed"},
    {Msg::DeathWhilePaused, "VGL0113", S::Warning, "death_while_paused",
     "{watch}: pid {pid} exited while paused; not acting"},
    {Msg::ParameterSet, "VGL0114", S::Notice, "parameter_set", "{watch}: {key} set to {value}"},
    {Msg::WatchAdded, "VGL0115", S::Info, "watch_added", "{watch}: added ({where})"},
    {Msg::WatchChanged, "VGL0116", S::Notice, "watch_changed",
     "{watch}: spec changed, restarting ({where})"},
    {Msg::WatchRemoved, "VGL0117", S::Notice, "watch_removed", "{watch}: removed from rules"},
    {Msg::StopCommandFailed, "VGL0118", S::Warning, "stop_command_failed",
     "{watch}: stop command failed: {error}"},
    {Msg::OutputLogError, "VGL0119", S::Warning, "output_log_error",
     "{watch}: output log {path}: {error}"},
    {Msg::PolicyFallback, "VGL0120", S::Error, "policy_fallback",
     "{watch}: restart policy gave no decision; restarting in {delay}s"},
    {Msg::ProcessAdopted, "VGL0121", S::Info, "process_adopted",
     "{watch}: watching pid {pid} ({how})"},
    {Msg::ProcessKilled, "VGL0122", S::Warning, "process_killed",
     "{watch}: sending {signal} to pid {pid}: {reason}"},
    {Msg::RestartScript, "VGL0123", S::Notice, "restart_script",
     "{watch}: running the restart script (pid {pid}): {command}"},
    {Msg::RestartFailed, "VGL0124", S::Error, "restart_failed", "{watch}: restart failed: {error}"},
    {Msg::CountOver, "VGL0125", S::Warning, "count_over",
     "{watch}: {count} {of}, over the maximum of {max}"},
    {Msg::CountUnder, "VGL0126", S::Warning, "count_under",
     "{watch}: {count} {of}, under the minimum of {min}"},
    {Msg::CountWithin, "VGL0127", S::Notice, "count_within",
     "{watch}: {count} {of}, within the limits again (out of them {crossings} times in "
     "{for}s, between {low} and {peak})"},
    {Msg::CountKilled, "VGL0128", S::Warning, "count_killed",
     "{watch}: killed pid {pid}, the newest of {count} processes (maximum {max})"},
    {Msg::StateStopped, "VGL0129", S::Warning, "state_stopped",
     "{watch}: pid {pid} has been stopped (state T) for {for}s"},
    {Msg::StateBlocked, "VGL0130", S::Warning, "state_blocked",
     "{watch}: pid {pid} has been in uninterruptible sleep (state D) for {for}s"},
    {Msg::ZombieUnreaped, "VGL0131", S::Warning, "zombie_unreaped",
     "{watch}: pid {pid} died {for}s ago and its parent {ppid} has not reaped it (zombie)"},
    {Msg::StateCleared, "VGL0132", S::Notice, "state_cleared",
     "{watch}: pid {pid} is no longer {was} (now {state})"},
    {Msg::StateAction, "VGL0133", S::Notice, "state_action",
     "{watch}: pid {pid} {state}: {action}"},
    {Msg::CpuRunaway, "VGL0134", S::Warning, "cpu_runaway",
     "{watch}: pid {pid} has used {percent}% of a core for {for}s"},
    {Msg::NoProgress, "VGL0135", S::Warning, "no_progress",
     "{watch}: pid {pid} has {backlog} connections waiting on port {port} and has used no CPU "
     "for {for}s"},
    {Msg::FdsExhausted, "VGL0136", S::Warning, "fds_exhausted",
     "{watch}: pid {pid} has {count} files open, near its limit of {limit}"},
    {Msg::CloseWaitSockets, "VGL0137", S::Warning, "close_wait_sockets",
     "{watch}: pid {pid} has {count} sockets in CLOSE_WAIT (more than {limit})"},
    {Msg::ThreadsOver, "VGL0138", S::Warning, "threads_over",
     "{watch}: pid {pid} has {count} threads (more than {limit})"},
    {Msg::RssOver, "VGL0139", S::Warning, "rss_over",
     "{watch}: pid {pid} uses {rss} bytes of memory (more than {limit})"},
    {Msg::RssGrowth, "VGL0140", S::Warning, "rss_growth",
     "{watch}: pid {pid}'s memory grows by {per_minute} bytes a minute (more than {limit})"},
    {Msg::ProbeFailed, "VGL0141", S::Warning, "probe_failed",
     "{watch}: probe {probe} failed ({fails}/{threshold}): {reason}"},
    {Msg::ProcessHung, "VGL0142", S::Error, "process_hung",
     "{watch}: pid {pid} is hung: probe {probe} failed {fails} times: {reason}"},
    {Msg::ProbeRecovered, "VGL0143", S::Notice, "probe_recovered",
     "{watch}: probe {probe} passes again"},
    {Msg::WatchReady, "VGL0144", S::Info, "watch_ready", "{watch}: pid {pid} is ready"},
    {Msg::WatchNotReady, "VGL0145", S::Warning, "watch_not_ready",
     "{watch}: pid {pid} is no longer ready: {reason}"},
    {Msg::NotifyStatus, "VGL0146", S::Debug, "notify_status", "{watch}: pid {pid}: {status}"},
    {Msg::HungAction, "VGL0147", S::Notice, "hung_action", "{watch}: pid {pid} hung: {action}"},
    {Msg::WaitingForDeps, "VGL0148", S::Info, "waiting_for_deps", "{watch}: waiting for {for}"},
    {Msg::OrderedRestart, "VGL0149", S::Notice, "ordered_restart",
     "{watch}: restarting {members} in dependency order ({reason})"},
    {Msg::GroupExhausted, "VGL0150", S::Critical, "group_exhausted",
     "{watch}: group gave up after {used} restarts within {within}s; its watches are stopped"},
    {Msg::EscalationStep, "VGL0151", S::Notice, "escalation_step",
     "{watch}: escalation step {step} ({action}): {detail}"},
    {Msg::FailoverRequested, "VGL0152", S::Critical, "failover_requested",
     "{watch}: failover requested: {reason}"},
    {Msg::FailoverDone, "VGL0153", S::Notice, "failover_done",
     "{watch}: failover done ({how})"},
    {Msg::FailoverFailed, "VGL0154", S::Error, "failover_failed",
     "{watch}: failover failed: {error}"},
    {Msg::RebootRequested, "VGL0155", S::Critical, "reboot_requested",
     "{watch}: rebooting the node: {reason}"},
    {Msg::RebootRefused, "VGL0156", S::Error, "reboot_refused", "{watch}: reboot refused: {error}"},
    {Msg::DumpWritten, "VGL0157", S::Notice, "dump_written",
     "{watch}: evidence dump {path} ({files} files, {bytes} bytes)"},
    {Msg::DumpFailed, "VGL0158", S::Error, "dump_failed", "{watch}: evidence dump failed: {error}"},
    {Msg::ProcessReleased, "VGL0160", S::Notice, "process_released",
     "{watch}: pid {pid} left running, no longer watched ({reason})"},
    {Msg::NotifyDropped, "VGL0165", S::Warning, "notify_dropped",
     "sd_notify message from pid {pid} dropped: {reason}"},
    {Msg::CountKills, "VGL0170", S::Warning, "count_kills",
     "{watch}: killed {killed} more processes beyond the maximum of {max} in {interval}s (the "
     "last pid {pid})"},
    {Msg::LeftoversSwept, "VGL0176", S::Warning, "leftovers_swept",
     "{watch}: {count} processes left by pid {pid} were still running: {how}"},
    {Msg::StandingOrderOverruled, "VGL0177", S::Warning, "standing_order_overruled",
     "{watch}: the rules answered the exit of pid {was} otherwise than their standing order; "
     "pid {pid}, started at once, was killed"},
    {Msg::ServiceNotifyFailed, "VGL0178", S::Warning, "service_notify_failed",
     "cannot notify the service manager ({socket}): {error}; further failures are not logged"},
    {Msg::ServiceNotifying, "VGL0179", S::Info, "service_notifying",
     "notifying the service manager at {socket} (watchdog ping every {watchdog}s; 0: none)"},
    {Msg::SignalSent, "VGL0185", S::Notice, "signal_sent",
     "{watch}: {signal} sent to pid {pids} (vigil signal)"},
    {Msg::ParameterReset, "VGL0186", S::Notice, "parameter_reset",
     "{watch}: {key} back to its declared value {value}"},
    {Msg::DaemonLaunched, "VGL0195", S::Notice, "daemon_launched",
     "{watch}: start command running (pid {pid}); waiting for its pid file {pidfile}"},
    {Msg::DaemonFailed, "VGL0196", S::Error, "daemon_failed",
     "{watch}: cannot start the daemon: {error}"},
    {Msg::ProcessDone, "VGL0205", S::Info, "process_done",
     "{watch}: done ({how}): {why}"},
    {Msg::ProcessDoneFailed, "VGL0206", S::Error, "process_done_failed",
     "{watch}: failed and not restarted ({how}): {why}"},
    {Msg::PulledIn, "VGL0207", S::Info, "pulled_in",
     "{watch}: started (autostart = false) because '{by}', which requires it, is starting"},
    {Msg::ObservedExit, "VGL0209", S::Warning, "observed_exit",
     "{watch}: the observed process {pid} ended ({how}); mode = \"observe\": not restarted, waiting "
     "for it to come back"},
    {Msg::ObservedAction, "VGL0210", S::Warning, "observed_action",
     "{watch}: mode = \"observe\": would {action} ({why}); nothing done"},
    {Msg::DiscoverSummary, "VGL0211", S::Notice, "discover_summary",
     "discovery: {count} steady-state processes no watch covers: {names} (vigil discover --last)"},
    {Msg::DiscoverNew, "VGL0212", S::Notice, "discover_new",
     "discovery: new steady-state process '{name}' (pid {pid}, {exe}, score {score}, recovery "
     "{recovery})"},
    {Msg::DiscoverVanished, "VGL0213", S::Warning, "discover_vanished",
     "discovery: '{name}' (pid {pid}, {exe}) is no longer a steady-state process"},
    {Msg::DiscoverMore, "VGL0214", S::Notice, "discover_more",
     "discovery: {new} more new and {vanished} more vanished processes not listed (vigil "
     "discover --last)"},
    {Msg::DiscoverRan, "VGL0215", S::Info, "discover_ran",
     "discovery: {candidates} candidates, {new} new, {vanished} vanished ({scans} scans over "
     "{window}s, {processes} processes, {cpu}s of CPU off the loop)"},
    {Msg::DiscoverFailed, "VGL0216", S::Error, "discover_failed", "discovery failed: {error}"},
    {Msg::ApiListening, "VGL0227", S::Notice, "api_listening",
     "remote API listening on {listen} (port {port}; TLS {tls}, client certificates "
     "{client_certificates}, {tokens} tokens)"},
    {Msg::ApiFailed, "VGL0228", S::Error, "api_failed", "remote API on {listen}: {error}"},
    {Msg::ApiRefused, "VGL0229", S::Warning, "api_refused",
     "remote API refused {method} {path} from {who} ({status}): {reason} ({count} refused)"},
    {Msg::PeerUp, "VGL0240", S::Notice, "peer_up", "peer {peer} answers ({url})"},
    {Msg::PeerDown, "VGL0241", S::Error, "peer_down",
     "peer {peer} is down: no answer for {silent}s ({url}): {error}"},
    {Msg::RemoteState, "VGL0242", S::Notice, "remote_state",
     "{watch}: {state} on {node} (was {from}){why}"},
    {Msg::RemoteEvent, "VGL0243", S::Info, "remote_event", "{watch} on {node}: {message}"},
    {Msg::RemoteActionDone, "VGL0244", S::Info, "remote_action_done",
     "{verb} {remote} on {node}: done"},
    {Msg::RemoteActionFailed, "VGL0245", S::Warning, "remote_action_failed",
     "{verb} {remote} on {node} failed: {error}"},
    {Msg::PeerGap, "VGL0246", S::Warning, "peer_gap",
     "peer {peer}: its events after #{after} were lost; its status was read again"},
    {Msg::ClusterUnreachable, "VGL0250", S::Error, "cluster_unreachable",
     "etcd unreachable ({error}): clustered groups stay standby; retrying in {retry}s"},
    {Msg::ClusterReachable, "VGL0251", S::Notice, "cluster_reachable",
     "etcd reachable at {endpoint}: node {node} has lease {lease} (ttl {ttl}s)"},
    {Msg::NoEligibleNode, "VGL0255", S::Critical, "no_eligible_node",
     "{watch}: stays down: no live node may run it (failed within {avoid_for}s on {failed_on})"},
    {Msg::HolderChanged, "VGL0256", S::Info, "holder_changed", "{watch}: holder {from} -> {to}"},
    {Msg::GroupAvoided, "VGL0257", S::Notice, "group_avoided",
     "{watch}: not campaigning here: {reason}"},
    {Msg::GroupResigned, "VGL0258", S::Notice, "group_resigned",
     "{watch}: handed over (resigned): {reason}"},
    {Msg::LeaseLost, "VGL0259", S::Error, "lease_lost",
     "etcd lease {lease} of node {node} given up: {reason}"},
    {Msg::ClusterWriteFailed, "VGL0260", S::Warning, "cluster_write_failed",
     "{watch}: etcd write of {key} failed: {error}"},
    {Msg::GroupStandby, "VGL0262", S::Warning, "group_standby",
     "{watch}: clustered now and not held by this node: its watches are stopped in order"},
    {Msg::ClusterTakeover, "VGL0263", S::Notice, "cluster_takeover",
     "{watch}: held by this node ({node}) now: starting it"},
    {Msg::ClusterLost, "VGL0264", S::Warning, "cluster_lost",
     "{watch}: no longer held by this node ({reason}): stopping it in order"},
    {Msg::ClusterFenced, "VGL0265", S::Critical, "cluster_fenced",
     "{watch}: fenced ({reason}): TERM to every member, KILL after {kill_after}s"},
    {Msg::ClusterReleased, "VGL0266", S::Notice, "cluster_released",
     "{watch}: nothing of the group runs here any more ({how}, {seconds}s)"},
    {Msg::ClusterNotice, "VGL0267", S::Warning, "cluster_notice", "cluster: {what}"},
    {Msg::ClusterAdapterFailed, "VGL0268", S::Error, "cluster_adapter_failed",
     "cluster adapter '{adapter}': {error}"},
    {Msg::ClusterOperatorStart, "VGL0269", S::Warning, "cluster_operator_start",
     "{watch}: started by an operator while {holder} holds it"},
    {Msg::TrackFileFailed, "VGL0270", S::Error, "track_file_failed",
     "{watch}: cannot write the track file {path}: {error}"},
    {Msg::ClusterKept, "VGL0271", S::Warning, "cluster_kept",
     "cluster settings changed; the '{adapter}' adapter keeps its settings until vigil restarts"},
    {Msg::EngineUp, "VGL0272", S::Notice, "engine_up", "container engine at {engine} answers (API {version})"},
    {Msg::EngineDown, "VGL0273", S::Error, "engine_down",
     "container engine at {engine} does not answer: {error}; container watches wait, retrying"},
    {Msg::ContainerStarting, "VGL0276", S::Info, "container_starting",
     "{watch}: {how} container {container} through the engine"},
    {Msg::ContainerNoMatch, "VGL0277", S::Warning, "container_no_match",
     "{watch}: no container matches ({match}); waiting for one"},
    {Msg::ContainerCallFailed, "VGL0278", S::Error, "container_call_failed",
     "{watch}: engine {call} of container {container} failed: {error}"},
    {Msg::ContainerEngineRestart, "VGL0279", S::Notice, "container_engine_restart",
     "{watch}: the engine restarted container {container} itself (restart policy {policy}); counted, not restarted again"},
    {Msg::ContainerRemoved, "VGL0280", S::Warning, "container_removed",
     "{watch}: container {container} was removed"},
    {Msg::ContainerTakenOver, "VGL0281", S::Notice, "container_taken_over",
     "{watch}: restart policy of container {container} was '{policy}'; set to 'no' (take_over: vigil decides)"},
    {Msg::ContainerExitCode, "VGL0282", S::Info, "container_exit_code",
     "{watch}: the engine says container {container} (pid {pid}) exited {code}"},
    {Msg::ContainerNoEngine, "VGL0283", S::Warning, "container_no_engine",
     "{watch}: not started: no container engine answers ({why}); started once it does"},
    {Msg::ContainerCountFill, "VGL0284", S::Notice, "container_count_fill",
     "{watch}: {count} containers run, under the minimum of {min}: starting {starting} stopped, creating {creating}"},
    {Msg::ContainerCountStop, "VGL0285", S::Notice, "container_count_stop",
     "{watch}: stopping container {container}: {count} run, above the maximum of {max}"},
    {Msg::ContainerCreated, "VGL0286", S::Info, "container_created",
     "{watch}: created container {container} from {image}"},
    {Msg::ContainerLeakKilled, "VGL0287", S::Warning, "container_leak_killed",
     "{watch}: container {container} was removed while its process (pid {pid}) ran; the process is killed"},
    {Msg::RuleMessage, "VGL0900", S::Info, "rule_message", "{message}"},
};

}  // namespace

const std::vector<MessageDef>& message_catalog() {
  return kCatalog;
}

const MessageDef& message_def(Msg m) {
  return kCatalog[static_cast<size_t>(m)];
}

std::string render_template(std::string_view tmpl, const nlohmann::json& fields) {
  std::string out;
  out.reserve(tmpl.size() + 32);
  size_t i = 0;
  while (i < tmpl.size()) {
    size_t open = tmpl.find('{', i);
    if (open == std::string_view::npos) break;
    size_t close = tmpl.find('}', open);
    if (close == std::string_view::npos) break;
    out.append(tmpl.substr(i, open - i));
    std::string key(tmpl.substr(open + 1, close - open - 1));
    auto it = fields.find(key);
    if (it == fields.end()) {
      out.append(tmpl.substr(open, close - open + 1));
    } else if (it->is_string()) {
      out.append(it->get_ref<const std::string&>());
    } else if (it->is_number_float()) {
      char buf[32];
      snprintf(buf, sizeof buf, "%.3g", it->get<double>());
      out.append(buf);
    } else {
      // A list or table may hold strings that are not UTF-8 (argv, a
      // probe's output): replaced, never a throw out of emit().
      out.append(it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    i = close + 1;
  }
  out.append(tmpl.substr(std::min(i, tmpl.size())));
  return out;
}

nlohmann::json Event::to_json() const {
  const MessageDef& def = message_def(msg);
  nlohmann::json j = {{"seq", seq},
                      {"time", rfc3339(time, true)},
                      {"id", def.id},
                      {"event", def.name},
                      {"severity", severity_name(severity)}};
  j["watch"] = watch.empty() ? nlohmann::json(nullptr) : nlohmann::json(watch);
  j["message"] = text;
  j["fields"] = fields;
  return j;
}

const std::string& Event::json_line() const {
  if (json_line_.empty())
    json_line_ = to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return json_line_;
}

EventLog::EventLog(const LogOptions& options) : capacity_(options.ring_capacity) {
  // Console and text file need no loop; the daemon adds the others.
  if (options.console) {
    SinkSpec spec;
    spec.kind = "console";
    spec.min_severity = options.min_severity;
    std::string error;
    sinks_.push_back(make_sink(spec, nullptr, {}, error));
  }
  if (!options.file.empty()) {
    SinkSpec spec;
    spec.kind = "file";
    spec.path = options.file;
    spec.max_bytes = options.file_max_bytes;
    spec.keep = options.file_keep;
    spec.min_severity = options.min_severity;
    std::string error;
    sinks_.push_back(make_sink(
        spec, nullptr, [this](Msg m, nlohmann::json f) { report(m, std::move(f)); }, error));
  }
}

EventLog::~EventLog() = default;

void EventLog::add_sink(std::unique_ptr<Sink> sink) {
  if (sink) sinks_.push_back(std::move(sink));
}

void EventLog::set_rule_sinks(std::vector<std::unique_ptr<Sink>> sinks) {
  rule_sinks_ = std::move(sinks);
}

std::vector<std::unique_ptr<Sink>> EventLog::take_rule_sinks() {
  return std::move(rule_sinks_);
}

void EventLog::report(Msg msg, nlohmann::json fields) {
  if (writing_ > 0) {
    reports_.emplace_back(msg, std::move(fields));
    return;
  }
  emit(msg, "", std::move(fields));
}

void EventLog::write_sinks(const Event& ev, std::vector<std::unique_ptr<Sink>>& sinks) {
  for (size_t i = 0; i < sinks.size(); ++i) {
    Sink& sink = *sinks[i];
    const SinkFormatter& format = sink.spec().format;
    if (!format || in_formatter_) {
      sink.write(ev, nullptr);
      continue;
    }
    std::string out, error;
    in_formatter_ = true;
    bool ok = format(ev, out, error);
    in_formatter_ = false;
    if (ok) {
      sink.write(ev, &out);
      continue;
    }
    sink.write(ev, nullptr);
    if (!sink.formatter_failed_ && !error.empty()) {
      sink.formatter_failed_ = true;
      reports_.emplace_back(Msg::SinkFormatFailed, nlohmann::json{{"sink", sink.spec().name()},
                                                                  {"error", error},
                                                                  {"where", sink.spec().where}});
    }
  }
}

void EventLog::emit(Msg msg, std::string_view watch, nlohmann::json fields) {
  const MessageDef& def = message_def(msg);
  if (!watch.empty()) fields["watch"] = watch;
  std::string text = render_template(def.text, fields);
  emit(msg, def.severity, watch, std::move(fields), std::move(text));
}

void EventLog::emit(Msg msg, Severity sev, std::string_view watch, nlohmann::json fields,
                    std::string text) {
  Event ev;
  ev.seq = next_seq_++;
  ev.time = wall_seconds();
  ev.msg = msg;
  ev.severity = sev;
  ev.watch = std::string(watch);
  ev.fields = fields.is_object() ? std::move(fields) : nlohmann::json::object();
  ev.text = std::move(text);
  ++writing_;
  write_sinks(ev, sinks_);
  write_sinks(ev, rule_sinks_);
  --writing_;
  if (ring_.size() >= capacity_) ring_.pop_front();
  ring_.push_back({ev.seq, ev.watch, message_def(msg).id, ev.json_line()});
  if (listener_) listener_(ev);
  // What sinks reported while writing this event comes after it.
  while (writing_ == 0 && !reports_.empty()) {
    auto [m, f] = std::move(reports_.front());
    reports_.erase(reports_.begin());
    emit(m, "", std::move(f));
  }
}

std::vector<nlohmann::json> EventLog::recent(size_t n, std::string_view watch,
                                             std::string_view id) const {
  std::vector<nlohmann::json> out;
  for (auto it = ring_.rbegin(); it != ring_.rend() && out.size() < n; ++it)
    if ((watch.empty() || it->watch == watch) && (id.empty() || it->id == id))
      out.push_back(nlohmann::json::parse(it->json));
  return {std::make_move_iterator(out.rbegin()), std::make_move_iterator(out.rend())};
}

std::vector<std::string> EventLog::since(uint64_t after, size_t max, std::string_view watch,
                                         std::string_view id) const {
  std::vector<std::string> out;
  each_since(after, max, watch, id, [&](uint64_t, const std::string& json) { out.push_back(json); });
  return out;
}

size_t EventLog::each_since(uint64_t after, size_t max, std::string_view watch,
                            std::string_view id,
                            const std::function<void(uint64_t, const std::string&)>& fn) const {
  size_t n = 0;
  // The ring is in sequence order: start at the first event after `after`.
  auto it = std::lower_bound(ring_.begin(), ring_.end(), after + 1,
                             [](const Stored& s, uint64_t seq) { return s.seq < seq; });
  for (; it != ring_.end() && n < max; ++it)
    if ((watch.empty() || it->watch == watch) && (id.empty() || it->id == id)) {
      fn(it->seq, it->json);
      ++n;
    }
  return n;
}

namespace {

// The last `limit` bytes of path, from the first whole line on.
std::string read_tail(const std::string& path, size_t limit) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st{};
  if (!fd || fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  off_t size = st.st_size;
  off_t from = size > static_cast<off_t>(limit) ? size - static_cast<off_t>(limit) : 0;
  std::string text(static_cast<size_t>(size - from), '\0');
  ssize_t n = pread(fd.get(), text.data(), text.size(), from);
  if (n <= 0) return {};
  text.resize(static_cast<size_t>(n));
  if (from > 0) {
    size_t nl = text.find('\n');
    text.erase(0, nl == std::string::npos ? text.size() : nl + 1);
  }
  return text;
}

}  // namespace

size_t EventLog::restore(const std::vector<std::string>& history_files) {
  if (next_seq_ != 1) return 0;  // only before the first event
  std::deque<Stored> found;      // oldest first
  for (const auto& path : history_files) {
    if (found.size() >= capacity_) break;
    std::string text = read_tail(path, kRestoreBytes);
    std::deque<Stored> part;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) break;  // a line cut short by a crash
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object()) continue;
      auto seq = j.find("seq");
      auto id = j.find("id");
      if (seq == j.end() || !seq->is_number_unsigned() || id == j.end() || !id->is_string())
        continue;
      uint64_t s = seq->get<uint64_t>();
      // A history from an older vigil, or a reset: only increasing runs count.
      if (!part.empty() && s <= part.back().seq) part.clear();
      auto w = j.find("watch");
      part.push_back({s, w != j.end() && w->is_string() ? w->get<std::string>() : "",
                      id->get<std::string>(), std::move(line)});
    }
    if (part.empty()) continue;
    if (!found.empty() && part.back().seq >= found.front().seq) break;  // not older: stop
    found.insert(found.begin(), std::make_move_iterator(part.begin()),
                 std::make_move_iterator(part.end()));
  }
  while (found.size() > capacity_) found.pop_front();
  if (found.empty()) return 0;
  next_seq_ = found.back().seq + 1;
  ring_ = std::move(found);
  return ring_.size();
}

}  // namespace vigil

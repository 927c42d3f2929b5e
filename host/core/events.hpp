// The event log: every operator-visible event has a stable message id
// (VGLnnnn, see docs/messages.md), a severity and typed fields. Events go to
// an in-memory ring (for `vigil events`), to the sinks (host/log/: console,
// text and JSON files, syslog, journald) and to listeners (the Lua bridge).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace vigil {

class Sink;

enum class Severity { Debug, Info, Notice, Warning, Error, Critical };
std::string_view severity_name(Severity s);

// The catalog. Ids never change meaning; new events get new ids.
enum class Msg {
  DaemonStarted,          // VGL0001
  DaemonStopping,         // VGL0002
  RulesLoaded,            // VGL0003
  RulesRejected,          // VGL0004
  RuleError,              // VGL0005
  RuleBudget,             // VGL0006
  ControlRejected,        // VGL0007
  RulesChanged,           // VGL0008
  ProcEventsUnavailable,  // VGL0009
  ProcEventsLost,         // VGL0010
  JournalUnreadable,      // VGL0011
  SinkUnreachable,        // VGL0012
  SinkRecovered,          // VGL0013
  EventsDropped,          // VGL0014
  SinkWriteFailed,        // VGL0015
  SinkFormatFailed,       // VGL0016
  SinkRejected,           // VGL0017
  MetricsStarted,         // VGL0020
  MetricsWriteFailed,     // VGL0021
  MetricsWriteRecovered,  // VGL0022
  MetricsListenFailed,    // VGL0023
  JournalDamaged,         // VGL0030
  ControlFailed,          // VGL0031
  StackImbalance,         // VGL0045
  ProcessStarted,         // VGL0101
  ProcessExited,          // VGL0102
  SpawnFailed,            // VGL0103
  RestartScheduled,       // VGL0104
  BudgetExhausted,        // VGL0105
  ExhaustedHook,          // VGL0106
  Rearmed,                // VGL0107
  StopRequested,          // VGL0108
  Stopped,                // VGL0109
  KilledAfterGrace,       // VGL0110
  Paused,                 // VGL0111
  Resumed,                // VGL0112
  DeathWhilePaused,       // VGL0113
  ParameterSet,           // VGL0114
  WatchAdded,             // VGL0115
  WatchChanged,           // VGL0116
  WatchRemoved,           // VGL0117
  StopCommandFailed,      // VGL0118
  OutputLogError,         // VGL0119
  PolicyFallback,         // VGL0120
  ProcessAdopted,         // VGL0121
  ProcessKilled,          // VGL0122
  RestartScript,          // VGL0123
  RestartFailed,          // VGL0124
  CountOver,              // VGL0125
  CountUnder,             // VGL0126
  CountWithin,            // VGL0127
  CountKilled,            // VGL0128
  StateStopped,           // VGL0129
  StateBlocked,           // VGL0130
  ZombieUnreaped,         // VGL0131
  StateCleared,           // VGL0132
  StateAction,            // VGL0133
  CpuRunaway,             // VGL0134
  NoProgress,             // VGL0135
  FdsExhausted,           // VGL0136
  CloseWaitSockets,       // VGL0137
  ThreadsOver,            // VGL0138
  RssOver,                // VGL0139
  RssGrowth,              // VGL0140
  ProbeFailed,            // VGL0141
  ProcessHung,            // VGL0142
  ProbeRecovered,         // VGL0143
  WatchReady,             // VGL0144
  WatchNotReady,          // VGL0145
  NotifyStatus,           // VGL0146
  HungAction,             // VGL0147
  WaitingForDeps,         // VGL0148
  OrderedRestart,         // VGL0149
  GroupExhausted,         // VGL0150
  EscalationStep,         // VGL0151
  FailoverRequested,      // VGL0152
  FailoverDone,           // VGL0153
  FailoverFailed,         // VGL0154
  RebootRequested,        // VGL0155
  RebootRefused,          // VGL0156
  DumpWritten,            // VGL0157
  DumpFailed,             // VGL0158
  ProcessReleased,        // VGL0160
  NotifyDropped,          // VGL0165
  CountKills,             // VGL0170
  LeftoversSwept,         // VGL0176
  StandingOrderOverruled, // VGL0177
  ServiceNotifyFailed,    // VGL0178
  ServiceNotifying,       // VGL0179
  SignalSent,             // VGL0185
  ParameterReset,         // VGL0186
  DaemonLaunched,         // VGL0195
  DaemonFailed,           // VGL0196
  ProcessDone,            // VGL0205
  ProcessDoneFailed,      // VGL0206
  PulledIn,
  ObservedExit,           // VGL0209
  ObservedAction,         // VGL0210               // VGL0207
  DiscoverSummary,        // VGL0211
  DiscoverNew,            // VGL0212
  DiscoverVanished,       // VGL0213
  DiscoverMore,           // VGL0214
  DiscoverRan,            // VGL0215
  DiscoverFailed,         // VGL0216
  ApiListening,           // VGL0227
  ApiFailed,              // VGL0228
  ApiRefused,             // VGL0229
  PeerUp,                 // VGL0240
  PeerDown,               // VGL0241
  RemoteState,            // VGL0242
  RemoteEvent,            // VGL0243
  RemoteActionDone,       // VGL0244
  RemoteActionFailed,     // VGL0245
  PeerGap,                // VGL0246
  ClusterUnreachable,     // VGL0250
  ClusterReachable,       // VGL0251
  // VGL0252-VGL0254 retired: the hub's VGL0263-VGL0265 report a
  // takeover, a loss and a fence for every adapter (they were logged twice).
  NoEligibleNode,         // VGL0255
  HolderChanged,          // VGL0256
  GroupAvoided,           // VGL0257
  GroupResigned,          // VGL0258
  LeaseLost,              // VGL0259
  ClusterWriteFailed,     // VGL0260
  GroupStandby,           // VGL0262
  ClusterTakeover,        // VGL0263
  ClusterLost,            // VGL0264
  ClusterFenced,          // VGL0265
  ClusterReleased,        // VGL0266
  ClusterNotice,          // VGL0267
  ClusterAdapterFailed,   // VGL0268
  ClusterOperatorStart,   // VGL0269
  TrackFileFailed,        // VGL0270
  ClusterKept,            // VGL0271
  EngineUp,               // VGL0272
  EngineDown,             // VGL0273
  ContainerStarting,      // VGL0276
  ContainerNoMatch,       // VGL0277
  ContainerCallFailed,    // VGL0278
  ContainerEngineRestart, // VGL0279
  ContainerRemoved,       // VGL0280
  ContainerTakenOver,     // VGL0281
  ContainerExitCode,      // VGL0282
  ContainerNoEngine,      // VGL0283
  ContainerCountFill,     // VGL0284
  ContainerCountStop,     // VGL0285
  ContainerCreated,       // VGL0286
  ContainerLeakKilled,    // VGL0287
  RuleMessage,            // VGL0900
  kCount
};

struct MessageDef {
  Msg msg;
  const char* id;  // "VGL0102"
  Severity severity;
  const char* name;  // short machine name, e.g. "process_exited"
  const char* text;  // template; {field} is replaced by the field's value
};
const MessageDef& message_def(Msg m);
const std::vector<MessageDef>& message_catalog();

struct Event {
  uint64_t seq = 0;
  double time = 0;  // wall clock, seconds since epoch
  Msg msg{};
  Severity severity{};    // usually the catalog's, rule messages choose their own
  std::string watch;      // empty when not about one watch
  nlohmann::json fields;  // object
  std::string text;       // rendered

  nlohmann::json to_json() const;
  // to_json() as one line of text, made once and shared by the ring, the
  // history and the JSON sinks.
  const std::string& json_line() const;

 private:
  mutable std::string json_line_;
};

// Renders "{a} and {b}" from fields; unknown placeholders stay as they are.
std::string render_template(std::string_view tmpl, const nlohmann::json& fields);

struct LogOptions {
  bool console = true;
  std::string file;                   // empty: no file sink
  size_t file_max_bytes = 10u << 20;  // rotated at this size ...
  size_t file_keep = 3;               // ... keeping this many old files
  Severity min_severity = Severity::Info;
  size_t ring_capacity = 1024;
};

class EventLog {
 public:
  explicit EventLog(const LogOptions& options);
  ~EventLog();

  // Emits an event with the catalog's severity and template.
  void emit(Msg msg, std::string_view watch, nlohmann::json fields);
  // Emits with an explicit severity and text (rule messages).
  void emit(Msg msg, Severity sev, std::string_view watch, nlohmann::json fields, std::string text);

  // The newest `n` events, oldest first; filtered by watch (and id) when
  // given (as Event::to_json objects).
  std::vector<nlohmann::json> recent(size_t n, std::string_view watch = {},
                                     std::string_view id = {}) const;

  // The ring's events after sequence number `after` (oldest first, at
  // most `max`), as JSON lines: what an event stream resuming from
  // Last-Event-ID missed. oldest_seq() tells whether the ring still holds
  // the next one (0 when empty).
  std::vector<std::string> since(uint64_t after, size_t max, std::string_view watch = {},
                                 std::string_view id = {}) const;
  // The same, one at a time with its sequence number, without copies (an
  // event stream writes each where it goes). Returns how many were given.
  size_t each_since(uint64_t after, size_t max, std::string_view watch, std::string_view id,
                    const std::function<void(uint64_t seq, const std::string& json)>& fn) const;
  uint64_t oldest_seq() const { return ring_.empty() ? 0 : ring_.front().seq; }
  uint64_t last_seq() const { return next_seq_ - 1; }

  // At start, before the first event: the ring refilled from the tail of
  // the history files (newest first: events.jsonl, then its rotated
  // copy), and sequence numbers continued after the newest there, so that
  // a client's Last-Event-ID means the same event across a restart.
  // Reads at most kRestoreBytes per file; damaged lines are skipped.
  // Returns how many events were restored.
  static constexpr size_t kRestoreBytes = 1u << 20;
  size_t restore(const std::vector<std::string>& history_files);

  // More sinks (command line, the history): they live as long as the log.
  void add_sink(std::unique_ptr<Sink> sink);
  // The sinks the rules declared: replaced as a whole at each reload.
  void set_rule_sinks(std::vector<std::unique_ptr<Sink>> sinks);
  std::vector<std::unique_ptr<Sink>> take_rule_sinks();
  // How a sink reports trouble (VGL0012-VGL0016): emitted at once, or
  // after the event being written when it comes from inside a write.
  void report(Msg msg, nlohmann::json fields);

  using Listener = std::function<void(const Event&)>;
  void set_listener(Listener l) { listener_ = std::move(l); }

 private:
  void write_sinks(const Event& ev, std::vector<std::unique_ptr<Sink>>& sinks);

  std::vector<std::unique_ptr<Sink>> sinks_;
  std::vector<std::unique_ptr<Sink>> rule_sinks_;
  int writing_ = 0;            // nesting of sink writes
  bool in_formatter_ = false;  // a rule formatter runs: nested events get the default text
  std::vector<std::pair<Msg, nlohmann::json>> reports_;  // raised during a write
  // Kept serialized: a JSON line costs a fraction of the structured event.
  struct Stored {
    uint64_t seq;
    std::string watch;
    std::string id;
    std::string json;
  };
  std::deque<Stored> ring_;
  size_t capacity_;
  uint64_t next_seq_ = 1;
  Listener listener_;
};

}  // namespace vigil

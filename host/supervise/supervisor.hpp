// Supervisor: the host's record of every watch (a "unit") and the mechanism
// that acts on it: spawn or adopt, stop (signal -> grace -> KILL), restart
// scripts, finding processes by match, counting same-name processes,
// checking process states, timers for backoff and re-arm, restart history.
// It owns nothing of policy: when something happens it asks the Policy
// (the Lua rules) what to do, and the rules answer through the decision
// calls (restart_later, exhaust, lose). Units outlive rule reloads, so
// history and counters survive them.
//
// A unit is one of three kinds, by its declaration:
//   started   `start` and no `match`: vigil's own child
//   single    `match` selecting one process (oldest or newest): adopted
//             through a pidfd, or started/restarted by `start` or a
//             restart script and found again by the match
//   members   `match` selecting all, or a `count`: the set of matching
//             processes, kept current from kernel process events
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>
#include <string>
#include <unordered_map>
#include <vector>

#include "host/container/engine.hpp"
#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/probe/notify.hpp"
#include "host/proc/match.hpp"
#include "host/proc/proc_events.hpp"
#include "host/supervise/dump.hpp"
#include "host/supervise/journal.hpp"
#include "host/supervise/output_log.hpp"
#include "host/supervise/probes.hpp"
#include "host/supervise/reaper.hpp"
#include "host/supervise/spawn.hpp"

namespace vigil {

// An open /proc/PID/stat (or another file of it, for state checks), or an
// invalid Fd.
Fd open_stat(pid_t pid, const char* file = "stat");

// Waiting: to be started once the watches it requires are ready (or, in
// an ordered restart, once its dependents are down).
// Done: its process ended and, by the rules' `restart.on` (or a oneshot's
// completion), is not restarted: stopped by design, not by an operator.
enum class UnitState { Starting, Running, Backoff, Exhausted, Stopped, Waiting, Done };
const char* unit_state_name(UnitState s);

struct ExitInfo {
  pid_t pid = 0;
  ExitStatus status;
  double uptime = 0;             // seconds the process ran
  double wall = 0;               // when it ended
  std::string error;             // failure text when it never ran (or a restart failed)
  std::string killed;            // why vigil ended it (a hang, a state), "" when it did not
  std::string describe() const;  // "exited 3", "killed by KILL", "failed to start: ..."
  nlohmann::json to_json() const;
};

// How a watch that vigil does not start itself is brought back.
struct AdoptOptions {
  std::vector<std::string> restart_script;  // argv; empty: none
  double script_timeout = 60;               // the script is killed after this
  double find_within = 10;                  // after the script: how long to wait for a match
  // kill = "tree": vigil's signals reach the adopted process's descendants
  // and the session or process group it leads, and what it left running
  // is stopped before the restart script runs. "process": the pid only.
  bool kill_tree = true;
  bool operator==(const AdoptOptions&) const = default;
};

struct CountLimits {
  int64_t min = 0;
  int64_t max = -1;  // -1: no maximum
  // Hysteresis: once out of its limits, the count must stay back within
  // them this long before the episode ends (VGL0127). Going out again
  // meanwhile is the same episode: no new event, no new crossing.
  double hold = 2;
  bool operator==(const CountLimits&) const = default;
};

// Signs that a process is alive but not well, seen from /proc alone (no
// help from the application). Sampled every `every` seconds; 0 turns a
// check off.
struct StateChecks {
  double every = 5;
  double zombie = 10;       // seconds dead while its parent does not reap it
  double stopped = 30;      // seconds in state T (SIGSTOP, a debugger)
  double blocked = 60;      // seconds in state D (uninterruptible sleep, usually I/O)
  double cpu_percent = 0;   // a runaway: at least this % of one core ...
  double cpu_for = 60;      // ... for this many seconds
  double no_progress = 0;   // seconds with connections waiting to be accepted and no CPU used
  double fds = 0;           // open fds above this fraction of RLIMIT_NOFILE
  int64_t close_wait = 0;   // more CLOSE_WAIT sockets than this
  int64_t threads = 0;      // more threads than this
  uint64_t rss = 0;         // more resident memory than this (bytes)
  uint64_t rss_growth = 0;  // resident memory growing faster than this per minute
  bool operator==(const StateChecks&) const = default;
  bool enabled() const {
    return every > 0 &&
           (zombie > 0 || stopped > 0 || blocked > 0 || cpu_percent > 0 || no_progress > 0 ||
            fds > 0 || close_wait > 0 || threads > 0 || rss > 0 || rss_growth > 0);
  }
  // Only the process states (stopped, blocked) are checked: no figure.
  bool states_only() const {
    return !(cpu_percent > 0 || no_progress > 0 || fds > 0 || close_wait > 0 || threads > 0 ||
             rss > 0 || rss_growth > 0);
  }
  // The costlier samples: sockets (readlink of every fd, /proc/PID/net).
  bool sockets() const { return no_progress > 0 || close_wait > 0; }
  // The process is sampled at all (a zombie needs no sample of the live
  // process: it is looked at once it has died).
  bool sampled() const {
    return every > 0 && (stopped > 0 || blocked > 0 || cpu_percent > 0 || no_progress > 0 ||
                         fds > 0 || close_wait > 0 || threads > 0 || rss > 0 || rss_growth > 0);
  }
  // How often a healthy process is sampled (0: never). A check of a
  // figure (cpu, fds, rss, ...) samples every `every`; the state checks
  // alone (the defaults: stopped, blocked) need only half their shortest
  // threshold, a state that lasts longer than it is still seen; once a
  // process is seen in a bad state it is sampled every `every` again.
  // `stops_reported`: the kernel tells vigil when this process stops
  // (vigil's own child), so the stopped check needs no sample.
  double healthy_period(bool stops_reported) const {
    if (!states_only()) return every;
    double shortest = 0;
    for (double t : {stops_reported ? 0.0 : stopped, blocked})
      if (t > 0 && (shortest == 0 || t < shortest)) shortest = t;
    return shortest > 0 ? std::max(every, shortest / 2) : 0;
  }
};

// What the state checks remember about one process between samples.
struct Sampling {
  struct Condition {
    bool bad = false;
    bool reported = false;
    MonoTime since;
  };
  // stopped, blocked, cpu, no_progress, fds, close_wait, threads, rss, rss_growth
  Condition cond[9];
  uint64_t cpu_ticks = 0;
  // The leader's scheduler counters at the last read of its stat line
  // (/proc/PID/schedstat: time on CPU, times run; 0: not known).
  uint64_t ran_ns = 0, runs = 0;
  MonoTime at;
  bool primed = false;
  uint64_t nofile = 0;                             // RLIMIT_NOFILE at the last sample
  std::vector<std::pair<MonoTime, uint64_t>> rss;  // the last minute, for growth
};

// A container watch's own part (`container "web" { match = ... }`): which
// container it is, and how vigil treats the engine's own restart policy.
struct ContainerDecl {
  ContainerMatch match;
  // The engine restarts the container itself (restart policy other than
  // `no`): vigil observes by default and counts those restarts; take_over
  // sets the policy to `no` through the API and lets vigil decide.
  bool take_over = false;
  double stop_timeout = 10;  // stop?t=: TERM, then the engine KILLs
  // Wait this long after a death for the engine's own restart before
  // vigil starts the container itself (observe mode only).
  double engine_grace = 10;
  // Same-image counts: how many running containers the match may select,
  // and what fills the minimum (`on_under = "start"`): stopped matching
  // containers first, then new ones from the template.
  std::optional<CountLimits> count;
  bool fill = false;
  std::optional<ContainerTemplate> create;
  bool operator==(const ContainerDecl&) const = default;
};

struct Declaration {
  std::string name;
  std::string where;  // file:line
  ProcessSpec spec;   // argv empty: vigil does not start it
  std::optional<Matcher> match;
  AdoptOptions adopt;
  std::optional<CountLimits> count;
  StateChecks checks;
  std::vector<ProbeSpec> probes;
  // Order: the watches that must be ready before this one starts (every
  // dependency, groups expanded by the rules), and how long a process
  // without a readiness probe must have run to count as ready.
  std::vector<std::string> after;
  double settle = 0;
  std::string group;  // the innermost group it belongs to, "" for none
  // Removed from the rules: stop the process it adopted (by default vigil
  // lets go of a process it did not start, as at shutdown).
  bool stop_on_remove = false;
  // Started when the rules load (false: only by `vigil start`, a group
  // start, or a watch that requires it being started).
  bool autostart = true;
  // Runs to completion: ready for what requires it once it has ended
  // successfully (the rules' finish with success), not while it runs.
  bool oneshot = false;
  // mode = "observe": adopted, counted, probed and logged, never started,
  // stopped, restarted or killed by vigil (start_process refuses).
  bool observe = false;
  // A container watch (containers.cpp): spec and match are empty.
  std::optional<ContainerDecl> container;
};

// A group as the rules declared it: its members (watches or groups) in
// start order, and the watches they expand to.
struct GroupDecl {
  std::string name;
  std::string where;
  std::string strategy;  // one_for_one | one_for_all | rest_for_one (for display)
  std::string parent;    // the enclosing group, "" for none
  std::string description;
  std::vector<std::string> members;  // watches or groups, start order
  std::vector<std::string> units;    // every watch inside, start order
  // Runs only on the node that holds it (a cluster adapter decides): until
  // then its watches are loaded, checked and shown, and not started.
  bool clustered = false;
};

// What budgets count: when something was restarted (monotonic seconds) and
// how long the process that ended had run.
struct RestartRecord {
  double mono;
  double uptime;
};

// History kept by the host for the rules, so budgets and ladders survive
// reloads: the restarts, the uses of each escalation step, and the last
// decision with the reasons the rules gave (`vigil explain`).
struct Ledger {
  std::vector<RestartRecord> history;  // oldest first, bounded
  std::map<std::string, std::vector<RestartRecord>> steps;
  nlohmann::json decision;  // null until the rules explain one
  void add(std::vector<RestartRecord>& list, double mono, double uptime);
  void clear() {
    history.clear();
    steps.clear();
  }
  nlohmann::json to_json() const;
};

struct Group {
  GroupDecl decl;
  bool exhausted = false;
  double since = 0;  // wall time of the last change of `exhausted`
  uint64_t restarts = 0;
  TimerId rearm_timer = 0;
  Ledger ledger;
  std::map<std::string, std::string> overrides;  // `vigil set` values, survive reloads
  // A clustered group: this node holds it (it may run here). Kept across
  // reloads; always false for a group that is not clustered.
  bool held = false;
};

struct Unit {
  enum class Kind { Started, Single, Members, Container };

  std::string name;
  std::string where;
  ProcessSpec spec;
  StateChecks checks;

  // What only a watch with `match` has: its matcher, how it is restarted,
  // its count and members, a restart script or a search in flight. A
  // started watch carries none of it (memory at thousands of watches).
  enum class Bounds { Within, Over, Under };
  // The count of a set, same-name processes (Matching) or same-image
  // containers (Containing): its limits and the episode of being out of
  // them (adopt.cpp, check_bounds: one owner for both).
  struct Counting {
    explicit Counting(std::optional<CountLimits> c) : count(c) {}
    std::optional<CountLimits> count;
    Bounds bounds = Bounds::Within;  // where the count is now
    // The episode reported (VGL0125/VGL0126) and not yet ended by a hold
    // back within the limits: how often it went out, how far.
    Bounds reported = Bounds::Within;
    TimerId hold_timer = 0;
    int64_t crossings = 0, peak = 0, low = 0;
    MonoTime out_since{};
  };
  struct Matching : Counting {
    Matching(Matcher mt, AdoptOptions a, std::optional<CountLimits> c)
        : Counting(c), match(std::move(mt)), adopt(std::move(a)) {}
    Matcher match;
    AdoptOptions adopt;
    std::map<pid_t, uint64_t> members;  // members kind: pid -> start time
    // Forks of members that have not exec'd yet, pid -> (start time, when
    // seen): not counted until they exec into a member or outlive the
    // fork grace, so a member at the limit can run helper programs.
    std::map<pid_t, std::pair<uint64_t, MonoTime>> forks;
    TimerId fork_timer = 0;
    pid_t script_pid = 0;  // a restart script running
    TimerId sweep_timer = 0;  // stopping what a dead process left (tree.cpp)
    TimerId find_timer = 0;
    bool finding = false;         // waiting for the match to find the process
    bool stop_on_remove = false;  // the declaration's: stop what it adopted when removed
    // Members vigil started itself (`start`), pid -> start time: vigil's
    // children, each the leader of a session of its own. A stop (and
    // shutdown) ends them; members it only found are left alone.
    std::map<pid_t, uint64_t> own;
    bool stopping = false;  // a stop of `own` in flight
    TimerId kill_timer = 0;
  };
  std::unique_ptr<Matching> m;
  // What only a container watch has (containers.cpp): the container it
  // found, what the engine last said of it. Its process (Unit::child) is
  // the container's main process, adopted by pidfd and foreign: vigil
  // stops and starts it only through the engine.
  struct Containing : Counting {
    explicit Containing(ContainerDecl d) : Counting(d.count), decl(std::move(d)) {}
    ContainerDecl decl;
    // A counted watch (decl.count, containers.cpp "same-image counts"): no
    // container of its own, the running containers its match selects.
    bool counted() const { return decl.count.has_value(); }
    std::map<std::string, double> members;  // id -> created (unix seconds)
    std::set<std::string> own;  // started or created by vigil for the count
    bool listing = false, list_again = false;  // one list in flight, coalesced
    bool filling = false;      // a start waits for the count to reach its minimum
    TimerId fill_timer = 0;
    int fill_calls = 0;        // the fill's engine calls not answered yet
    bool topped_up = false;    // the fill created what was still missing once
    int stops = 0;             // an operator stop of `own` in flight
    std::string id;     // "" until the match found one
    ContainerInfo info;  // the last inspect
    bool seen = false;   // the match found a container once
    bool engine_wait = false;  // to be started once the engine answers
    bool busy = false;         // an engine call for its start in flight
    bool taken_over = false;   // take_over: its restart policy set to `no`
    bool engine_up = false;    // the engine answers (status: "unknown" when not)
    // Vigil stopped it (or gave up waiting for the engine): the engine's
    // restart policy does not bring it back, vigil starts it.
    bool stopped_by_vigil = false;
    uint64_t engine_restarts = 0;  // restarts the engine made, seen by vigil
    int stale_tries = 0;  // the engine still says "running" of a process that died
    TimerId grace_timer = 0;       // observe mode: waiting for the engine's restart
    // Observes: the engine restarts it, vigil counts (policy not `no`, no take_over).
    bool observes() const { return !decl.take_over && info.restart_policy != "no" && !info.restart_policy.empty(); }
  };
  std::unique_ptr<Containing> ct;
  // Probes, when it has any (probes.hpp).
  std::unique_ptr<Probing> probing;
  // Ready for what depends on it: its readiness probes passed, or its
  // process has run for `settle` seconds (at once when 0).
  bool ready() const;

  Kind kind() const {
    if (ct) return Kind::Container;
    if (!m) return Kind::Started;
    return m->count || m->match.spec().select == MatchSpec::Select::All ? Kind::Members
                                                                        : Kind::Single;
  }
  // The count it keeps, if it is a counted set.
  Counting* counter() { return const_cast<Counting*>(std::as_const(*this).counter()); }
  const Counting* counter() const {
    if (kind() == Kind::Members) return m.get();
    if (ct && ct->counted()) return ct.get();
    return nullptr;
  }
  bool can_start() const {
    return ct || !spec.argv.empty() || (m && !m->adopt.restart_script.empty());
  }
  bool finding() const { return m && m->finding; }
  // Its process is someone else's: adopted by the match (or started by a
  // restart script), not started by vigil in a group of its own. Vigil
  // never stops such a process for its own reasons (a shutdown, a removed
  // or changed watch); it lets go of it.
  bool foreign() const { return child && child->adopted && !child->own_group && !child->daemon; }
  pid_t script_pid() const { return m ? m->script_pid : 0; }

  UnitState state = UnitState::Stopped;
  bool paused = false;
  bool want_running = true;
  double since = 0;  // wall time the state was entered
  bool oneshot = false;    // the declaration's (Declaration::oneshot)
  bool autostart = true;   // the declaration's (Declaration::autostart)
  bool observe = false;    // the declaration's (Declaration::observe)
  // Not started because of autostart = false, and not asked for since:
  // started when a watch that requires it is.
  bool held = false;
  bool done_ok = false;    // Done: it ended successfully

  struct Child {
    pid_t pid = 0;
    uint64_t start_time = 0;
    MonoTime started;
    std::optional<SpawnFailure> failure;  // it never reached exec
    // Spawned without waiting for its exec: `failure` is not known yet
    // (Supervisor::exec_known tells it; the unit is Starting until then).
    bool exec_pending = false;
    // Adopted: not vigil's child (or no longer: vigil restarted). Watched
    // through a pidfd of its own; the exit status comes from the proc
    // connector, or from reaping it when it was reparented to vigil.
    bool adopted = false;
    bool own_group = true;  // vigil started it (setsid): stops signal its group
    bool daemon = false;    // started by vigil, found by its pid file (pidfile.cpp)
    uint64_t overruns = 0;  // the proc connector's count when adopted
    uint64_t events_epoch = 0;  // its subscription when adopted (0: none)
    Fd pidfd;               // adopted only; the reaper holds its children's
    WatchId watch = 0;
    bool stopping = false;
    std::string killed;  // kill_process's reason, when it ended it
    // Started at once by the rules' standing order (Unit::armed) when the
    // one before it ended; the rules have not answered that exit yet.
    bool unconfirmed = false;
    bool unreported = false;  // confirmed, its start not logged yet
    TimerId kill_timer = 0;
    // State checks: /proc/PID/stat kept open, and what the samples saw.
    Fd stat_fd;
    Fd sched_fd;  // its /proc/PID/schedstat, when only its states are checked
    std::unique_ptr<Sampling> sampling;
  };
  std::optional<Child> child;
  std::optional<ExitInfo> last_exit;
  // A `pidfile` watch's start command in flight, or its pid file awaited
  // (pidfile.cpp); null otherwise.
  struct Launch {
    pid_t pid = 0;            // the start command
    uint64_t start_time = 0;  // its start (the daemon starts later)
    bool running = true;      // not exited yet
    std::optional<SpawnFailure> failure;
    TimerId deadline = 0, poll = 0;
    int delay_ms = 10;        // the next look at the pid file
    std::string last;         // why the last look did not accept it
  };
  std::unique_ptr<Launch> launch;

  uint64_t restarts = 0;
  uint64_t decisions = 0;  // restart_later/exhaust/lose calls, to see the policy answered
  // The rules' standing order for the running process (Policy::arm): its
  // exit is answered by a restart at once, whatever the exit. The
  // replacement is then started the moment it ends, and the exit written
  // up and put to the rules afterwards (`pending_exit`).
  // nullopt: not asked for the running process (asked at its exit).
  std::optional<bool> armed;
  std::unique_ptr<ExitInfo> pending_exit;  // (a pointer: rare, and a thousand units)
  Ledger ledger;           // restart history, ladder steps, last decision
  TimerId timer = 0;       // pending backoff restart or re-arm
  TimerId at_once = 0;     // `timer`, when it is a restart with no delay

  // Order (order.cpp). `queued`: to be (re)started in dependency order,
  // after its process (if any) is stopped once its dependents are down.
  // `stop_queued`: to be stopped once its dependents are down.
  std::vector<std::string> after;
  double settle = 0;
  std::string group;
  bool queued = false;
  bool stop_queued = false;
  MonoTime not_before{};
  std::vector<std::string> waiting_for;  // the dependencies not ready yet

  OutputLog out, err;
  std::vector<std::function<void()>> stop_waiters;
  bool remove_when_stopped = false;
  std::unique_ptr<Declaration> respawn_with;     // apply this after the stop completes
  // An operator restart: started again, as it is declared now, once the
  // stop completes. The unit is its declaration (nothing is rebuilt from
  // it, so nothing of it is lost: probes, checks, order, live changes).
  bool restart_when_stopped = false;
  std::map<std::string, std::string> overrides;  // `vigil set` values, survive reloads

  nlohmann::json to_json() const;
  // The same object as to_json, as JSON text appended to `out` (no tree:
  // `status` of a thousand watches).
  void write_json(std::string& out) const;
};

class Supervisor;

// "name=shop-db, label app.role=web" (status, events).
std::string describe_container_match(const ContainerMatch& m);

// The supervisor's ear on the container engine (containers.cpp): the
// engine's news goes to the container watches.
class ContainerListener final : public EngineListener {
 public:
  explicit ContainerListener(Supervisor& s) : s_(s) {}
  void engine_up(const std::string& version) override;
  void engine_down(const std::string& why) override;
  void container_event(const ContainerEvent& ev) override;
  void resync(const std::vector<ContainerInfo>& all) override;

 private:
  Supervisor& s_;
};

// What the rules are asked. Implemented by the Lua bridge.
class Policy {
 public:
  virtual ~Policy() = default;
  // A watched process ended (or a restart of it failed) and vigil is not
  // stopping it. The policy must call restart_later(), exhaust() or lose()
  // before returning; if it does not (a broken rule), the supervisor falls
  // back to a delayed restart.
  virtual void on_exit(Unit& unit, const ExitInfo& exit) = 0;
  // Asked about a process of a watch vigil starts, right after it was
  // restarted (or at its exit, when it was started otherwise or the rules
  // changed since): will its exit be answered by a restart at once
  // (restart_later with no delay), whatever the exit? Only a sure yes may
  // be given; an answer the exit then contradicts costs the replacement
  // (VGL0177).
  virtual bool arm(Unit& /*unit*/) { return false; }
  // A members watch left its bounds, or is still outside them and changed
  // (`crossed` is true the first time).
  virtual void on_count(Unit& unit, const nlohmann::json& ev) = 0;
  // A watched process has been in a bad state (zombie, stopped, blocked)
  // for longer than its threshold.
  virtual void on_state(Unit& unit, const nlohmann::json& ev) = 0;
  // A liveness probe failed `fails` times in a row: the process is hung.
  virtual void on_hung(Unit& unit, const nlohmann::json& ev) = 0;
  // Runs the rules' check for probe `index` (a Lua probe); the answer
  // comes back through Supervisor::probe_answer with `token`.
  virtual void run_probe(Unit& unit, size_t index, uint64_t token) = 0;
};

class Supervisor {
 public:
  Supervisor(EventLoop& loop, EventLog& log, std::string log_dir, std::string journal_path = {});
  ~Supervisor();

  void set_policy(Policy* p) { policy_ = p; }
  // Reads the journal of the vigil that ran before: the next apply adopts
  // the processes it names that still run, and looks for the others by
  // their marks. A damaged or unreadable journal is an event (VGL0030,
  // VGL0011).
  void load_journal();
  Reaper& reaper() { return reaper_; }
  ProcReader& reader() { return reader_; }

  // Kernel process events (null: not available; vigil scans /proc instead
  // every `scan_interval` seconds where it needs to find processes).
  void set_proc_events(ProcEvents* events, double scan_interval);
  // Called by the daemon for every process event.
  void on_proc_event(const ProcEvent& ev);
  // Events were lost: rebuild member sets and look for missing processes.
  void rescan();
  // What the rules' subscriptions to process events (vigil.proc.on) need
  // to hear (ProcEvents bits; 0: none).
  void set_rule_interest(unsigned events);
  // What vigil needs from the kernel's process events now (ProcEvents
  // bits; 0: none, the connector is closed).
  unsigned wanted_events() const;
  // Where HTTP and TCP probes run, and where sd_notify messages arrive
  // (either may be null: those probes then fail with a reason).
  void set_probes(ProbeEngine* engine, NotifySocket* notify);
  // The container engine (null: none; container watches wait for one).
  // It must outlive the supervisor or be replaced (set_containers(nullptr))
  // before it goes.
  void set_containers(ContainerEngine* engine);
  ContainerEngine* containers() const { return containers_; }
  // A counted container watch over its maximum (the rules' `on_over =
  // "stop_newest"`): stops one of its members through the engine.
  // False (and why) when `id` is not a running member of it.
  bool stop_member_container(Unit& u, const std::string& id, std::string& error);
  // The rules' answer to run_probe.
  void probe_answer(Unit& u, size_t index, uint64_t token, const ProbeResult& result);
  // State checks so far: passes over the processes due, samples taken.
  uint64_t check_passes() const { return check_passes_; }
  uint64_t check_samples() const { return check_samples_; }
  uint64_t check_unchanged() const { return check_unchanged_; }
  // Output logs whose size was looked at, since the start (LogRotation).
  uint64_t logs_looked() const { return rotation_.looked(); }

  // Makes the set of units match `decls` (a reload): unchanged units keep
  // their process, changed ones restart, removed ones stop, new ones start
  // (or are adopted: a process of theirs still running from before vigil
  // restarted, or one the match finds).
  void apply(std::vector<Declaration> decls, std::vector<GroupDecl> groups = {});

  Unit* find(const std::string& name);
  const std::map<std::string, std::unique_ptr<Unit>>& units() const { return units_; }
  Group* find_group(const std::string& name);
  const std::map<std::string, Group>& groups() const { return groups_; }
  std::map<std::string, Group>& groups() { return groups_; }
  // A group's status: its members (watches and nested groups) as a tree.
  nlohmann::json group_json(const Group& g) const;
  // The state of a group as a whole, defined here only (status, wait,
  // --check read it from group_json's "state"):
  //   exhausted   the group gave up (its budget is used up)
  //   restarting  a restart or stop of its watches in order is in flight
  //   ready       every member is running and ready
  //   stopped     no member has a process, and none is starting, in
  //               backoff or waiting to start
  //   degraded    anything else: some members are not (yet) running or ready
  //   standby     a clustered group this node does not hold, nothing of
  //               it running here (it runs on the node that holds it)
  std::string group_state(const Group& g) const;
  // The clustered group `u` belongs to (its own group or an enclosing
  // one), or null.
  const Group* clustered_group_of(const Unit& u) const;
  // A member of a clustered group this node does not hold: not started.
  bool in_standby(const Unit& u) const;
  // Called after a watch's state or readiness or a group's exhaustion
  // changed (from the supervisor's own call stack: the callee posts what
  // it does). `vigil wait` is woken by it.
  void set_change_listener(std::function<void()> fn) { on_change_ = std::move(fn); }
  // Whether this node holds a clustered group (the cluster adapter's
  // word), asked when apply() finds one not held yet: a group the adapter
  // holds already (the command and keepalived adapters, always) keeps
  // what a previous vigil left running instead of stopping it as a
  // leftover.
  void set_hold_check(std::function<bool(const std::string&)> fn) { holds_ = std::move(fn); }

  // Order (order.cpp). A coordinated restart: the watches `names` are
  // stopped (dependents first), then started again in dependency order,
  // each once its dependencies are ready, after `delay` seconds. Watches
  // already in one join it: each is started exactly once. `cause` (may be
  // null) is the watch whose end this decides; `group` (may be null)
  // records a restart in its history. `done` runs when every one has been
  // started again.
  void restart_set(Unit* cause, const std::vector<std::string>& names, double delay, Group* group,
                   const std::string& reason, std::function<void()> done = {});
  // Remote watches (host/remote/): names that a unit's `after` may list
  // without a unit here, ready when their node says so. A change lets
  // what waits for one start (a remote watch going down later stops
  // nothing here: the rules' on_down hook decides).
  void set_remote_ready(const std::string& name, bool ready);
  void forget_remote(const std::string& name);
  bool remote_ready(const std::string& name) const;
  // Stops the watches, dependents first; `done` when all are down.
  void stop_ordered(const std::vector<std::string>& names, std::function<void()> done = {});
  // Starts them (each waits for its dependencies).
  void start_ordered(const std::vector<std::string>& names, const char* reason);
  // The group gives up: its watches are stopped in order and not started
  // again until the re-arm (after `rearm_after` s) or an operator start.
  void exhaust_group(Group& g, std::optional<double> rearm_after, Unit* cause);
  // Runs `fn` once nothing of `owner` (a group: all its watches; a watch:
  // itself) runs here any more: what still runs is stopped in order, a
  // stop that times out escalates to KILL as always, and `fn` runs after
  // the last process has been reaped. A handover to another node waits on
  // this so that the service never runs on two nodes at once.
  void after_stopped(const std::string& owner, std::function<void()> fn);
  // A clustered group's holding (the cluster adapter's word): held, it is
  // started in order (its budget re-armed); not held, it is stopped in
  // order and `done` runs once nothing of it runs here.
  void hold_group(Group& g, bool held, std::function<void()> done = {});
  // This node must stop the group NOW (a lease it cannot renew): no
  // order, no stop command: TERM (and CONT) to every member's process
  // group at once, KILL after `kill_after` seconds; `done` once every
  // process has been reaped. Bounded by kill_after and the reaping.
  void fence_group(Group& g, double kill_after, std::function<void()> done);
  // Operator commands on a group (in order).
  void start_group(Group& g);
  void stop_group(Group& g, std::function<void()> done);
  void restart_group(Group& g, std::function<void()> done);

  // Decisions (from the policy). Effects run after the current callback.
  void restart_later(Unit& u, double delay);
  void exhaust(Unit& u, std::optional<double> rearm_after);
  // Nothing to start: the watch waits for a matching process to appear.
  void lose(Unit& u);
  // Not restarted, by the rules' restart.on (or a oneshot that ran to its
  // end): the watch is done; `ok` when the exit counts as a success.
  void finish(Unit& u, bool ok, const std::string& why);
  // Kills the watched process (a hang, a bad state): it dies and the rules
  // decide as for any death; KILL follows after the stop timeout. Signals
  // that do not end a program (CONT, STOP, HUP, USR1, USR2, WINCH) are only
  // sent. `reason` goes into the event.
  bool kill_process(Unit& u, int signal, const std::string& reason);
  void set_count_limits(Unit& u, CountLimits limits);
  // `vigil signal`: sends `sig` to the watch's process (a members watch:
  // to each member) through a pidfd, so never to a recycled pid, and does
  // nothing else (no stop, no restart: what the signal does is the
  // program's business, and a death it causes is an exit like any other).
  // Returns the pids signalled; empty and `error` when there was none.
  std::vector<pid_t> send_signal(Unit& u, int sig, std::string& error);
  // Its state checks: each check on, its threshold, and what the last
  // sample of the running process saw (`vigil status NAME`).
  nlohmann::json checks_json(const Unit& u) const;

  // Operator commands. `done` runs when the command has taken effect.
  void start(Unit& u, const char* reason = "operator start");
  void stop(Unit& u, std::function<void()> done = {});
  void restart(Unit& u, std::function<void()> done = {});
  void pause(Unit& u);
  void resume(Unit& u);
  // Stops everything (daemon shutdown); `done` when all are down.
  void stop_all(std::function<void()> done);
  // Leaves every process running and records them for the next vigil.
  void detach_all();

  // Runs a one-shot command (hooks, restart scripts) in its own process
  // group with stdio to /dev/null; its group is KILLed after `timeout`
  // seconds and when it exits. A match never adopts it. `done` gets the
  // status and whether the timeout killed it. nullopt and `error` when it
  // cannot start.
  using CommandDone = std::function<void(const ExitStatus&, bool timed_out)>;
  // `sweep`: KILL what is left of its process group when it exits (hooks);
  // a restart script's background daemon must survive it instead.
  std::optional<pid_t> run_command(const std::vector<std::string>& argv,
                                   const std::vector<std::pair<std::string, std::string>>& env,
                                   double timeout, CommandDone done, std::string& error,
                                   bool sweep = true, int output_fd = -1);

  // Evidence dumps go to DIR/WATCH/TIME/ (dump.cpp).
  void set_dump_dir(std::string dir) { dump_dir_ = std::move(dir); }
  // Captures what the unit's process looks like now (and `trigger`, the
  // event that asked) before recovery acts; the directory, or nullopt and
  // `error`. Commands and the core image finish later.
  std::optional<std::string> dump(Unit& u, const nlohmann::json& trigger, const DumpOptions& o,
                                  std::string& error);
  const std::string& dump_dir() const { return dump_dir_; }

  // Where the output of u's processes goes (`vigil logs`): the path of
  // its stdout or stderr file, or "" and `why` when vigil captures none
  // (log = false, or vigil does not start its process).
  std::string output_path(const Unit& u, bool stderr_stream, std::string& why) const;
  // Forgets the rules' standing orders: asked again at each process's
  // exit (after a reload or a live change: the budgets it rests on changed).
  void forget_orders();

  size_t running_count() const;
  // Processes vigil runs for itself (scripts, hooks, stop commands) and
  // what they forked into their process group: a match never adopts them.
  bool is_own_command(const ProcStat& st) const;

 private:
  // Work for a bounded slice of the loop (EventLoop::defer), dropped if
  // the supervisor is gone by then.
  void defer(std::function<void()> task);
  // supervisor.cpp: lifecycle of started processes, stops, decisions.
  // Starts u's process; `quiet`: no event (the standing order's restart,
  // reported when the rules confirm it). False when there is no process.
  bool spawn(Unit& u, bool quiet = false);
  void execs_known();
  void exec_result(Unit& u);
  void launched(Unit& u, bool quiet);
  // By kind: spawn, restart script, or wait. `look_first`: a single watch
  // with `start` first looks whether its process came back by itself.
  void start_process(Unit& u, bool look_first = true);
  void on_exit(Unit& u, const ExitStatus& st);
  // The rest of an exit, once the process is gone: events and the rules.
  void finish_exit(Unit& u, const ExitInfo& e, bool was_stopping);
  nlohmann::json exit_fields(const Unit& u, const ExitInfo& e) const;
  // The standing order (Unit::armed): start now, write up later.
  bool restart_armed(Unit& u, const ExitInfo& e, bool was_stopping);
  void settle_exit(Unit& u);
  void confirm_armed(Unit& u);
  void report_armed(Unit& u);
  void overrule(Unit& u);
  void ask_arm(Unit& u);
  void set_state(Unit& u, UnitState s);
  void changed() {
    if (on_change_) on_change_();
  }
  void begin_stop(Unit& u);
  // stop() without leaving an ordered restart (advance() stops a queued
  // unit's process before starting it again).
  void halt(Unit& u, std::function<void()> done = {});
  void finish_stopped(Unit& u, const std::string& how);
  void cancel_timer(Unit& u);
  void open_output(Unit& u);
  void erase(std::string name);  // a copy: callers pass the unit's own name
  void add_unit(Declaration d);
  void replace_spec(Unit& u, Declaration d);
  bool same_spec(const Unit& u, const Declaration& d) const;
  void signal_process(Unit& u, int sig);
  // A stop's or a fence's bound: KILL u's process after `after` seconds
  // if it is still the one running now (VGL0110). A
  // container's goes through its pidfd: the engine may be what hangs.
  void kill_after(Unit& u, double after);
  void record(Unit& u);
  // Stops watching u's process without a signal (it runs on): a removed
  // or changed watch whose process is someone else's.
  void release(Unit& u, const char* reason);

  // tree.cpp: an adopted process's tree (kill = "tree").
  struct Relative {
    pid_t pid;
    uint64_t start_time;
  };
  // The live processes of `pid`'s tree, without it: its descendants, and
  // the members of the session and of the process group it leads. A
  // session or group id is never reused while a process carries it, so
  // after `pid` has died this still names exactly what it left behind.
  std::vector<Relative> tree_of(pid_t pid, bool descendants = true);
  // A pidfd of r if it is still the process the scan saw (its start
  // time), else none.
  Fd pin(const Relative& r);
  // Sends `sig` to each through a pidfd checked against its start time.
  void signal_relatives(const std::vector<Relative>& tree, int sig);
  // What the dead `pid` of u left running (its session or group) is
  // stopped (TERM and CONT, KILL after u's stop timeout), then `next` runs.
  void sweep_leftovers(Unit& u, pid_t pid, std::function<void(Unit&)> next);

  // adopt.cpp: adopted processes, restart scripts, finding, members.
  bool adopt(Unit& u, pid_t pid, uint64_t start_time, bool own_group, const char* how);
  void on_adopted_exit(Unit& u, bool again = false);
  void run_restart_script(Unit& u);
  void start_script(Unit& u);
  void on_script_exit(const std::string& name, pid_t pid, const ExitStatus& st, bool timed_out);
  void begin_find(Unit& u);
  void wait_for_count(Unit& u);
  void end_find(Unit& u);
  bool try_find(Unit& u, const char* how);
  void restart_failed(Unit& u, const std::string& error);
  // `pidfile` watches (pidfile.cpp).
  bool launch_daemon(Unit& u);
  void on_launcher_exit(const std::string& name, pid_t pid, const ExitStatus& st);
  void look_at_pidfile(Unit& u);
  void daemon_failed(Unit& u, const std::string& error);
  void cancel_launch(Unit& u);
  // The pid the unit's pid file names if it is the daemon its start
  // command started (0, and `why`, if not; `fatal`: looking again will not help).
  pid_t daemon_pid(const Unit& u, uint64_t& start_time, std::string& why, bool& fatal);
  pid_t parent_pid(const Unit& u);
  void scan_members(Unit& u);
  void member_added(Unit& u, pid_t pid, uint64_t start_time);
  void member_removed(Unit& u, pid_t pid);
  void check_bounds(Unit& u, bool changed);
  void end_episode(Unit& u);
  void fork_added(Unit& u, pid_t pid, uint64_t start_time);
  void count_old_forks(const std::string& name);
  // Members: spawns one process vigil owns; false (and `error`) if not.
  bool spawn_member(Unit& u, std::string& error);
  void stop_own(Unit& u);
  void on_own_exit(const std::string& name, pid_t pid);

  // order.cpp: dependency order, coordinated restarts, groups.
  void decide_exit(Unit& u, const ExitInfo& e);
  ExitInfo record_failed_start(Unit& u, const std::string& error);
  // Starts what u waits for that is held back only by autostart = false.
  void pull_in(Unit& u);
  bool deps_ready(Unit& u, std::optional<MonoTime>* settle_at = nullptr);
  void enqueue(Unit& u);
  void schedule_advance();
  void advance();
  bool dependents_up(const Unit& u) const;
  void unqueue(const std::string& name);
  void apply_groups(std::vector<GroupDecl> groups);
  void rebuild_dependents();
  bool needs_exec_events() const;
  void schedule_scan();
  void update_interest();
  void update_interest_soon();
  void reattach(Unit& u);
  bool readopt(Unit& u, const JournalEntry& e, const char* how);
  void recover(std::vector<std::string> names);
  bool may_be_ours(const Unit& u, uid_t uid) const;
  void start_fresh(Unit& u);
  std::vector<std::pair<std::string, std::string>> marks(const Unit& u) const;
  void discover(std::vector<std::string> names);
  void settle(Unit& u, std::vector<FoundProcess>& found);

  // containers.cpp: container watches through the engine.
  friend class ContainerListener;
  void start_container(Unit& u);
  void cancel_container_timers(Unit::Containing& ct);
  void start_counted(Unit& u);
  void list_members(Unit& u);
  static bool take_members(Unit::Containing& ct, const std::vector<ContainerInfo>& found);
  void fill_count(Unit& u, std::vector<ContainerInfo> stopped, int64_t missing);
  void fill_start(Unit& u, const std::string& id, bool replace);
  void fill_create(Unit& u);
  void fill_answered(Unit& u);
  void container_removed(Unit& u);
  bool stop_counted(Unit& u);
  void start_found(Unit& u, const ContainerInfo& info);
  void adopt_container(Unit& u, const ContainerInfo& info, const char* how);
  void stop_container(Unit& u);
  void signal_container(Unit& u, int sig);
  void run_exec_probe(Unit& u, size_t i);
  void find_lost_containers();
  void on_engine_up();
  void on_container_event(const ContainerEvent& ev);
  void on_resync(const std::vector<ContainerInfo>& all);
  Unit* container_unit(const std::string& id);
  // A callback for an engine call: runs `fn` on the unit if it (and the
  // supervisor) still exist.
  template <class F>
  auto on_unit(const std::string& name, F fn);

  // probes.cpp: probes and sd_notify.
  void start_probes(Unit& u);
  void stop_probes(Unit& u);
  void schedule_probe(Unit& u, size_t i, Duration delay);
  void run_probe(Unit& u, size_t i);
  void run_script_probe(Unit& u, size_t i);
  void probe_result(Unit& u, size_t i, const ProbeResult& r);
  void update_ready(Unit& u);
  void arm_watchdog(Unit& u, size_t i);
  void on_notify(const NotifyMessage& msg);
  Unit* notify_owner(const NotifyMessage& msg, std::string& why);
  void notify_dropped(const NotifyMessage& msg, const std::string& why);
  void set_probe_specs(Unit& u, std::vector<ProbeSpec> specs);
  std::vector<std::pair<std::string, std::string>> notify_env(const Unit& u) const;

  // checks.cpp: process states sampled from /proc.
  void schedule_checks();
  void check_soon(const Unit& u);
  std::optional<MonoTime> next_sample(const Unit& u, MonoTime now) const;
  void on_child_stop(pid_t pid);
  void run_checks();
  void check_slice();
  void check_unit(Unit& u, MonoTime now);
  static void open_samples(const StateChecks& k, Unit::Child& c);
  void watch_zombie(const std::string& name, pid_t pid, uint64_t start_time, pid_t ppid);
  // Rotates the output logs that were written and grew past their size.
  void rotate_logs();

  EventLoop& loop_;
  EventLog& log_;
  std::string log_dir_;
  std::string dump_dir_;
  Reaper reaper_;
  LogRotation rotation_{loop_, [this] { rotate_logs(); }};
  ProcReader reader_;
  Journal journal_;
  std::map<std::string, JournalEntry> journal_previous_;
  std::string instance_;                 // the marks' VIGIL_INSTANCE ("" without a journal)
  bool first_apply_ = false;             // the apply after load_journal: recover by marks
  std::vector<std::string> to_recover_;  // units that apply() looks for by their marks
  Policy* policy_ = nullptr;
  std::map<std::string, std::unique_ptr<Unit>> units_;
  std::set<std::string> matching_;  // units with a match: what process events concern

  ProcEvents* events_ = nullptr;
  double scan_interval_ = 5;
  TimerId scan_timer_ = 0;
  unsigned rule_events_ = 0;        // what vigil.proc.on subscriptions need
  bool adopting_ = false;           // adopt() asks for exits before it pins a process
  bool interest_posted_ = false;    // update_interest_soon() is pending
  bool widen_scan_posted_ = false;  // a rescan after exec events were asked for
  TimerId check_timer_ = 0;
  MonoTime check_at_{};        // when check_timer_ fires
  uint64_t check_passes_ = 0;  // for status: passes and samples taken
  uint64_t check_samples_ = 0;
  uint64_t check_unchanged_ = 0;  // samples that needed no read of the stat line
  std::vector<std::string> check_queue_;  // the pass in progress
  size_t check_next_ = 0;
  // Exit statuses of adopted processes, from the proc connector or from
  // reaping a reparented orphan, until their pidfd callback takes them.
  std::unordered_map<pid_t, ExitStatus> exits_;
  std::unordered_map<pid_t, std::string> adopted_;  // pid -> unit name
  std::vector<pid_t> commands_;                     // scripts and hooks running
  std::vector<std::string> to_discover_;            // units apply() finds by match
  std::vector<std::string> to_standby_;             // groups clustered by this apply, not held
  // Dead adopted processes still in /proc as zombies: reported when their
  // parent leaves them unreaped past the unit's zombie threshold.
  struct Zombie {
    std::string unit;
    pid_t pid;
    uint64_t start_time;
    pid_t ppid;
    MonoTime since;
  };
  std::vector<Zombie> zombies_;

  ProbeEngine* engine_ = nullptr;
  NotifySocket* notify_ = nullptr;
  std::unordered_map<pid_t, std::string> notify_pids_;  // pid -> unit with a notify probe
  std::set<pid_t> notify_dropped_;                      // senders told of (VGL0165), once each
  uint64_t next_token_ = 1;

  ContainerEngine* containers_ = nullptr;
  ContainerListener container_listener_{*this};
  bool find_lost_posted_ = false;
  bool engine_down_seen_ = false;  // the engine said it is down (not just "not yet up")

  std::map<std::string, Group> groups_;
  std::map<std::string, bool> remote_;  // remote watch -> ready
  // Reverse edges of `after`: name -> the watches that require it.
  std::unordered_map<std::string, std::vector<std::string>> dependents_;
  std::set<std::string> ordered_;  // units queued or stop_queued
  struct Batch {
    std::set<std::string> left;
    std::function<void()> done;
  };
  std::vector<Batch> batches_;
  bool advance_posted_ = false;
  // Children spawned without waiting for their exec, told at the end of
  // the burst (execs_known).
  struct PendingExec {
    std::string name;
    pid_t pid;
    bool quiet;
  };
  std::vector<PendingExec> execs_;
  TimerId advance_timer_ = 0;
  MonoTime advance_at_{};
  std::function<void()> on_change_;
  std::function<bool(const std::string&)> holds_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

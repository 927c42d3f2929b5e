// Supervisor: the host's record of every watch (a "unit") and the mechanism
// that acts on it: spawn, stop (signal -> grace -> KILL of the group),
// timers for backoff and re-arm, restart history. It owns nothing of policy:
// when a process ends it asks the Policy (the Lua rules) what to do, and
// the rules answer by calling restart_later() or exhaust(). Units outlive
// rule reloads, so history and counters survive them.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/supervise/output_log.hpp"
#include "host/supervise/reaper.hpp"
#include "host/supervise/spawn.hpp"

namespace vigil {

enum class UnitState { Starting, Running, Backoff, Exhausted, Stopped };
const char* unit_state_name(UnitState s);

struct ExitInfo {
  pid_t pid = 0;
  ExitStatus status;
  double uptime = 0;             // seconds the process ran
  double wall = 0;               // when it ended
  std::string error;             // spawn failure text, if it never ran
  std::string describe() const;  // "exited 3", "killed by KILL", "failed to start: ..."
  nlohmann::json to_json() const;
};

struct RestartRecord {
  double mono;    // when the restart was decided (monotonic seconds)
  double uptime;  // how long the process that ended had run
};

struct Unit {
  std::string name;
  ProcessSpec spec;
  std::string where;  // file:line of the declaration

  UnitState state = UnitState::Stopped;
  bool paused = false;
  bool want_running = true;
  double since = 0;  // wall time the state was entered

  struct Child {
    pid_t pid = 0;
    uint64_t start_time = 0;
    MonoTime started;
    std::optional<SpawnFailure> failure;  // it never reached exec
    bool stopping = false;
    TimerId kill_timer = 0;
    pid_t stop_command_pid = 0;  // tracked (unreaped) while it runs
  };
  std::optional<Child> child;
  std::optional<ExitInfo> last_exit;

  uint64_t restarts = 0;
  uint64_t decisions = 0;              // restart_later/exhaust calls, to see the policy answered
  std::vector<RestartRecord> history;  // oldest first, bounded
  TimerId timer = 0;                   // pending backoff restart or re-arm

  OutputLog out, err;
  std::vector<std::function<void()>> stop_waiters;
  bool remove_when_stopped = false;
  std::unique_ptr<ProcessSpec> respawn_with;     // start this after the stop completes
  std::map<std::string, std::string> overrides;  // `vigil set` values, survive reloads

  nlohmann::json to_json() const;
};

// What the rules are asked. Implemented by the Lua bridge.
class Policy {
 public:
  virtual ~Policy() = default;
  // A watched process ended and vigil is not stopping it. The policy must
  // call restart_later() or exhaust() before returning; if it does not
  // (a broken rule), the supervisor falls back to a delayed restart.
  virtual void on_exit(Unit& unit, const ExitInfo& exit) = 0;
};

struct Declaration {
  std::string name;
  ProcessSpec spec;
  std::string where;
};

class Supervisor {
 public:
  Supervisor(EventLoop& loop, EventLog& log, std::string log_dir);
  ~Supervisor();

  void set_policy(Policy* p) { policy_ = p; }
  Reaper& reaper() { return reaper_; }

  // Makes the set of units match `decls` (a reload): unchanged units keep
  // their process, changed ones restart, removed ones stop, new ones start.
  void apply(const std::vector<Declaration>& decls);

  Unit* find(const std::string& name);
  const std::map<std::string, std::unique_ptr<Unit>>& units() const { return units_; }

  // Decisions (from the policy). Effects run after the current callback.
  void restart_later(Unit& u, double delay);
  void exhaust(Unit& u, std::optional<double> rearm_after);

  // Operator commands. `done` runs when the command has taken effect.
  void start(Unit& u, const char* reason = "operator start");
  void stop(Unit& u, std::function<void()> done = {});
  void restart(Unit& u, std::function<void()> done = {});
  void pause(Unit& u);
  void resume(Unit& u);
  // Stops everything (daemon shutdown); `done` when all are down.
  void stop_all(std::function<void()> done);

  // Rotates output logs that grew past their size.
  void rotate_logs();

  size_t running_count() const;

 private:
  void spawn(Unit& u);
  void on_exit(Unit& u, const ExitStatus& st);
  void set_state(Unit& u, UnitState s);
  void begin_stop(Unit& u);
  void finish_stopped(Unit& u, const std::string& how);
  void cancel_timer(Unit& u);
  void open_output(Unit& u);
  void erase(const std::string& name);

  EventLoop& loop_;
  EventLog& log_;
  std::string log_dir_;
  Reaper reaper_;
  Policy* policy_ = nullptr;
  std::map<std::string, std::unique_ptr<Unit>> units_;
};

}  // namespace vigil

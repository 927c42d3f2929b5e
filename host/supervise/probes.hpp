// Probes: checks that a watched process is not just alive but working.
// A probe runs every `every` seconds while the process runs: an HTTP
// request or a TCP connection (ProbeEngine, on the loop), a script (its
// exit code; killed at its timeout), a file's age (a heartbeat), a check
// written in Lua (the rules answer), or sd_notify (READY=1 and WATCHDOG=1
// sent by the process itself).
//
// `fails` failures in a row make a liveness probe declare the process
// hung, once per episode, and the rules decide (by default: kill it, so it
// is recovered through the same restart budget as a death); `success`
// passes in a row end the episode. Readiness probes (and notify with
// `ready`) only decide whether the watch is ready. Liveness probes wait
// for `startup` seconds, or until the watch is ready, before they start.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "host/core/clock.hpp"
#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"
#include "host/probe/probe_engine.hpp"

namespace vigil {

struct ProbeSpec {
  enum class Kind { Http, Tcp, Script, File, Notify, Rule, Exec };
  Kind kind = Kind::Http;
  std::string name;  // in events: "http://127.0.0.1:8080/health", "tcp 443", ...
  double every = 10;
  double startup = 0;  // liveness: grace after start (notify: time allowed for READY=1)
  int fails = 3;
  int success = 1;
  bool readiness = false;  // gates readiness only; never declares the process hung
  HttpCheck http;
  TcpCheck tcp;
  std::vector<std::string> command;  // Script; Exec: argv run in the container
  bool healthcheck = false;          // Exec: the image's HEALTHCHECK instead of `command`
  double timeout = 5;                // Script, File (unused), Rule
  std::string path;                  // File
  double max_age = 0;                // File: older than this fails
  bool ready = false;                // Notify: not ready until READY=1
  double watchdog = 0;               // Notify: WATCHDOG=1 at least this often (0: none)
  bool operator==(const ProbeSpec&) const = default;
  bool gates_ready() const { return readiness || (kind == Kind::Notify && ready); }
};

const char* probe_kind_name(ProbeSpec::Kind k);

// A unit's probes and what they have seen since its process started.
struct Probing {
  std::vector<ProbeSpec> specs;
  struct Run {
    TimerId timer = 0;
    ProbeId check = 0;   // an HTTP or TCP check in flight
    pid_t script = 0;    // a script running
    uint64_t token = 0;  // a rule check in flight
    Fd output;           // the script's stdout and stderr
    WatchId output_watch = 0;
    std::string captured;
    int fails = 0;  // in a row
    int passes = 0;
    bool failing = false;     // an episode was reported (hung, or not ready)
    bool passed = false;      // passed `success` times since it last failed
    bool started = false;     // out of its startup grace
    MonoTime last;            // notify: the last WATCHDOG=1 (or the start)
    double watchdog = 0;      // notify: the timeout now (WATCHDOG_USEC may change it)
    bool ready_late = false;  // notify: READY=1 did not come within `startup`
    ProbeResult result;       // the last result
    double at = 0;            // wall time of the last result
    uint64_t runs = 0;
  };
  std::vector<Run> runs;
  MonoTime started;
  uint64_t generation = 0;  // a new process, or new specs: older answers are ignored
  pid_t pid = 0;
  bool active = false;  // the process runs and probes are scheduled
  bool ready = false;
  bool notified_ready = false;  // READY=1 seen
  std::string status;           // STATUS= from the process

  // Readiness is something to reach (not just a running process).
  bool gated() const {
    for (const auto& s : specs)
      if (s.gates_ready()) return true;
    return false;
  }
};

}  // namespace vigil

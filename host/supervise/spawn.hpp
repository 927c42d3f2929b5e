// Spawning a supervised process: clone(CLONE_VM), then in the child only
// raw system calls (everything is prepared in the parent), then exec. The
// child gets its own session and process group, so stopping it can signal
// the whole group. By default the parent resumes when the child has
// exec'd or failed (CLONE_VFORK), so the exec result is known when spawn
// returns; with SpawnIo::wait_exec = false it resumes at once and
// spawn_outcome() tells the result later (spawn.cpp, Flight).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "host/core/fd.hpp"

namespace vigil {

// What a watch runs. Everything that, when changed, needs a new process.
struct ProcessSpec {
  std::vector<std::string> argv;                         // argv[0] as the program sees it
  std::string path;                                      // resolved executable
  std::vector<std::pair<std::string, std::string>> env;  // on top of vigil's
  std::string cwd;
  std::string user;
  std::string group;
  int umask = -1;  // -1: inherit
  int stop_signal = 15;
  double stop_timeout = 10;  // seconds before KILL
  std::vector<std::string> stop_command;
  bool capture_output = true;
  uint64_t log_max_bytes = 1 << 20;
  int log_keep = 3;

  // Applied in the child before exec, before the identity changes
  // (raising a hard limit, a negative nice, a lower oom_score_adj and the
  // realtime I/O class need root). A watch that sets none of them pays
  // nothing at its spawns (docs/rules.md "Limits and environment").
  static constexpr int kInherit = INT_MIN;
  struct Limit {
    int resource;  // RLIMIT_*
    uint64_t soft, hard;  // RLIM_INFINITY: unlimited
    bool operator==(const Limit&) const = default;
  };
  std::vector<Limit> limits;
  int nice = kInherit;           // -20..19
  int ioprio = -1;               // IOPRIO_PRIO_VALUE(class, level); -1: inherit
  int oom_score_adj = kInherit;  // -1000..1000
  std::string env_file;          // read at each start; a leading '-': optional
  std::vector<std::string> supplementary_groups;  // added to the user's
  bool no_new_privs = false;
  // A daemon that forks and writes its pid to this file (issue 14 item
  // 3): the start command must exit within pidfile_timeout seconds and
  // the file name a live process that descends from it (pidfile.cpp).
  std::string pidfile;
  double pidfile_timeout = 30;

  // Equal specs mean the running process can be kept across a reload.
  bool operator==(const ProcessSpec&) const = default;
};

// Checks a spec before it is accepted: the program exists and is executable,
// the user and group exist, the cwd exists. Returns an error naming the key,
// or nullopt. Resolves `path` from argv[0] through PATH.
std::optional<std::string> validate_spec(ProcessSpec& spec);

struct SpawnIo {
  int stdout_fd = -1;  // -1: /dev/null
  int stderr_fd = -1;
  // Added to the environment for this start only (NOTIFY_SOCKET, ...):
  // not part of the spec, so it never makes a reload restart the process.
  std::vector<std::pair<std::string, std::string>> extra_env;
  // false: return before the child has exec'd (Spawned::exec_pending),
  // so that the loop goes on while it does.
  bool wait_exec = true;
};

// Set by a child whose exec (or preparation) failed; it then exits 127.
struct SpawnFailure {
  int stage;  // index into spawn_stage_name
  int err;
  int detail = -1;  // setrlimit: the RLIMIT_* that failed
};

struct Spawned {
  pid_t pid = -1;
  Fd pidfd;
  std::optional<SpawnFailure> failure;  // the child failed before exec
  uint64_t start_time = 0;
  bool exec_pending = false;  // wait_exec = false: failure is spawn_outcome(pid)'s
};
const char* spawn_stage_name(int stage);
// "setrlimit(nofile): Operation not permitted", "exec: No such file...".
std::string spawn_failure_text(const SpawnFailure& f);
// The rule's name of an RLIMIT_* ("nofile"), and back (-1: unknown).
const char* rlimit_name(int resource);
int rlimit_by_name(std::string_view name);

// Finds prog (absolute, relative to cwd, or through PATH); nullopt if it
// is not an executable file.
std::optional<std::string> resolve_program(const std::string& prog, const std::string& cwd,
                                           std::string path);

// Forks and execs. On error returns nullopt and sets `error`.
std::optional<Spawned> spawn_process(const ProcessSpec& spec, const SpawnIo& io,
                                     std::string& error);

// How a spawn made with wait_exec = false went: its failure before exec,
// or nullopt once it has exec'd. Waits if the child has not yet done
// either (microseconds after its clone); asked once per such spawn (a
// second answer, or one for any other pid, is nullopt).
std::optional<SpawnFailure> spawn_outcome(pid_t pid);

// Processes vigil starts get this RLIMIT_NOFILE instead of vigil's own
// (the daemon raises its soft limit for many probes and pidfds; a program
// that uses select() must not find a raised one).
void set_child_nofile(const rlimit& limit);

// Runs a one-shot command (stop commands, hooks) in its own process group
// with stdin from /dev/null, stdout and stderr to `output_fd` (or
// /dev/null) and `env` added to vigil's environment; same failure
// reporting as spawn_process.
std::optional<Spawned> spawn_command(
    const std::vector<std::string>& argv, std::string& error,
    const std::vector<std::pair<std::string, std::string>>& env = {}, int output_fd = -1);

}  // namespace vigil

// Spawning a supervised process: clone(CLONE_VM | CLONE_VFORK), then in the
// child only async-signal-safe calls (everything is prepared in the
// parent), then exec. The child gets its own session and process group, so
// stopping it can signal the whole group. The parent resumes when the child
// has exec'd or failed, so the exec result is known when spawn returns.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <optional>
#include <string>
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
};

// Set by a child whose exec (or preparation) failed; it then exits 127.
struct SpawnFailure {
  int stage;  // index into spawn_stage_name
  int err;
};

struct Spawned {
  pid_t pid = -1;
  Fd pidfd;
  std::optional<SpawnFailure> failure;  // the child failed before exec
  uint64_t start_time = 0;
};
const char* spawn_stage_name(int stage);

// Finds prog (absolute, relative to cwd, or through PATH); nullopt if it
// is not an executable file.
std::optional<std::string> resolve_program(const std::string& prog, const std::string& cwd,
                                           std::string path);

// Forks and execs. On error returns nullopt and sets `error`.
std::optional<Spawned> spawn_process(const ProcessSpec& spec, const SpawnIo& io,
                                     std::string& error);

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

// `vigil run` as init scripts want it: --daemon (detach, and return only
// once the daemon runs, or fail with its error) and --pid-file.
//
// The parent forks, the child calls setsid and forks again (the daemon is
// no session leader, so it can never acquire a controlling terminal), and
// the grandchild, with stdin, stdout and stderr on /dev/null, starts the
// daemon. It writes "ready" or its start error to a pipe the parent waits
// on: the parent's exit status is the start's outcome, which is what an
// init script (or anything that runs `vigil run --daemon && ...`) needs.
// Logging goes on to its sinks (the log file, syslog, ...); the console
// is off. The working directory is kept, so relative paths given on the
// command line keep their meaning.
#pragma once

#include <sys/types.h>

#include <string>

#include "host/daemon/daemon.hpp"

namespace vigil {

struct ServiceOptions {
  bool detach = false;   // --daemon
  std::string pid_file;  // --pid-file: written (atomically) for the daemon's life
};

// Runs the daemon to its end; returns the exit status of `vigil run` (of
// the parent with --daemon: 0 once the daemon is ready, 1 with its error
// on stderr when it could not start).
int run_daemon(DaemonOptions options, const ServiceOptions& service);

// The pid file names a live vigil: its pid, else 0. Exposed for tests.
pid_t pid_file_holder(const std::string& path);

}  // namespace vigil

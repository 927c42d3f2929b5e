// Harness for end-to-end tests: a real vigil daemon on rules in a temp
// directory, driven through the real CLI. Waiting is always for a
// condition with a deadline, never a fixed sleep.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vigil::test {

struct CommandResult {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs argv to completion, capturing stdout and stderr.
CommandResult run_command(const std::vector<std::string>& argv);

// Polls `cond` until it is true or `timeout` passes; returns its last value.
bool wait_for(const std::function<bool()>& cond,
              std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A free TCP port on 127.0.0.1 (bound and released).
int free_port();

std::string read_file(const std::string& path);
// Raw bytes to a unix socket (the control socket), the whole reply back
// (the peer closes it); "" when it cannot connect.
std::string raw_request(const std::string& socket_path, const std::string& bytes);

// The control socket speaks HTTP: a JSON request as it is (what the socket
// took before), as the bytes of POST /v1/command ...
std::string http_command(std::string json_request);
// ... and the body of an HTTP reply, de-chunked ("" when it is not one).
std::string http_body(const std::string& raw_reply);
void write_file(const std::string& path, const std::string& text);
bool process_alive(pid_t pid);  // exists and is not a zombie

// A process "something else started": a child of the test (in its own
// session), not of vigil. Reap it with reap() once it is dead.
pid_t spawn_external(const std::vector<std::string>& argv);
// Waits (with a deadline) for pid to exit and reaps it; false if it did not.
bool reap(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A process named `name`, forked by the test, that blocks in state D (a
// vfork parent waits uninterruptibly until its child execs or exits):
// at once, or when block() is called (it sleeps in S until then).
// Killed and reaped with its child when it goes out of scope, also when
// an assertion failed.
class BlockedProcess {
 public:
  BlockedProcess(const std::string& name, bool now);
  ~BlockedProcess();
  BlockedProcess(const BlockedProcess&) = delete;
  BlockedProcess& operator=(const BlockedProcess&) = delete;
  pid_t pid() const { return pid_; }
  // Returns once the process is in its vfork (false if it never got there).
  bool block();

 private:
  pid_t pid_ = -1;
  int go_ = -1, ready_ = -1;
  bool blocked_ = false;
};
// The sockets process pid holds: connections that leaked would stay
// here. (Its other fds come and go with the checks: /proc files a check
// keeps open for a child, pipes of a probe.)
size_t socket_count(pid_t pid);
// What each fd of pid is, "N->target ..." (for a failure's message).
std::string fd_list(pid_t pid);
// Number of live processes whose cmdline contains `needle`.
int count_processes(const std::string& needle);
// KILLs every process whose cmdline contains `needle` (and reaps those
// that are the test's children).
void kill_processes(const std::string& needle);

class Daemon {
 public:
  Daemon();
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  const std::string& dir() const { return dir_; }
  std::string rules_dir() const { return dir_ + "/rules"; }
  std::string state_dir() const { return dir_ + "/state"; }
  std::string socket() const { return dir_ + "/vigil.sock"; }

  // Writes rules/<name> (and creates rules/lib when name starts with lib/).
  void write_rule(const std::string& name, const std::string& text);

  // Starts `vigil run` and waits until it answers; false if it exited.
  bool start(const std::vector<std::string>& extra = {});
  // Runs vigil under a wrapper command (e.g. {"unshare", "-n"}).
  void set_prefix(std::vector<std::string> prefix) { prefix_ = std::move(prefix); }
  // SIGTERM and wait; returns the exit status.
  int stop();
  void kill9();
  pid_t pid() const { return pid_; }
  bool running();
  // The daemon's own stderr so far.
  std::string output() const;

  CommandResult cli(const std::vector<std::string>& args) const;
  nlohmann::json status() const;                        // status --json (array)
  nlohmann::json daemon_info() const;  // the "daemon" object of the status reply, or null
  nlohmann::json watch(const std::string& name) const;  // one entry or null
  pid_t watch_pid(const std::string& name) const;       // 0 when none
  std::string watch_state(const std::string& name) const;
  // The newest events of this run of the daemon (vigil's ring also holds
  // the previous runs' since it refills from the history at start).
  nlohmann::json events(int n = 500) const;
  // Every event the ring holds, previous runs' included.
  nlohmann::json all_events(int n = 500) const;
  // Number of events with this id (e.g. "VGL0102") for this watch ("" any).
  int count_events(const std::string& id, const std::string& watch = "") const;
  bool wait_event(const std::string& id, const std::string& watch = "", int at_least = 1,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // The newest event with this id (and watch), or null.
  nlohmann::json last_event(const std::string& id, const std::string& watch = "") const;

 private:
  std::string dir_;
  std::vector<std::string> prefix_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  uint64_t run_from_seq_ = 0;  // the history's last seq before this run
};

// `vigil check` of one rule file holding `text` (in a directory of its
// own): what the operator sees when checking a rule.
CommandResult check_rule(const std::string& text);

}  // namespace vigil::test

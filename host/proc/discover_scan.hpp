// One snapshot of every process for `vigil discover` (host/cli/discover.cpp):
// what the stdlib's discover policy scores and groups. Built on the /proc
// reader (ProcReader, PidIterator). Listening sockets are matched against
// the tables of each process's own network namespace: each namespace's
// /proc/PID/net/{tcp,tcp6,udp,udp6,unix} is read once per scan, keyed by
// the namespace's inode, and a process's socket inodes (its fd links) are
// looked up there.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "host/proc/proc_files.hpp"

namespace vigil {

struct ListeningSocket {
  std::string proto;  // tcp, tcp6, udp, udp6, unix
  unsigned port = 0;  // 0 for unix
  std::string path;   // unix: the bound path ("@name" for an abstract one)
};

struct DiscoveredProcess {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  int tty_nr = 0;
  char state = '?';
  uint64_t start_time = 0;  // ticks after boot (the identity, with pid)
  double age = 0;           // seconds since it started
  uid_t uid = 0;
  std::string comm, exe;
  std::vector<std::string> argv;
  std::string cgroup;  // the unified (or first) hierarchy's path
  std::string unit;    // the *.service unit of the cgroup path, "" if none
  std::string scope;   // an interactive session's *.scope (session-N.scope), "" if none
  uint64_t netns = 0, pidns = 0;
  std::vector<ListeningSocket> listening;
  // Only with ScanOptions::details: for a proposed start.
  std::string cwd;
  std::vector<std::string> environ;
  uint64_t nofile = 0;
  bool kernel_thread = false;

  nlohmann::json to_json() const;
};

// One namespace's socket tables: listening sockets by inode.
using SocketTable = std::unordered_map<uint64_t, ListeningSocket>;

// Parses /proc/net/unix: calls add for each listening socket (flag
// __SO_ACCEPTCON) with its inode; false on bad text.
bool parse_unix_listeners(std::string_view text, SocketTable& out);

struct ScanOptions {
  bool details = false;  // cwd, environment, limits (the last scan)
  bool sockets = true;
  // Set by another thread: the scan stops at the next process (what it
  // has so far is returned). The daemon's discovery, dropped mid-scan.
  const std::atomic<bool>* cancel = nullptr;
};

struct ScanStats {
  size_t processes = 0;
  size_t namespaces = 0;  // network namespaces whose tables were read
};

class DiscoverScanner {
 public:
  // Every process but kernel threads, in pid order.
  std::vector<DiscoveredProcess> scan(const ScanOptions& o, ScanStats* stats = nullptr);
  // One process, without its sockets (an exec seen between two scans);
  // nullopt when it is gone or a kernel thread.
  std::optional<DiscoveredProcess> one(pid_t pid);

 private:
  bool read_one(pid_t pid, const ScanOptions& o, double boot_now, DiscoveredProcess& out);
  const SocketTable& tables_of(pid_t pid, uint64_t netns);
  ProcReader reader_;
  std::unordered_map<uint64_t, SocketTable> tables_;  // by netns inode, for one scan
  std::vector<uint64_t> inodes_;
};

// The identities seen over one window of scans, by (pid, start time):
// in which scan each was seen first and last, and how often (what the
// policy's "steady" and "restarted" read). `vigil discover` and the
// daemon's discovery (host/daemon/discovery.cpp) share it.
class DiscoverWindow {
 public:
  // Scan number `index` (1 for the first).
  void add(std::vector<DiscoveredProcess> scan, int index);
  // An identity seen between scan `after` and the next (an exec the proc
  // connector reported): first = last = after, seen = 0. Ignored (false)
  // when a scan saw it.
  bool add_between(DiscoveredProcess p, int after);
  // The policy's input.processes: each identity's latest snapshot with
  // first, last and seen.
  nlohmann::json processes() const;
  size_t size() const { return seen_.size(); }

 private:
  struct Seen {
    DiscoveredProcess latest;
    int first = 0, last = 0, seen = 0;
  };
  std::map<std::pair<pid_t, uint64_t>, Seen> seen_;
};

// /etc/init.d/*: each script's path and (first 64 KiB of) text, for the
// policy to find the script that starts an executable.
nlohmann::json discover_init_scripts(const std::string& dir);
bool systemd_is_init();
// Lua has one empty table for {} and []: the lists of the policy's
// candidates stay lists in the JSON (a script indexing listening[0]).
void discover_lists_as_lists(nlohmann::json& candidates);

// The unit and session scope named by a cgroup path
// ("/system.slice/nginx.service" -> unit "nginx.service";
// "/user.slice/user-0.slice/session-3.scope" -> scope "session-3.scope").
void classify_cgroup(std::string_view path, std::string& unit, std::string& scope);

}  // namespace vigil

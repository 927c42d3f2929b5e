// One snapshot of every process for `vigil discover` (host/cli/discover.cpp):
// what the stdlib's discover policy scores and groups. Built on the /proc
// reader (ProcReader, PidIterator). Listening sockets are matched against
// the tables of each process's own network namespace: each namespace's
// /proc/PID/net/{tcp,tcp6,udp,udp6,unix} is read once per scan, keyed by
// the namespace's inode, and a process's socket inodes (its fd links) are
// looked up there.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
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
};

struct ScanStats {
  size_t processes = 0;
  size_t namespaces = 0;  // network namespaces whose tables were read
};

class DiscoverScanner {
 public:
  // Every process but kernel threads, in pid order.
  std::vector<DiscoveredProcess> scan(const ScanOptions& o, ScanStats* stats = nullptr);

 private:
  const SocketTable& tables_of(pid_t pid, uint64_t netns);
  ProcReader reader_;
  std::unordered_map<uint64_t, SocketTable> tables_;  // by netns inode, for one scan
  std::vector<uint64_t> inodes_;
};

// The unit and session scope named by a cgroup path
// ("/system.slice/nginx.service" -> unit "nginx.service";
// "/user.slice/user-0.slice/session-3.scope" -> scope "session-3.scope").
void classify_cgroup(std::string_view path, std::string& unit, std::string& scope);

}  // namespace vigil

// Readers for /proc/PID files other than stat. A ProcReader owns one
// buffer that grows to the largest file it has read and is reused, so the
// paths that run for every event or every watched process do not
// allocate. Views it returns are valid until its next read.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "host/proc/proc_stat.hpp"

namespace vigil {

// Reads /proc/PID/NAME into buf (NUL-terminated); the length, or -1 when
// the process is gone or the file unreadable. Reads at most size - 1 bytes.
ssize_t read_proc_file(pid_t pid, const char* name, char* buf, size_t size);

// The parts of /proc/PID/status that matching and metrics use.
struct ProcStatus {
  uid_t uid = 0;  // real
  uid_t euid = 0;
  gid_t gid = 0;
  gid_t egid = 0;
  int64_t threads = 0;
  uint64_t vm_size_kib = 0;
  uint64_t vm_rss_kib = 0;
  uint64_t voluntary_ctxt = 0;
  uint64_t nonvoluntary_ctxt = 0;
};
std::optional<ProcStatus> parse_proc_status(std::string_view text);

// The cmdline as one line: arguments joined by spaces, the trailing NUL
// dropped. Rewrites `raw` in place (NUL -> space) and returns a view of it.
std::string_view cmdline_text(char* raw, size_t n);

// One socket of /proc/PID/net/tcp or tcp6.
struct TcpSocket {
  int state = 0;  // 0x0A LISTEN, 0x08 CLOSE_WAIT, ... (include/net/tcp_states.h)
  unsigned local_port = 0;
  uint64_t rx_queue = 0;  // LISTEN: connections waiting to be accepted
  uint64_t inode = 0;
};
constexpr int kTcpListen = 0x0A;
constexpr int kTcpCloseWait = 0x08;
// Calls fn for each line of a /proc/net/tcp{,6} table; false on bad text.
bool parse_tcp_table(std::string_view text, const std::function<void(const TcpSocket&)>& fn);

// The soft "Max open files" of /proc/PID/limits; 0 when unknown or
// unlimited.
uint64_t parse_nofile_limit(std::string_view limits_text);

// The inode of a socket descriptor's link text ("socket:[12345]");
// nullopt for anything else.
std::optional<uint64_t> socket_link_inode(std::string_view link);

// The pids of a /proc/PID/task/TID/children list ("12 34 ").
void parse_pid_list(std::string_view text, std::vector<pid_t>& out);

class ProcReader {
 public:
  ProcReader();

  // The text of /proc/PID/NAME; nullopt when gone or unreadable.
  std::optional<std::string_view> read(pid_t pid, const char* name);
  std::optional<ProcStat> stat(pid_t pid);
  bool stat(pid_t pid, ProcStat& out);  // reuses out's storage
  // From an open /proc/PID/stat: one pread instead of open, read, close
  // (a third of the cost). The descriptor stays bound to its process: once
  // that is gone the read fails, even if the pid is reused.
  bool stat_at(int fd, ProcStat& out);
  // An open /proc/PID/schedstat: ns on CPU and times run (its first and
  // third figures).
  bool schedstat_at(int fd, uint64_t& ran_ns, uint64_t& runs);
  // The text of an open /proc file (status, io), with one pread.
  std::optional<std::string_view> read_at(int fd);
  std::optional<ProcStatus> status(pid_t pid);
  // Arguments joined by spaces; "" for kernel threads.
  std::optional<std::string_view> cmdline(pid_t pid);
  // The executable's path (readlink of /proc/PID/exe) without a
  // " (deleted)" suffix; nullopt for kernel threads, gone processes and
  // (as non-root) other users' processes.
  std::optional<std::string_view> exe(pid_t pid);
  // Number of open descriptors (entries of /proc/PID/fd); -1 if unreadable.
  int count_fds(pid_t pid);
  // Children of every thread of pid (/proc/PID/task/*/children).
  std::vector<pid_t> children(pid_t pid);
  // The inodes of the sockets pid has open (readlink of every fd); false
  // when /proc/PID/fd is unreadable.
  // (`fd_count`: also the number of open fds, from the same directory pass.)
  bool socket_inodes(pid_t pid, std::vector<uint64_t>& out, int* fd_count = nullptr);

 private:
  std::optional<std::string_view> read_path(const char* path);
  std::vector<char> buf_;
};

}  // namespace vigil

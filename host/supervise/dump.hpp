// Evidence dumps: what a watch's process looked like when it failed,
// captured into STATE_DIR/dumps/WATCH/TIME/ before recovery acts.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vigil {

// A rule's own item: a file copied, or a command whose output is kept.
struct DumpItem {
  std::string name;                  // file name in the dump
  std::string file;                  // copy this file ...
  std::vector<std::string> command;  // ... or run this (output to the file)
};

struct DumpOptions {
  bool core = false;               // gcore the process (a hang: it is alive)
  bool environ = false;            // /proc/PID/environ: may hold secrets
  uint64_t max_bytes = 16u << 20;  // the dump's files together (not the core)
  int keep = 10;                   // dumps kept per watch, oldest removed first
  int lines = 100;                 // last lines of stdout and stderr
  double command_timeout = 10;     // extra commands and gcore are killed after
  std::vector<DumpItem> extra;
  bool operator==(const DumpOptions&) const = default;
};

// Writes files into one dump directory within a byte budget; a file that
// does not fit is cut and marked so in the manifest.
class DumpWriter {
 public:
  DumpWriter(std::string dir, uint64_t budget) : dir_(std::move(dir)), left_(budget) {}
  const std::string& dir() const { return dir_; }
  // Writes (a prefix of) data to dir/name; false on a write error.
  bool put(const std::string& name, std::string_view data);
  // The manifest: one line per file (name, bytes, "cut" when truncated)
  // and the errors met.
  std::string manifest() const;
  void note_error(const std::string& e) { errors_.push_back(e); }
  uint64_t bytes() const { return bytes_; }
  size_t files() const { return files_.size(); }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string dir_;
  uint64_t left_;
  uint64_t bytes_ = 0;
  struct File {
    std::string name;
    uint64_t bytes;
    bool cut;
  };
  std::vector<File> files_;
  std::vector<std::string> errors_;
};

// The last `lines` lines of a file (at most the last 256 KB of it).
std::string tail_lines(const std::string& path, int lines);
// A whole /proc/PID/NAME file (up to `cap` bytes); false when unreadable.
bool read_proc_all(pid_t pid, const char* name, std::string& out, size_t cap);
// /proc/PID/fd as text: "FD -> TARGET", sockets with their TCP state and
// port from the process's network namespace.
std::string describe_fds(pid_t pid);
// Removes the oldest dumps of dir (names sort by time) beyond `keep`.
void prune_dumps(const std::string& dir, int keep);

}  // namespace vigil

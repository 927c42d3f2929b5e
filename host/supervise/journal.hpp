// The journal: which process each watch runs, so that a vigil that crashed
// or was restarted re-adopts the processes still running instead of
// starting second copies. One line per change, appended with a single
// write (a torn last line is ignored on reading); the file is rewritten
// with just the current state when it has grown.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "host/core/fd.hpp"
#include "host/supervise/spawn.hpp"

namespace vigil {

struct JournalEntry {
  pid_t pid = 0;
  uint64_t start_time = 0;
  bool spawned = false;    // vigil started it (else it was adopted)
  uint64_t spec_hash = 0;  // of the ProcessSpec it was started with
};

class Journal {
 public:
  // The current state, for rewriting the file: the owner of the units
  // knows it, so the journal keeps no copy.
  using Snapshot = std::function<std::map<std::string, JournalEntry>()>;

  explicit Journal(std::string path = {}) : path_(std::move(path)) {}
  bool enabled() const { return !path_.empty(); }
  void set_snapshot(Snapshot s) { snapshot_ = std::move(s); }

  // Reads the journal (the last line for a name wins; pid 0 = none) and
  // rewrites it compactly. `error` is set when it exists but is unreadable.
  std::map<std::string, JournalEntry> load(std::string& error);
  void set(const std::string& name, const JournalEntry& e);
  void clear(const std::string& name);

 private:
  void append(const std::string& line);
  void rewrite(const std::map<std::string, JournalEntry>& current);

  std::string path_;
  Fd fd_;
  Snapshot snapshot_;
  size_t lines_ = 0;
  size_t live_ = 0;  // entries in the file's current state (for compaction)
};

// A stable digest of what a process was started with (FNV-1a over the
// fields), so a re-adopted process whose watch changed meanwhile is
// restarted with the new spec.
uint64_t spec_hash(const ProcessSpec& spec);

}  // namespace vigil

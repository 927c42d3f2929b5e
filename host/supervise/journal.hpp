// The journal: which process each watch runs, so that a vigil that crashed
// or was restarted re-adopts the processes still running instead of
// starting second copies. One line per change, appended with a single
// write; the file is rewritten (temp file, fsync, rename, fsync of the
// directory) with just the current state at start and when it has grown.
// Reading is defensive: a line that does not parse is skipped and
// reported, and whatever the file is (garbage, torn, a directory, a FIFO)
// the entries that parse are kept. The journal is not the only record:
// every process vigil starts carries marks in its environment (marks()),
// so what a lost journal named can still be found.
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

  struct Loaded {
    std::map<std::string, JournalEntry> entries;
    // Set when the file exists but cannot be read at all (it is a
    // directory, not a regular file, an I/O error): what is wrong.
    std::string unreadable;
    // Set when some lines did not parse: the first one ("line 3: ...").
    std::string damage;
    size_t bad_lines = 0;
    // Where the damaged file was moved (kept for a post-mortem), or "".
    std::string moved_to;
  };
  // Reads the journal (the last line for a name wins; pid 0 = none) and
  // rewrites it compactly.
  Loaded load();
  const std::string& path() const { return path_; }
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

// Marks in the environment of every process vigil starts for a watch:
// which watch, what spec (spec_hash, hex), which state directory
// (instance_id). A later vigil on the same state directory finds by them
// the processes its journal does not name (lost or damaged).
inline constexpr const char* kMarkWatch = "VIGIL_WATCH";
inline constexpr const char* kMarkSpec = "VIGIL_SPEC";
inline constexpr const char* kMarkInstance = "VIGIL_INSTANCE";
// A digest of the state directory's real path (16 hex digits): two vigils
// on one host with different state directories never take each other's
// processes.
std::string instance_id(const std::string& state_dir);
std::string hex_digest(uint64_t h);

}  // namespace vigil

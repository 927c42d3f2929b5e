// Matching running processes against a watch's `match` table. The host
// does this (not Lua) because it runs for every fork and exec on the
// machine while counts or unresolved watches exist: the stat line is read
// first and the costlier files (status, exe, cmdline, cgroup) only when a
// key needs them and the cheaper keys already matched.
#pragma once

#include <regex.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/proc/proc_files.hpp"

namespace vigil {

struct MatchSpec {
  std::string name;          // comm, exact (the kernel keeps 15 bytes of it)
  std::string exe;           // executable path, exact
  std::string cmdline;       // substring of the arguments joined by spaces
  std::string cmdline_re;    // POSIX extended regex on the same text
  std::string user;          // as written; resolved into uid
  std::optional<uid_t> uid;  // effective uid (what ps shows as USER)
  std::string parent;        // another watch's name: its process is the parent
  std::optional<pid_t> ppid;
  std::string cgroup;   // substring of /proc/PID/cgroup
  bool kernel = false;  // kernel threads only (otherwise they never match)
  enum class Select { Oldest, Newest, All };
  Select select = Select::Oldest;

  bool operator==(const MatchSpec&) const = default;
  bool has_keys() const;
  std::string describe() const;  // "name=nginx user=root", for messages
};

const char* select_name(MatchSpec::Select s);

// One process as matchers see it: its stat line, and the costlier files
// read at most once, when a key first needs them, however many matchers
// look. Reused from process to process: its strings keep their storage,
// so a scan does not allocate per process.
class ProcView {
 public:
  explicit ProcView(ProcReader& reader) : reader_(reader) {}
  void reset(const ProcStat& st);  // st must outlive the view's use
  const ProcStat& stat() const { return *st_; }
  const ProcStatus* status();    // null when unreadable
  const std::string* exe();      // without " (deleted)"
  const std::string* cmdline();  // arguments joined by spaces
  const std::string* cgroup();

 private:
  enum Loaded : unsigned { kStatus = 1, kExe = 2, kCmdline = 4, kCgroup = 8 };
  ProcReader& reader_;
  const ProcStat* st_ = nullptr;
  unsigned loaded_ = 0, missing_ = 0;
  ProcStatus status_;
  std::string exe_, cmdline_, cgroup_;
};

class Matcher {
 public:
  // Compiles the regex and resolves `user`; nullopt and an error naming
  // the key (e.g. "match.cmdline_re: ...") when it cannot.
  static std::optional<Matcher> compile(const MatchSpec& spec, std::string& error);

  const MatchSpec& spec() const { return spec_; }
  bool uses_parent_watch() const { return !spec_.parent.empty(); }
  // A forked child has its parent's comm, exe, cmdline, uid and cgroup: it
  // matches exactly when its parent does, unless the match is about the
  // parent itself (ppid or parent keys).
  bool inherited_by_fork() const { return !spec_.ppid && spec_.parent.empty(); }

  // st: the process's stat, already read. parent_pid: the current pid of
  // the `parent` watch (0 when it has none: nothing matches then).
  bool matches(const ProcStat& st, ProcReader& reader, pid_t parent_pid = 0) const;
  bool matches(ProcView& view, pid_t parent_pid = 0) const;

 private:
  MatchSpec spec_;
  std::shared_ptr<regex_t> re_;
  std::string comm_;  // name cut to the kernel's comm length
};

struct FoundProcess {
  pid_t pid = 0;
  uint64_t start_time = 0;
};

// Calls fn(view) for every process on the machine except `exclude`d ones
// (as for find_processes): one pass for any number of matchers.
void scan_processes(ProcReader& reader, const std::vector<pid_t>& exclude,
                    const std::function<void(ProcView&)>& fn);

// Every process on the machine that matches, oldest first. `exclude`
// (optional) skips pids (vigil itself, its scripts) and the members of
// their process groups (what a script forked and has not detached yet).
std::vector<FoundProcess> find_processes(const Matcher& m, ProcReader& reader, pid_t parent_pid = 0,
                                         const std::vector<pid_t>& exclude = {});

}  // namespace vigil

#include "host/supervise/journal.hpp"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace vigil {

namespace {

std::string line_of(const std::string& name, const JournalEntry& e) {
  return name + '\t' + std::to_string(e.pid) + '\t' + std::to_string(e.start_time) + '\t' +
         (e.spawned ? 's' : 'a') + '\t' + std::to_string(e.spec_hash) + '\n';
}

struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // field separator
  }
  void add(long long v) { add(std::to_string(v)); }
};

}  // namespace

uint64_t spec_hash(const ProcessSpec& s) {
  Fnv f;
  f.add(s.path);
  for (const auto& a : s.argv) f.add(a);
  f.add("env");
  for (const auto& [k, v] : s.env) f.add(k + "=" + v);
  f.add(s.cwd);
  f.add(s.user);
  f.add(s.group);
  f.add(s.umask);
  f.add(s.capture_output ? 1 : 0);
  return f.h;
}

std::map<std::string, JournalEntry> Journal::load(std::string& error) {
  std::map<std::string, JournalEntry> current;
  if (!enabled()) return current;
  std::ifstream in(path_);
  if (in) {
    std::string line;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // no newline: a torn last write
      std::istringstream ls(line);
      std::string name, kind;
      JournalEntry e;
      if (!(ls >> name >> e.pid >> e.start_time >> kind >> e.spec_hash)) continue;
      e.spawned = kind == "s";
      if (e.pid > 0)
        current[name] = e;
      else
        current.erase(name);
    }
  } else if (errno != ENOENT) {
    error = path_ + ": cannot read";
  }
  rewrite(current);
  return current;
}

void Journal::set(const std::string& name, const JournalEntry& e) {
  if (!enabled()) return;
  ++live_;
  append(line_of(name, e));
}

void Journal::clear(const std::string& name) {
  if (!enabled()) return;
  if (live_ > 0) --live_;
  append(line_of(name, JournalEntry{}));
}

void Journal::append(const std::string& line) {
  // Grown to several times what it says: rewrite it from the owner's state.
  if (lines_ > 4 * live_ + 256 && snapshot_) return rewrite(snapshot_());
  if (!fd_) fd_ = Fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd_) return;
  // One write: a crash leaves at worst a torn last line, which load skips.
  if (::write(fd_.get(), line.data(), line.size()) == static_cast<ssize_t>(line.size())) ++lines_;
}

void Journal::rewrite(const std::map<std::string, JournalEntry>& current) {
  std::string text;
  for (const auto& [name, e] : current) text += line_of(name, e);
  std::string tmp = path_ + ".new";
  Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!f) return;
  if (::write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    ::unlink(tmp.c_str());
    return;
  }
  f.reset();
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return;
  fd_.reset();
  lines_ = live_ = current.size();
}

}  // namespace vigil

#include "host/supervise/journal.hpp"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <optional>

#include "host/core/strings.hpp"

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
  // Limits and environment (issue 14), only when set: a journal written
  // before them keeps its digests.
  for (const auto& l : s.limits)
    f.add("limit" + std::to_string(l.resource) + "=" + std::to_string(l.soft) + ":" +
          std::to_string(l.hard));
  if (s.nice != ProcessSpec::kInherit) f.add("nice" + std::to_string(s.nice));
  if (s.ioprio >= 0) f.add("ioprio" + std::to_string(s.ioprio));
  if (s.oom_score_adj != ProcessSpec::kInherit) f.add("oom" + std::to_string(s.oom_score_adj));
  if (!s.env_file.empty()) f.add("env_file=" + s.env_file);
  for (const auto& g : s.supplementary_groups) f.add("group+" + g);
  if (s.no_new_privs) f.add("no_new_privs");
  if (!s.pidfile.empty()) f.add("pidfile=" + s.pidfile);
  return f.h;
}

namespace {

bool parse_number(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// One line of the journal: NAME \t PID \t START \t s|a \t HASH. Returns
// what is wrong with it, or "".
std::string parse_line(std::string_view line, std::string& name, JournalEntry& e) {
  std::string_view f[5];
  size_t n = 0;
  for (size_t at = 0; n < 5; ++n) {
    size_t tab = line.find('\t', at);
    f[n] = line.substr(at, tab == std::string_view::npos ? std::string_view::npos : tab - at);
    if (tab == std::string_view::npos) {
      ++n;
      break;
    }
    at = tab + 1;
    if (n == 4) return "more than 5 fields";
  }
  if (n != 5) return std::to_string(n) + " fields instead of 5";
  if (f[0].empty()) return "no watch name";
  for (unsigned char c : f[0])
    if (c <= ' ' || c == 0x7f) return "the watch name holds control or blank characters";
  uint64_t pid = 0;
  if (!parse_number(f[1], pid) || pid > 0x3fffffff) return "bad pid";
  if (!parse_number(f[2], e.start_time)) return "bad start time";
  if (f[3] != "s" && f[3] != "a") return "bad kind (expected s or a)";
  if (!parse_number(f[4], e.spec_hash)) return "bad spec digest";
  name.assign(f[0]);
  e.pid = static_cast<pid_t>(pid);
  e.spawned = f[3] == "s";
  return "";
}

// The whole file, read without blocking (a FIFO in its place) and without
// trusting what it is. nullopt and `error` when it cannot be read; ENOENT
// is not an error (no journal yet: an empty one).
std::optional<std::string> read_journal(const std::string& path, std::string& error) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) return std::string();
    error = errno_text(errno);
    return std::nullopt;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    error = errno_text(errno);
    return std::nullopt;
  }
  if (S_ISDIR(st.st_mode)) {
    error = "it is a directory";
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    error = "it is not a regular file";
    return std::nullopt;
  }
  constexpr off_t kMax = 64 << 20;  // thousands of watches take a few hundred KiB
  if (st.st_size > kMax) {
    error =
        "it is " + std::to_string(st.st_size) + " bytes, over the limit of " + std::to_string(kMax);
    return std::nullopt;
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno_text(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > static_cast<size_t>(kMax)) {
      error = "it grew over " + std::to_string(kMax) + " bytes while being read";
      return std::nullopt;
    }
  }
  return text;
}

bool write_all(int fd, const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string hex_digest(uint64_t h) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string instance_id(const std::string& state_dir) {
  char real[PATH_MAX];
  Fnv f;
  f.add(::realpath(state_dir.c_str(), real) ? std::string(real) : state_dir);
  return hex_digest(f.h);
}

Journal::Loaded Journal::load() {
  Loaded out;
  if (!enabled()) return out;
  std::string error;
  auto text = read_journal(path_, error);
  if (!text) {
    out.unreadable = error;
  } else {
    std::string_view all(*text);
    size_t line_no = 0;
    for (size_t at = 0; at < all.size();) {
      ++line_no;
      size_t nl = all.find('\n', at);
      bool torn = nl == std::string_view::npos;
      std::string_view line = all.substr(at, torn ? std::string_view::npos : nl - at);
      at = torn ? all.size() : nl + 1;
      std::string name, why;
      JournalEntry e;
      if (torn)
        why = "truncated (no newline at the end)";
      else if (line.find('\0') != std::string_view::npos)
        why = "binary data";
      else
        why = parse_line(line, name, e);
      if (!why.empty()) {
        if (out.bad_lines++ == 0) out.damage = "line " + std::to_string(line_no) + ": " + why;
        continue;
      }
      if (e.pid > 0)
        out.entries[name] = e;
      else
        out.entries.erase(name);
    }
    if (out.bad_lines > 1) out.damage += " (and " + std::to_string(out.bad_lines - 1) + " more)";
  }
  if (!out.unreadable.empty() || out.bad_lines > 0) {
    // Kept for a post-mortem, and out of the way of the new journal.
    std::string aside = path_ + ".damaged";
    std::error_code ec;
    std::filesystem::remove_all(aside, ec);
    if (::rename(path_.c_str(), aside.c_str()) == 0) out.moved_to = aside;
  }
  rewrite(out.entries);
  return out;
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

// Atomically: the old file or the new one is there after a crash, never
// a mix or an empty one.
void Journal::rewrite(const std::map<std::string, JournalEntry>& current) {
  std::string text;
  for (const auto& [name, e] : current) text += line_of(name, e);
  std::string tmp = path_ + ".new";
  Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!f) return;
  if (!write_all(f.get(), text) || ::fsync(f.get()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  f.reset();
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  size_t slash = path_.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  if (Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); d) ::fsync(d.get());
  fd_.reset();
  lines_ = live_ = current.size();
}

}  // namespace vigil

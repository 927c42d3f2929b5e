#include "host/proc/proc_stat.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>

namespace vigil {

namespace {

// Reads a small /proc file into buf; returns the length or -1.
ssize_t read_small(const char* path, char* buf, size_t size) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = ::read(fd, buf, size - 1);
  ::close(fd);
  if (n >= 0) buf[n] = '\0';
  return n;
}

template <typename T>
bool take(std::string_view& rest, T& out) {
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out);
  if (ec != std::errc()) return false;
  rest.remove_prefix(static_cast<size_t>(ptr - rest.data()));
  return true;
}

bool skip(std::string_view& rest, int fields) {
  for (int i = 0; i < fields; ++i) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    size_t sp = rest.find(' ');
    if (sp == std::string_view::npos) return false;
    rest.remove_prefix(sp);
  }
  return true;
}

}  // namespace

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  ProcStat st;
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return std::nullopt;
  std::string_view head = text.substr(0, open);
  while (!head.empty() && head.back() == ' ') head.remove_suffix(1);
  if (!take(head, st.pid)) return std::nullopt;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  std::string_view rest = text.substr(close + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty()) return std::nullopt;
  st.state = rest.front();
  rest.remove_prefix(1);
  // Fields (1-based as in proc(5)): 4 ppid 5 pgrp 6 session ... 14 utime
  // 15 stime ... 20 num_threads 21 itrealvalue 22 starttime 23 vsize 24 rss
  if (!take(rest, st.ppid) || !take(rest, st.pgrp) || !take(rest, st.session)) return std::nullopt;
  if (!skip(rest, 7)) return std::nullopt;  // 7..13
  if (!take(rest, st.utime) || !take(rest, st.stime)) return std::nullopt;
  if (!skip(rest, 4)) return std::nullopt;  // 16..19
  if (!take(rest, st.num_threads)) return std::nullopt;
  if (!skip(rest, 1)) return std::nullopt;  // 21
  if (!take(rest, st.start_time) || !take(rest, st.vsize) || !take(rest, st.rss_pages))
    return std::nullopt;
  return st;
}

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  char path[32];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  char buf[1024];
  ssize_t n = read_small(path, buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  return parse_proc_stat(std::string_view(buf, static_cast<size_t>(n)));
}

uint64_t proc_start_time(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st ? st->start_time : 0;
}

bool proc_alive(pid_t pid, uint64_t start_time) {
  auto st = read_proc_stat(pid);
  return st && st->start_time == start_time && st->state != 'Z' && st->state != 'X';
}

}  // namespace vigil

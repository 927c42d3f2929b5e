#include "host/proc/proc_stat.hpp"

#include <time.h>
#include <unistd.h>

#include <charconv>

#include "host/proc/proc_files.hpp"

namespace vigil {

namespace {

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

bool parse_proc_stat(std::string_view text, ProcStat& st) {
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return false;
  std::string_view head = text.substr(0, open);
  while (!head.empty() && head.back() == ' ') head.remove_suffix(1);
  if (!take(head, st.pid)) return false;
  st.comm.assign(text.data() + open + 1, close - open - 1);
  std::string_view rest = text.substr(close + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty()) return false;
  st.state = rest.front();
  rest.remove_prefix(1);
  // Fields (1-based as in proc(5)): 4 ppid 5 pgrp 6 session 7 tty_nr
  // 8 tpgid 9 flags 10 minflt 11 cminflt 12 majflt 13 cmajflt 14 utime
  // 15 stime 16..19 cutime cstime priority nice 20 num_threads
  // 21 itrealvalue 22 starttime 23 vsize 24 rss ... 42 delayacct_blkio_ticks
  if (!take(rest, st.ppid) || !take(rest, st.pgrp) || !take(rest, st.session)) return false;
  if (!take(rest, st.tty_nr) || !skip(rest, 1)) return false;  // 7, 8
  if (!take(rest, st.flags) || !take(rest, st.minflt) || !skip(rest, 1) || !take(rest, st.majflt) ||
      !skip(rest, 1))
    return false;
  if (!take(rest, st.utime) || !take(rest, st.stime)) return false;
  if (!skip(rest, 4)) return false;  // 16..19
  if (!take(rest, st.num_threads)) return false;
  if (!skip(rest, 1)) return false;  // 21
  if (!take(rest, st.start_time) || !take(rest, st.vsize) || !take(rest, st.rss_pages))
    return false;
  // 25..41, then 42: old kernels may stop earlier; the field is optional.
  // So is 52, the exit status (43..51 are skipped).
  st.blkio_ticks = 0;
  st.exit_code = -1;
  std::string_view tail = rest;
  if (skip(tail, 17) && take(tail, st.blkio_ticks) && skip(tail, 9)) take(tail, st.exit_code);
  return true;
}

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  ProcStat st;
  if (!parse_proc_stat(text, st)) return std::nullopt;
  return st;
}

std::optional<ProcStat> read_proc_stat(pid_t pid) {
  char buf[1024];
  ssize_t n = read_proc_file(pid, "stat", buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  return parse_proc_stat(std::string_view(buf, static_cast<size_t>(n)));
}

uint64_t proc_start_time(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st ? st->start_time : 0;
}

bool proc_alive(pid_t pid, uint64_t start_time) {
  auto st = read_proc_stat(pid);
  return st && st->start_time == start_time && !st->dead();
}

MonoTime started_at(uint64_t start_time) {
  // /proc counts start times on the boot-time clock (suspend included).
  timespec boot{};
  clock_gettime(CLOCK_BOOTTIME, &boot);
  static const long hz = sysconf(_SC_CLK_TCK);
  double now = static_cast<double>(boot.tv_sec) + static_cast<double>(boot.tv_nsec) * 1e-9;
  double age = now - static_cast<double>(start_time) / static_cast<double>(hz > 0 ? hz : 100);
  MonoTime mono = MonoClock::now();
  return age > 0 ? mono - std::chrono::duration_cast<Duration>(std::chrono::duration<double>(age))
                 : mono;
}

}  // namespace vigil

#include "host/proc/proc_files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "host/core/fd.hpp"

namespace vigil {

namespace {

// "Key:\tv1\tv2..." -> the first `n` numbers after key.
template <typename T>
bool status_numbers(std::string_view line, T* out, int n) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view rest = line.substr(colon + 1);
  for (int i = 0; i < n; ++i) {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out[i]);
    if (ec != std::errc()) return false;
    rest.remove_prefix(static_cast<size_t>(ptr - rest.data()));
  }
  return true;
}

}  // namespace

ssize_t read_proc_file(pid_t pid, const char* name, char* buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t total = 0;
  ssize_t n;
  while (total + 1 < size && (n = ::read(fd, buf + total, size - 1 - total)) > 0)
    total += static_cast<size_t>(n);
  ::close(fd);
  buf[total] = '\0';
  return static_cast<ssize_t>(total);
}

std::optional<ProcStatus> parse_proc_status(std::string_view text) {
  ProcStatus st;
  bool have_uid = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.starts_with("Uid:")) {
      uid_t ids[2];
      if (!status_numbers(line, ids, 2)) return std::nullopt;
      st.uid = ids[0];
      st.euid = ids[1];
      have_uid = true;
    } else if (line.starts_with("Gid:")) {
      gid_t ids[2];
      if (status_numbers(line, ids, 2)) st.gid = ids[0], st.egid = ids[1];
    } else if (line.starts_with("Threads:")) {
      status_numbers(line, &st.threads, 1);
    } else if (line.starts_with("VmSize:")) {
      status_numbers(line, &st.vm_size_kib, 1);
    } else if (line.starts_with("VmRSS:")) {
      status_numbers(line, &st.vm_rss_kib, 1);
    } else if (line.starts_with("voluntary_ctxt_switches:")) {
      status_numbers(line, &st.voluntary_ctxt, 1);
    } else if (line.starts_with("nonvoluntary_ctxt_switches:")) {
      status_numbers(line, &st.nonvoluntary_ctxt, 1);
    }
  }
  if (!have_uid) return std::nullopt;
  return st;
}

std::string_view cmdline_text(char* raw, size_t n) {
  while (n > 0 && raw[n - 1] == '\0') --n;
  for (size_t i = 0; i < n; ++i)
    if (raw[i] == '\0') raw[i] = ' ';
  return std::string_view(raw, n);
}

bool parse_tcp_table(std::string_view text, const std::function<void(const TcpSocket&)>& fn) {
  // "  sl  local_address rem_address   st tx_queue:rx_queue tr tm->when
  //  retrnsmt   uid  timeout inode ..."; the first line is the header.
  size_t nl = text.find('\n');
  if (nl == std::string_view::npos) return text.empty() || text.find("local_address") != text.npos;
  text.remove_prefix(nl + 1);
  auto field = [](std::string_view& line) {
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    size_t sp = line.find(' ');
    std::string_view f = line.substr(0, sp);
    line.remove_prefix(sp == std::string_view::npos ? line.size() : sp);
    return f;
  };
  auto hex = [](std::string_view f, uint64_t& out) {
    return std::from_chars(f.data(), f.data() + f.size(), out, 16).ec == std::errc();
  };
  while (!text.empty()) {
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.find_first_not_of(' ') == std::string_view::npos) continue;
    field(line);  // sl
    std::string_view local = field(line);
    field(line);  // rem_address
    std::string_view st = field(line);
    std::string_view queues = field(line);
    field(line);  // tr:tm->when
    field(line);  // retrnsmt
    field(line);  // uid
    field(line);  // timeout
    std::string_view inode = field(line);
    size_t colon = local.rfind(':');
    size_t qcolon = queues.find(':');
    TcpSocket sock;
    uint64_t state = 0, port = 0;
    if (colon == std::string_view::npos || qcolon == std::string_view::npos ||
        !hex(local.substr(colon + 1), port) || !hex(st, state) ||
        !hex(queues.substr(qcolon + 1), sock.rx_queue) ||
        std::from_chars(inode.data(), inode.data() + inode.size(), sock.inode).ec != std::errc())
      return false;
    sock.state = static_cast<int>(state);
    sock.local_port = static_cast<unsigned>(port);
    fn(sock);
  }
  return true;
}

uint64_t parse_nofile_limit(std::string_view text) {
  size_t at = text.find("Max open files");
  if (at == std::string_view::npos) return 0;
  std::string_view rest = text.substr(at + 14);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  uint64_t v = 0;
  if (std::from_chars(rest.data(), rest.data() + rest.size(), v).ec != std::errc()) return 0;
  return v;
}

std::optional<uint64_t> socket_link_inode(std::string_view link) {
  if (!link.starts_with("socket:[") || !link.ends_with("]")) return std::nullopt;
  std::string_view digits = link.substr(8, link.size() - 9);
  uint64_t ino = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ino);
  if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
  return ino;
}

void parse_pid_list(std::string_view rest, std::vector<pid_t>& out) {
  while (!rest.empty()) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    pid_t c = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), c);
    if (ec != std::errc()) break;
    out.push_back(c);
    rest.remove_prefix(static_cast<size_t>(ptr - rest.data()));
  }
}

ProcReader::ProcReader() : buf_(4096) {}

std::optional<std::string_view> ProcReader::read_path(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  size_t total = 0;
  for (;;) {
    if (buf_.size() - total < 2) buf_.resize(buf_.size() * 2);
    ssize_t n = ::read(fd, buf_.data() + total, buf_.size() - 1 - total);
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  ::close(fd);
  buf_[total] = '\0';
  return std::string_view(buf_.data(), total);
}

std::optional<std::string_view> ProcReader::read(pid_t pid, const char* name) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  return read_path(path);
}

bool ProcReader::stat(pid_t pid, ProcStat& out) {
  auto text = read(pid, "stat");
  return text && !text->empty() && parse_proc_stat(*text, out);
}

bool ProcReader::stat_at(int fd, ProcStat& out) {
  ssize_t n = ::pread(fd, buf_.data(), buf_.size() - 1, 0);
  if (n <= 0) return false;
  buf_[static_cast<size_t>(n)] = '\0';
  return parse_proc_stat(std::string_view(buf_.data(), static_cast<size_t>(n)), out);
}

bool ProcReader::schedstat_at(int fd, uint64_t& ran_ns, uint64_t& runs) {
  char b[96];
  ssize_t n = ::pread(fd, b, sizeof b, 0);
  if (n <= 0) return false;
  const char* p = b;
  const char* end = b + n;
  uint64_t v[3];
  for (uint64_t& x : v) {
    while (p < end && *p == ' ') ++p;
    auto [next, ec] = std::from_chars(p, end, x);
    if (ec != std::errc()) return false;
    p = next;
  }
  ran_ns = v[0];
  runs = v[2];
  return true;
}

std::optional<std::string_view> ProcReader::read_at(int fd) {
  for (;;) {
    ssize_t n = ::pread(fd, buf_.data(), buf_.size() - 1, 0);
    if (n < 0) return std::nullopt;
    if (static_cast<size_t>(n) < buf_.size() - 1) {
      buf_[static_cast<size_t>(n)] = '\0';
      return std::string_view(buf_.data(), static_cast<size_t>(n));
    }
    buf_.resize(buf_.size() * 2);  // it may not have fitted: read it whole
  }
}

std::optional<ProcStat> ProcReader::stat(pid_t pid) {
  ProcStat st;
  if (!stat(pid, st)) return std::nullopt;
  return st;
}

std::optional<ProcStatus> ProcReader::status(pid_t pid) {
  auto text = read(pid, "status");
  if (!text) return std::nullopt;
  return parse_proc_status(*text);
}

std::optional<std::string_view> ProcReader::cmdline(pid_t pid) {
  auto text = read(pid, "cmdline");
  if (!text) return std::nullopt;
  return cmdline_text(buf_.data(), text->size());
}

std::optional<std::string_view> ProcReader::exe(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  for (;;) {
    ssize_t n = ::readlink(path, buf_.data(), buf_.size());
    if (n < 0) return std::nullopt;
    if (static_cast<size_t>(n) < buf_.size()) {
      std::string_view v(buf_.data(), static_cast<size_t>(n));
      // An executable replaced on disk (an upgrade) still names the path.
      if (v.ends_with(" (deleted)")) v.remove_suffix(10);
      return v;
    }
    buf_.resize(buf_.size() * 2);
  }
}

int ProcReader::count_fds(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  Fd dir(::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return -1;
  int count = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, dir.get(), buf_.data(), buf_.size());
    if (n < 0) return -1;
    if (n == 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<const dirent64*>(buf_.data() + off);
      if (d->d_name[0] != '.') ++count;
      off += d->d_reclen;
    }
  }
  return count;
}

bool ProcReader::socket_inodes(pid_t pid, std::vector<uint64_t>& out, int* fd_count) {
  out.clear();
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  Fd dir(::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return false;
  std::vector<int> fds;
  for (;;) {
    long n = syscall(SYS_getdents64, dir.get(), buf_.data(), buf_.size());
    if (n < 0) return false;
    if (n == 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<const dirent64*>(buf_.data() + off);
      int fd = 0;
      const char* name = d->d_name;
      if (std::from_chars(name, name + strlen(name), fd).ec == std::errc()) fds.push_back(fd);
      off += d->d_reclen;
    }
  }
  if (fd_count) *fd_count = static_cast<int>(fds.size());
  char link[64];
  for (int fd : fds) {
    snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
    ssize_t n = ::readlink(path, link, sizeof link);
    if (n <= 0) continue;
    if (auto ino = socket_link_inode(std::string_view(link, static_cast<size_t>(n))))
      out.push_back(*ino);
  }
  std::sort(out.begin(), out.end());
  return true;
}

std::vector<pid_t> ProcReader::children(pid_t pid) {
  std::vector<pid_t> out;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  std::vector<pid_t> tids;
  {
    Fd dir(::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return out;
    for (;;) {
      long n = syscall(SYS_getdents64, dir.get(), buf_.data(), buf_.size());
      if (n <= 0) break;
      for (long off = 0; off < n;) {
        auto* d = reinterpret_cast<const dirent64*>(buf_.data() + off);
        pid_t tid = 0;
        const char* name = d->d_name;
        if (std::from_chars(name, name + strlen(name), tid).ec == std::errc() && tid > 0)
          tids.push_back(tid);
        off += d->d_reclen;
      }
    }
  }
  for (pid_t tid : tids) {
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, tid);
    if (auto text = read_path(path)) parse_pid_list(*text, out);
  }
  return out;
}

}  // namespace vigil

// `vigil logs NAME [-n N] [-f] [--stderr]`: the captured output of a
// watch's processes (STATE/logs/NAME.stdout.log, .stderr.log; see
// host/supervise/output_log.hpp). The daemon says where the file is (and
// whether there is one); with no daemon answering, the state directory
// says. Following is rotation-aware like tail -F: a truncated file (vigil
// rotates by copying and truncating in place) or a new one under the name
// is read again from its start.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "host/cli/cli.hpp"
#include "host/core/fd.hpp"
#include "host/core/json_read.hpp"
#include "host/core/strings.hpp"

using nlohmann::json;

namespace vigil::cli {

namespace {

bool write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(STDOUT_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Copies fd from its offset to its end; false when stdout is gone.
bool drain(int fd) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    if (!write_all(buf, static_cast<size_t>(n))) return false;
  }
}

// Where the last `lines` lines of fd begin (reading backwards in chunks,
// so a big log costs only its tail).
off_t tail_start(int fd, long lines) {
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size == 0) return 0;
  if (lines <= 0) return st.st_size;
  off_t end = st.st_size, pos = end;
  long seen = 0;
  char buf[8192];
  bool last = true;  // the very last byte: a final newline ends the last line, not one more
  while (pos > 0) {
    size_t chunk = static_cast<size_t>(std::min<off_t>(pos, sizeof buf));
    pos -= static_cast<off_t>(chunk);
    ssize_t n = ::pread(fd, buf, chunk, pos);
    if (n <= 0) return 0;
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buf[i] == '\n') {
        if (last && pos + i == end - 1) {
          last = false;
          continue;
        }
        if (++seen == lines) return pos + i + 1;
      }
      last = false;
    }
  }
  return 0;
}

}  // namespace

int cmd_logs(Global& g, const LogsArgs& a) {
  if (a.lines < 0) throw UsageError("-n: expected a number of lines, 0 or more");
  if (g.node)
    throw UsageError("logs reads the process's output files on its node: the remote API does not "
                     "serve them (a process's output may hold secrets)");
  const char* stream = a.stderr_stream ? "stderr" : "stdout";
  std::string path;
  std::string error;
  ControlCall call = g.call;
  auto reply = control_request(g.socket, {{"cmd", "logs"}, {"name", a.name}}, error, &call);
  if (reply && reply->is_object()) {
    if (!reply->value("ok", false)) {
      const json& e = field(*reply, "error");
      std::cerr << "vigil: " << (e.is_string() ? e.get<std::string>() : "failed") << "\n";
      return kExitFailed;
    }
    const json& p = field(*reply, stream);
    if (p.is_string()) path = p.get<std::string>();
  }
  if (path.empty()) {
    path = a.state_dir + "/logs/" + a.name + "." + stream + ".log";
    std::cerr << "vigil: " << (error.empty() ? "no path in the daemon's reply" : error)
              << "; reading " << path << "\n";
  }
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd && !(a.follow && errno == ENOENT)) {
    std::cerr << "vigil: cannot read " << path << ": " << errno_text(errno)
              << (errno == ENOENT ? " (nothing captured yet, or no such watch)" : "") << "\n";
    return kExitFailed;
  }
  if (fd) {
    ::lseek(fd.get(), tail_start(fd.get(), a.lines), SEEK_SET);
    if (!drain(fd.get())) return 0;
  }
  if (!a.follow) return 0;
  for (;;) {
    ::poll(nullptr, 0, 100);
    struct stat by_name, open_one;
    bool named = ::stat(path.c_str(), &by_name) == 0;
    if (fd && ::fstat(fd.get(), &open_one) == 0) {
      off_t at = ::lseek(fd.get(), 0, SEEK_CUR);
      if (open_one.st_size < at) ::lseek(fd.get(), 0, SEEK_SET);  // truncated: from its start
      if (!drain(fd.get())) return 0;
      if (!named || (by_name.st_ino == open_one.st_ino && by_name.st_dev == open_one.st_dev))
        continue;
      // Another file under the name now: what the old one still had was
      // read above; the new one from its start.
    }
    if (!named) continue;
    Fd next(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!next) continue;
    fd = std::move(next);
    if (!drain(fd.get())) return 0;
  }
}

}  // namespace vigil::cli

#include "host/daemon/daemonize.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "host/core/fd.hpp"
#include "host/core/strings.hpp"

namespace vigil {

namespace {

std::string read_small(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return {};
  char buf[64];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

pid_t parse_pid(const std::string& text) {
  char* end = nullptr;
  long pid = strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || pid <= 0 || pid > 0x400000) return 0;
  while (*end == '\n' || *end == ' ') ++end;
  return *end ? 0 : static_cast<pid_t>(pid);
}

// PATH.tmp.PID written and renamed over PATH: a reader sees the old file
// or the whole new one, never a half-written pid.
bool write_pid_file(const std::string& path, std::string& error) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) {
    error = "pid file " + tmp + ": " + errno_text(errno);
    return false;
  }
  std::string text = std::to_string(getpid()) + "\n";
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "pid file " + path + ": " + errno_text(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

// Only our own: a pid file another vigil has since taken over stays.
void remove_pid_file(const std::string& path) {
  if (!path.empty() && parse_pid(read_small(path)) == getpid()) ::unlink(path.c_str());
}

void write_all(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// The parent of --daemon: the daemon's first word is its outcome.
int wait_until_ready(Fd from_child, pid_t child) {
  std::string said;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(from_child.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  int st = 0;
  while (::waitpid(child, &st, 0) < 0 && errno == EINTR) {
  }
  if (said == "ready\n") return 0;
  if (said.starts_with("error: ")) {
    std::cerr << "vigil: " << said.substr(7) << "\n";
    return 1;
  }
  std::cerr << "vigil: the daemon exited before it was ready"
            << (said.empty() ? "" : " (" + said + ")") << "\n";
  return 1;
}

}  // namespace

pid_t pid_file_holder(const std::string& path) {
  pid_t pid = parse_pid(read_small(path));
  if (pid <= 0 || pid == getpid()) return 0;
  if (::kill(pid, 0) != 0 && errno != EPERM) return 0;
  // A recycled pid of another program is a stale pid file, not a vigil.
  std::string comm = read_small("/proc/" + std::to_string(pid) + "/comm");
  return comm == "vigil\n" ? pid : 0;
}

int run_daemon(DaemonOptions options, const ServiceOptions& service) {
  const std::string& pid_file = service.pid_file;
  if (!pid_file.empty()) {
    if (pid_t holder = pid_file_holder(pid_file)) {
      std::cerr << "vigil: the pid file " << pid_file << " names a running vigil (pid " << holder
                << "); stop it first, or give this one another --pid-file\n";
      return 1;
    }
  }
  Fd to_parent;  // --daemon: where "ready" or the error goes
  auto fail = [&](const std::string& error) {
    if (to_parent)
      write_all(to_parent.get(), "error: " + error);
    else
      std::cerr << "vigil: " << error << "\n";
    remove_pid_file(pid_file);
    return 1;
  };
  if (service.detach) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return fail("pipe: " + errno_text(errno));
    Fd from_child(p[0]);
    to_parent = Fd(p[1]);
    std::fflush(nullptr);
    pid_t child = ::fork();
    if (child < 0) {
      to_parent.reset();
      return fail("fork: " + errno_text(errno));
    }
    if (child > 0) {
      to_parent.reset();
      return wait_until_ready(std::move(from_child), child);
    }
    from_child.reset();
    ::setsid();
    pid_t daemon = ::fork();
    if (daemon < 0) {
      fail("fork: " + errno_text(errno));
      _exit(1);
    }
    if (daemon > 0) _exit(0);  // the parent goes on waiting on the pipe
    Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null)
      for (int fd : {0, 1, 2}) ::dup2(null.get(), fd);
    options.log.console = false;
  }
  if (!pid_file.empty()) {
    std::string error;
    if (!write_pid_file(pid_file, error)) return fail(error);
  }
  int code = 1;
  std::string error;
  {
    Daemon daemon(std::move(options));
    if (daemon.start(error)) {
      if (to_parent) {
        write_all(to_parent.get(), "ready\n");
        to_parent.reset();
      }
      code = daemon.run();
    }
  }  // a failed start is reported once the daemon let go of its socket and state lock
  if (!error.empty()) return fail(error);
  remove_pid_file(pid_file);
  return code;
}

}  // namespace vigil

// A real etcd for tests and benches: one member on loopback, on two free
// ports (etcd cannot take port 0: the ports are found by binding first), in
// a per-test data dir; killed by pid and removed when the fixture goes.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "host/core/fd.hpp"
#include "host/loop/event_loop.hpp"

namespace testing_etcd {

inline int free_port() {
  vigil::Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

inline bool etcd_installed() { return ::access("/usr/bin/etcd", X_OK) == 0; }

// Runs `loop` until pred() or the deadline; true when pred() held.
inline bool run_until(vigil::EventLoop& loop, const std::function<bool()>& pred,
                      vigil::Duration deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    loop.run_once(std::chrono::milliseconds(20));
  }
  return true;
}

// Starts argv[0] with stdout and stderr to `log`, in a process group of
// its own; returns its pid (kill it by pid).
inline pid_t spawn_logged(std::vector<std::string> args, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::setpgid(0, 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

class EtcdMember {
 public:
  EtcdMember() {
    char tmpl[] = "/tmp/vigil-etcd-XXXXXX";
    dir_ = ::mkdtemp(tmpl) ? tmpl : "";
    client_port_ = free_port();
    peer_port_ = free_port();
    while (peer_port_ == client_port_) peer_port_ = free_port();
    url_ = "http://127.0.0.1:" + std::to_string(client_port_);
    std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--name", "m1",
                                     "--data-dir", dir_ + "/data",
                                     "--listen-client-urls", url_,
                                     "--advertise-client-urls", url_,
                                     "--listen-peer-urls", peer,
                                     "--initial-advertise-peer-urls", peer,
                                     "--initial-cluster", "m1=" + peer,
                                     "--initial-cluster-state", "new",
                                     "--heartbeat-interval", "50",
                                     "--election-timeout", "300",
                                     "--log-level", "warn"};
    pid_ = spawn_logged(args, dir_ + "/etcd.log");
  }
  ~EtcdMember() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  EtcdMember(const EtcdMember&) = delete;
  EtcdMember& operator=(const EtcdMember&) = delete;

  const std::string& url() const { return url_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::string url_;
  pid_t pid_ = -1;
};

}  // namespace testing_etcd

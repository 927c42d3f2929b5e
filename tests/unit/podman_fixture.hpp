// A real Podman Docker-API service for tests and benches (header-only, so
// the unit, e2e and bench targets can all include it): a private dir with
// its own storage, runroot, tmp_dir (events, exits, file locks) and
// network config dir, a busybox image imported from /bin/busybox, and
// `podman system service --time=0 unix://DIR/api.sock` in its own session.
//
// Two fixtures run side by side (ctest -j2): the default shm lock
// (/dev/shm/libpod_lock) and tmp_dir (/run/libpod: the events log, the
// exit files) are shared by every podman on the host, whatever --root,
// so containers.conf sets lock_type = "file" and a private tmp_dir.
// Containers use --network none (netavark would add a bridge and
// firewall rules to the host otherwise).
//
// Teardown removes the containers, kills and reaps the service, runs
// `system reset`, reaps the conmons it inherited (the fixture makes the
// test process a child subreaper: PID 1 reaps late here) and removes the
// dir. Nothing is left in `ps`.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "host/net/http_client.hpp"

namespace testing_podman {

inline bool executable(const char* p) { return ::access(p, X_OK) == 0; }

// "" when a real Podman can run here, else why not (for GTEST_SKIP).
inline std::string missing() {
  if (!executable("/usr/bin/podman")) return "podman is not installed (apt-get install podman)";
  if (!executable("/usr/sbin/runc") && !executable("/usr/bin/runc")) return "runc is not installed";
  if (std::system("dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'") != 0)
    return "busybox-static is not installed (the test image is made of /bin/busybox)";
  if (::geteuid() != 0) return "the Podman tests run as root";
  return "";
}

// Runs argv with `env` added; returns the exit status, output (stdout and
// stderr) in *out. Blocking: for the tests' setup only.
inline int run(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
               std::string* out = nullptr) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(p[1], 1);
    ::dup2(p[1], 2);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    for (auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(p[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) text.append(buf, size_t(n));
  ::close(p[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

class PodmanService {
 public:
  static constexpr const char* kImage = "localhost/bb:latest";

  PodmanService() {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    char tmpl[] = "/tmp/vigil-podman-XXXXXX";
    dir_ = ::mkdtemp(tmpl) ? tmpl : "";
    if (dir_.empty()) {
      error_ = "mkdtemp failed";
      return;
    }
    namespace fs = std::filesystem;
    std::ofstream(dir_ + "/containers.conf")
        << "[containers]\n"
        << "default_ulimits = [\"nofile=20000:20000\", \"nproc=20000:20000\"]\n"
        << "[engine]\n"
        << "runtime = \"runc\"\n"
        << "exit_command_delay = 5\n"
        << "lock_type = \"file\"\n"
        << "events_logger = \"file\"\n"
        << "tmp_dir = \"" << dir_ << "/tmp\"\n"
        << "[network]\n"
        << "network_config_dir = \"" << dir_ << "/net\"\n";
    env_ = {{"CONTAINERS_CONF", dir_ + "/containers.conf"}, {"TMPDIR", dir_}};
    std::string rootfs = dir_ + "/rootfs";
    for (const char* d : {"bin", "proc", "sys", "dev", "etc", "tmp"}) fs::create_directories(rootfs + "/" + d);
    std::error_code ec;
    fs::copy_file("/bin/busybox", rootfs + "/bin/busybox", ec);
    for (const char* a : {"sh", "sleep", "ls", "cat", "echo", "ps", "kill", "true", "false", "touch", "test"})
      fs::create_symlink("busybox", rootfs + "/bin/" + a, ec);
    std::string out;
    if (run({"/bin/tar", "-C", rootfs, "-cf", dir_ + "/bb.tar", "."}, {}, &out) != 0) {
      error_ = "tar: " + out;
      return;
    }
    if (podman({"import", "--change", "CMD [\"/bin/sh\"]", dir_ + "/bb.tar", kImage}, &out) != 0) {
      error_ = "podman import: " + out;
      return;
    }
    start();
  }

  ~PodmanService() {
    if (dir_.empty()) return;
    if (pid_ > 0) podman({"rm", "-a", "-f", "-t", "0"});
    stop();
    podman({"system", "reset", "-f"});
    reap_leftovers();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
  PodmanService(const PodmanService&) = delete;
  PodmanService& operator=(const PodmanService&) = delete;

  // "" when the service answers /_ping.
  const std::string& error() const { return error_; }
  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/api.sock"; }
  std::string host() const { return "unix://" + socket(); }
  pid_t pid() const { return pid_; }

  // Starts the service and waits (10 s at most) for /_ping.
  bool start() {
    if (pid_ > 0) return true;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setsid();
      int fd = ::open((dir_ + "/svc.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2);
      int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      for (auto& [k, v] : env_) ::setenv(k.c_str(), v.c_str(), 1);
      std::vector<std::string> args = base_args();
      for (const char* a : {"system", "service", "--time=0"}) args.push_back(a);
      args.push_back("unix://" + socket());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < end) {
      if (ping()) return true;
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "podman system service exited: see " + dir_ + "/svc.log";
        return false;
      }
    }
    error_ = "podman system service did not answer /_ping within 10 s";
    return false;
  }

  // Kills the service (SIGKILL unless told) and reaps it; the socket file stays.
  void stop(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  bool ping() const {
    vigil::HttpClientRequest q;
    q.url = "http://d/_ping";
    q.unix_socket = socket();
    q.timeout = std::chrono::seconds(2);
    auto r = vigil::http_run(q);
    if (!r.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a retry pace, not a wait for state
    return r.ok() && r.status == 200;
  }

  // Runs `podman --root ... ARGS`; the exit status, its output in *out.
  int podman(const std::vector<std::string>& args, std::string* out = nullptr) const {
    std::vector<std::string> a = base_args();
    a.insert(a.end(), args.begin(), args.end());
    return run(a, env_, out);
  }

  // `podman run -d --network none --name NAME [--label k=v]... IMAGE cmd`:
  // the id, "" on failure. The default command traps TERM and sleeps.
  std::string run_container(const std::string& name, const std::map<std::string, std::string>& labels = {},
                            std::vector<std::string> cmd = {}, std::vector<std::string> opts = {},
                            const std::string& image = kImage) const {
    std::vector<std::string> a = {"run", "-d", "--network", "none", "--name", name};
    for (auto& [k, v] : labels) a.push_back("--label"), a.push_back(k + "=" + v);
    a.insert(a.end(), opts.begin(), opts.end());
    a.push_back(image);
    if (cmd.empty()) cmd = {"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"};
    a.insert(a.end(), cmd.begin(), cmd.end());
    std::string out;
    if (podman(a, &out) != 0) return "";
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    auto nl = out.rfind('\n');
    return nl == std::string::npos ? out : out.substr(nl + 1);
  }

 private:
  std::vector<std::string> base_args() const {
    return {"/usr/bin/podman", "--root", dir_ + "/storage", "--runroot", dir_ + "/run"};
  }

  // Every process still running with our dir on its command line (conmon,
  // a container's cleanup) is killed; zombies we inherited are reaped.
  void reap_leftovers() const {
    namespace fs = std::filesystem;
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      bool any = false;
      std::error_code ec;
      for (auto& e : fs::directory_iterator("/proc", ec)) {
        std::string name = e.path().filename();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        pid_t p = std::atoi(name.c_str());
        std::ifstream cf(e.path() / "cmdline");
        std::string cmd((std::istreambuf_iterator<char>(cf)), std::istreambuf_iterator<char>());
        std::ifstream sf(e.path() / "stat");
        std::string stat((std::istreambuf_iterator<char>(sf)), std::istreambuf_iterator<char>());
        auto rp = stat.rfind(')');
        if (rp == std::string::npos || rp + 2 >= stat.size()) continue;
        char state = stat[rp + 2];
        pid_t ppid = std::atoi(stat.c_str() + rp + 4);
        if (ppid == ::getpid() && state == 'Z') {
          ::waitpid(p, nullptr, WNOHANG);
          continue;
        }
        if (cmd.find(dir_) != std::string::npos) {
          any = true;
          ::kill(p, SIGKILL);
          if (ppid == ::getpid()) ::waitpid(p, nullptr, 0);
        }
      }
      if (!any || std::chrono::steady_clock::now() > end) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::string dir_;
  std::map<std::string, std::string> env_;
  std::string error_;
  pid_t pid_ = -1;
};

}  // namespace testing_podman

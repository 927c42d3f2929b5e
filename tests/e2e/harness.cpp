#include "tests/e2e/harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <http_parser.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "host/control/client.hpp"
#include "host/core/fd.hpp"
#include "host/proc/proc_files.hpp"
#include "host/proc/proc_stat.hpp"

namespace vigil::test {

int free_port() {
  vigil::Fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

namespace {
// Orphans of the processes under test reparent to us and are reaped at
// once, instead of lingering as zombies under a slow PID 1.
struct SubreaperSetup {
  SubreaperSetup() {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGPIPE, SIG_IGN);
  }
} subreaper_setup;
}  // namespace

CommandResult run_command(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  CommandResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int st = 0;
  waitpid(pid, &st, 0);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval, not a sync
  }
}

std::string raw_request(const std::string& socket_path, const std::string& bytes) {
  vigil::Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "";
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  shutdown(fd.get(), SHUT_WR);
  std::string reply;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof buf)) > 0) reply.append(buf, static_cast<size_t>(n));
  return reply;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << text;
  }
  std::filesystem::rename(tmp, path);
}

pid_t spawn_external(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    int nul = open("/dev/null", O_RDWR);
    dup2(nul, 0);
    dup2(nul, 1);
    dup2(nul, 2);
    close_range(3, ~0U, 0);  // nothing of the test leaks into it
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

CommandResult check_rule(const std::string& text) {
  Daemon d;
  d.write_rule("rule.lua", text);
  return run_command({VIGIL_BINARY, "check", d.rules_dir() + "/rule.lua"});
}

bool reap(pid_t pid, std::chrono::milliseconds timeout) {
  return wait_for([&] { return waitpid(pid, nullptr, WNOHANG) == pid; }, timeout);
}

namespace {
// Pids whose cmdline (arguments joined by spaces) contains `needle`.
std::vector<pid_t> pids_with_cmdline(const std::string& needle) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.empty() || !isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::string cmd = read_file(e.path().string() + "/cmdline");
    for (char& c : cmd)
      if (c == '\0') c = ' ';
    if (cmd.find(needle) != std::string::npos) out.push_back(std::stoi(name));
  }
  return out;
}
}  // namespace

size_t socket_count(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    n += std::filesystem::read_symlink(it->path(), ec).string().starts_with("socket:");
  return n;
}

std::string fd_list(pid_t pid) {
  std::string out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    out += " " + it->path().filename().string() + "->" +
           std::filesystem::read_symlink(it->path(), ec).string();
  return out;
}

int count_processes(const std::string& needle) {
  int n = 0;
  for (pid_t p : pids_with_cmdline(needle)) n += process_alive(p);
  return n;
}

void kill_processes(const std::string& needle) {
  for (int round = 0; round < 3; ++round) {
    std::vector<pid_t> killed;
    for (pid_t pid : pids_with_cmdline(needle))
      if (kill(pid, SIGKILL) == 0) killed.push_back(pid);
    // Reap the ones that are ours (the rest belong to someone else).
    wait_for(
        [&] {
          for (pid_t p : killed) waitpid(p, nullptr, WNOHANG);
          return count_processes(needle) == 0;
        },
        std::chrono::seconds(2));
    if (count_processes(needle) == 0) break;
  }
}

bool process_alive(pid_t pid) {
  auto st = read_proc_stat(pid);
  return st && st->state != 'Z' && st->state != 'X';
}

Daemon::Daemon() {
  char tmpl[] = "/tmp/vigil-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl);
  chmod(dir_.c_str(), 0755);
  std::filesystem::create_directories(rules_dir());
}

Daemon::~Daemon() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGTERM);
    bool gone = wait_for([&] { return waitpid(pid_, &status_, WNOHANG) == pid_; },
                         std::chrono::seconds(15));
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
    }
  }
  // Whatever the test left running from its directory goes too.
  kill_processes(dir_);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void Daemon::write_rule(const std::string& name, const std::string& text) {
  std::filesystem::path p = rules_dir() + "/" + name;
  std::filesystem::create_directories(p.parent_path());
  write_file(p.string(), text);
}

bool Daemon::start(const std::vector<std::string>& extra) {
  std::string log = dir_ + "/daemon.err";
  run_from_seq_ = 0;
  if (std::ifstream h(state_dir() + "/events.jsonl"); h) {
    for (std::string line; std::getline(h, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("seq") && j["seq"].is_number_unsigned())
        run_from_seq_ = std::max(run_from_seq_, j["seq"].get<uint64_t>());
    }
  }
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 2);
    dup2(fd, 1);
    std::vector<std::string> argv = prefix_;
    for (const auto& a :
         {std::string(VIGIL_BINARY), std::string("--socket"), socket(), std::string("run"),
          std::string("--rules"), rules_dir(), std::string("--state-dir"), state_dir()})
      argv.push_back(a);
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  reaped_ = false;
  return wait_for([&] {
           if (!running()) return true;
           return cli({"ping"}).code == 0;
         }) &&
         running();
}

bool Daemon::running() {
  if (reaped_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

int Daemon::stop() {
  if (pid_ <= 0 || reaped_) return status_;
  kill(pid_, SIGTERM);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
  return status_;
}

void Daemon::kill9() {
  kill(pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
}

std::string Daemon::output() const {
  return read_file(dir_ + "/daemon.err");
}

CommandResult Daemon::cli(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {VIGIL_BINARY, "--socket", socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

nlohmann::json Daemon::status() const {
  auto r = cli({"status", "--json"});
  if (r.code != 0) return nlohmann::json::array();
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json::array() : j;
}

nlohmann::json Daemon::daemon_info() const {
  std::string error;
  auto r = vigil::control_request(socket(), {{"cmd", "status"}}, error);
  if (!r || !r->is_object() || !r->contains("daemon")) return nullptr;
  return (*r)["daemon"];
}

nlohmann::json Daemon::watch(const std::string& name) const {
  for (const auto& w : status())
    if (w["name"] == name) return w;
  return nullptr;
}

pid_t Daemon::watch_pid(const std::string& name) const {
  auto w = watch(name);
  return w.is_object() && w["pid"].is_number() ? w["pid"].get<pid_t>() : 0;
}

std::string Daemon::watch_state(const std::string& name) const {
  auto w = watch(name);
  return w.is_object() ? w["state"].get<std::string>() : "";
}

nlohmann::json Daemon::all_events(int n) const {
  auto r = cli({"events", "-n", std::to_string(n), "--json"});
  if (r.code != 0) return nlohmann::json::array();
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_array() ? j : nlohmann::json::array();
}

nlohmann::json Daemon::events(int n) const {
  nlohmann::json out = nlohmann::json::array();
  for (auto& e : all_events(n))
    if (!e.contains("seq") || !e["seq"].is_number_unsigned() ||
        e["seq"].get<uint64_t>() > run_from_seq_)
      out.push_back(std::move(e));
  return out;
}

int Daemon::count_events(const std::string& id, const std::string& watch) const {
  int n = 0;
  for (const auto& e : events())
    if (e["id"] == id && (watch.empty() || e["watch"] == watch)) ++n;
  return n;
}

nlohmann::json Daemon::last_event(const std::string& id, const std::string& watch) const {
  nlohmann::json found;
  for (const auto& e : events())
    if (e["id"] == id && (watch.empty() || e["watch"] == watch)) found = e;
  return found;
}

bool Daemon::wait_event(const std::string& id, const std::string& watch, int at_least,
                        std::chrono::milliseconds timeout) const {
  return wait_for([&] { return count_events(id, watch) >= at_least; }, timeout);
}

BlockedProcess::BlockedProcess(const std::string& name, bool now) {
  int go[2], ready[2];
  if (pipe(go) != 0 || pipe(ready) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_NAME, name.c_str());
    close(go[1]);
    close(ready[0]);
    char c;
    if (!now && read(go[0], &c, 1) != 1) _exit(1);  // asleep (S) until block()
    if (vfork() == 0) {
      ssize_t ignored = write(ready[1], "x", 1);
      (void)ignored;
      pause();
      _exit(0);
    }
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  go_ = go[1];
  ready_ = ready[0];
  if (now) block();
}

bool BlockedProcess::block() {
  if (blocked_) return true;
  if (pid_ <= 0) return false;
  char c = 'x';
  ssize_t sent = write(go_, &c, 1);  // (unread when it blocked at once)
  (void)sent;
  blocked_ = read(ready_, &c, 1) == 1;
  return blocked_;
}

BlockedProcess::~BlockedProcess() {
  if (pid_ > 0) {
    vigil::ProcReader r;
    std::vector<pid_t> kids = r.children(pid_);
    for (pid_t kid : kids) kill(kid, SIGKILL);  // the vfork child releases the parent
    kill(pid_, SIGKILL);
    reap(pid_);
    for (pid_t kid : kids) reap(kid);  // reparented to the test
  }
  if (go_ >= 0) close(go_);
  if (ready_ >= 0) close(ready_);
}

std::string http_command(std::string json_request) {
  if (json_request.ends_with('\n')) json_request.pop_back();
  return "POST /v1/command HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\nContent-Length: " +
         std::to_string(json_request.size()) + "\r\n\r\n" + json_request;
}

std::string http_body(const std::string& raw_reply) {
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_body = [](http_parser* p, const char* at, size_t n) {
    static_cast<std::string*>(p->data)->append(at, n);
    return 0;
  };
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  std::string body;
  parser.data = &body;
  http_parser_execute(&parser, &settings, raw_reply.data(), raw_reply.size());
  http_parser_execute(&parser, &settings, nullptr, 0);
  return body;
}

}  // namespace vigil::test

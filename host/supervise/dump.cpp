#include "host/supervise/dump.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include "host/core/clock.hpp"
#include "host/core/fd.hpp"
#include "host/core/strings.hpp"
#include "host/proc/proc_files.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

bool DumpWriter::put(const std::string& name, std::string_view data) {
  size_t n = std::min<uint64_t>(data.size(), left_);
  bool cut = n < data.size();
  std::string path = dir_ + "/" + name;
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    note_error(name + ": " + errno_text(errno));
    return false;
  }
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd.get(), data.data() + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      note_error(name + ": " + errno_text(errno));
      files_.push_back({name, done, true});
      bytes_ += done;
      left_ -= done;
      return false;
    }
    done += static_cast<size_t>(w);
  }
  files_.push_back({name, n, cut});
  bytes_ += n;
  left_ -= n;
  if (cut) note_error(name + ": cut at the dump's size budget");
  return true;
}

std::string DumpWriter::manifest() const {
  std::string out;
  for (const auto& f : files_)
    out += f.name + " " + std::to_string(f.bytes) + (f.cut ? " cut" : "") + "\n";
  for (const auto& e : errors_) out += "error: " + e + "\n";
  return out;
}

std::string tail_lines(const std::string& path, int lines) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() || lines <= 0) return {};
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return {};
  off_t size = st.st_size, from = std::max<off_t>(0, size - (256 << 10));
  std::string buf(static_cast<size_t>(size - from), '\0');
  ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), from);
  if (n <= 0) return {};
  buf.resize(static_cast<size_t>(n));
  // Back from the end (a final newline ends the last line, it does not
  // start an empty one) to the newline before the first line kept.
  size_t pos = buf.size() - (buf.back() == '\n' ? 1 : 0);
  for (int found = 0; pos > 0;) {
    size_t nl = buf.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    if (++found == lines) {
      pos = nl + 1;
      break;
    }
    pos = nl;
  }
  return buf.substr(pos);
}

bool read_proc_all(pid_t pid, const char* name, std::string& out, size_t cap) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  out.clear();
  char buf[16384];
  while (out.size() < cap) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return !out.empty();
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(std::min<size_t>(n, cap - out.size())));
  }
  return true;
}

std::string describe_fds(pid_t pid) {
  static const char* kStates[] = {"?",          "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                  "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                  "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
  std::map<uint64_t, TcpSocket> tcp;
  std::string table;
  for (const char* t : {"net/tcp", "net/tcp6"})
    if (read_proc_all(pid, t, table, 8u << 20))
      parse_tcp_table(table, [&](const TcpSocket& s) { tcp[s.inode] = s; });
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
  DIR* d = opendir(dir);
  if (!d) return "cannot list " + std::string(dir) + ": " + errno_text(errno) + "\n";
  std::vector<std::pair<int, std::string>> fds;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char link[4096];
    std::string p = std::string(dir) + "/" + e->d_name;
    ssize_t n = readlink(p.c_str(), link, sizeof link - 1);
    std::string target = n > 0 ? std::string(link, static_cast<size_t>(n)) : "?";
    if (auto inode = socket_link_inode(target)) {
      if (auto it = tcp.find(*inode); it != tcp.end()) {
        const TcpSocket& s = it->second;
        target += " tcp " + std::string(s.state > 0 && s.state < 12 ? kStates[s.state] : "?") +
                  " port " + std::to_string(s.local_port);
        if (s.state == kTcpListen) target += " backlog " + std::to_string(s.rx_queue);
      }
    }
    fds.emplace_back(atoi(e->d_name), std::move(target));
  }
  closedir(d);
  std::sort(fds.begin(), fds.end());
  std::string out;
  for (const auto& [fd, target] : fds) out += std::to_string(fd) + " -> " + target + "\n";
  return out;
}

void prune_dumps(const std::string& dir, int keep) {
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_directory(ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max(keep, 1)) < names.size(); ++i)
    std::filesystem::remove_all(dir + "/" + names[i], ec);
}

// Supervisor::dump: the bundle for one unit.

std::optional<std::string> Supervisor::dump(Unit& u, const nlohmann::json& trigger,
                                            const DumpOptions& o, std::string& error) {
  if (dump_dir_.empty()) {
    error = "no state directory for dumps";
    return std::nullopt;
  }
  // STATE/dumps/WATCH/2026-11-23T09-12-00.123Z: names sort by time.
  std::string stamp = rfc3339(wall_seconds(), true);
  std::replace(stamp.begin(), stamp.end(), ':', '-');
  std::string watch_dir = dump_dir_ + "/" + u.name;
  std::string dir = watch_dir + "/" + stamp;
  std::error_code ec;
  for (int i = 2; std::filesystem::exists(dir, ec); ++i)
    dir = watch_dir + "/" + stamp + "." + std::to_string(i);
  if (!std::filesystem::create_directories(dir, ec)) {
    error = "cannot create " + dir + ": " + ec.message();
    log_.emit(Msg::DumpFailed, u.name, {{"error", error}});
    return std::nullopt;
  }
  DumpWriter w(dir, o.max_bytes);
  nlohmann::json event = {{"trigger", trigger}, {"watch", u.to_json()}};
  w.put("event.json", event.dump(2) + "\n");
  pid_t pid = u.child && !u.child->failure ? u.child->pid : 0;
  if (pid) {
    std::string text;
    for (const char* f : {"status", "stat", "limits", "io", "wchan", "stack", "maps", "cmdline"}) {
      if (!read_proc_all(pid, f, text, o.max_bytes)) {
        w.note_error(std::string("/proc/") + std::to_string(pid) + "/" + f + ": " +
                     errno_text(errno));
        continue;
      }
      if (std::string_view(f) == "cmdline") std::replace(text.begin(), text.end(), '\0', ' ');
      w.put(std::string("proc.") + f, text);
    }
    if (o.environ && read_proc_all(pid, "environ", text, o.max_bytes)) {
      std::replace(text.begin(), text.end(), '\0', '\n');
      w.put("proc.environ", text);
    }
    w.put("fds.txt", describe_fds(pid));
  } else if (u.kind() == Unit::Kind::Members) {
    std::string list;
    for (const auto& [mpid, start] : u.m->members) {
      auto cmd = reader_.cmdline(mpid);
      list += std::to_string(mpid) + " " + std::to_string(start) + " " +
              (cmd ? std::string(*cmd) : std::string("?")) + "\n";
    }
    w.put("members.txt", list);
  }
  for (auto [log, name] : {std::pair{&u.out, "stdout.tail"}, std::pair{&u.err, "stderr.tail"}})
    if (!log->path().empty()) w.put(name, tail_lines(log->path(), o.lines));

  // A container: the engine's inspect output (the last one, taken when
  // its process was adopted) now, and its last log lines once the engine
  // answers (pending, like a command's output).
  std::vector<std::string> pending;
  if (u.ct) {
    if (u.ct->info.inspected && !u.ct->info.raw.is_null())
      w.put("container.inspect.json", u.ct->info.raw.dump(2) + "\n");
    else
      w.note_error("container.inspect.json: the watch has not inspected a container");
    if (containers_ && !u.ct->id.empty()) {
      pending.push_back("container.log");
      std::string path = dir + "/container.log";
      containers_->logs(u.ct->id, o.lines > 0 ? o.lines : 100,
                        [path, cap = o.max_bytes](const std::string& err, const std::string& text) {
                          std::string body = err.empty() ? text : "(the engine: " + err + ")\n";
                          if (body.size() > cap) body.resize(cap);
                          Fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
                          if (f.valid()) (void)!::write(f.get(), body.data(), body.size());
                        });
    }
  }

  // What runs on: the rules' commands and the core image.
  auto run_into = [&](const std::string& name, const std::vector<std::string>& argv,
                      double timeout) {
    std::string path = dir + "/" + name;
    Fd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    std::string err;
    auto started =
        out.valid()
            ? run_command(
                  argv, {{"VIGIL_WATCH", u.name}, {"VIGIL_PID", std::to_string(pid)}}, timeout,
                  [path, cap = o.max_bytes](const ExitStatus&, bool) {
                    // Its output counts against nothing
                    // else; cut it at the budget.
                    struct stat st;
                    if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) > cap)
                      (void)::truncate(path.c_str(), static_cast<off_t>(cap));
                  },
                  err, true, out.get())
            : std::nullopt;
    if (!out.valid()) err = errno_text(errno);
    if (started)
      pending.push_back(name);
    else
      w.note_error(name + ": " + err);
  };
  for (const auto& item : o.extra) {
    if (!item.file.empty()) {
      std::string text;
      Fd f(::open(item.file.c_str(), O_RDONLY | O_CLOEXEC));
      if (!f.valid()) {
        w.note_error(item.name + ": " + item.file + ": " + errno_text(errno));
        continue;
      }
      char buf[16384];
      ssize_t n;
      while (text.size() < o.max_bytes && (n = ::read(f.get(), buf, sizeof buf)) > 0)
        text.append(buf, static_cast<size_t>(n));
      w.put(item.name, text);
    } else if (!item.command.empty()) {
      run_into(item.name, item.command, o.command_timeout);
    }
  }
  if (o.core && pid) {
    // gcore -o PREFIX PID writes PREFIX.PID; it needs gdb installed.
    std::string err;
    auto started = run_command({"gcore", "-o", dir + "/core", std::to_string(pid)}, {},
                               std::max(o.command_timeout, 60.0), {}, err);
    if (started)
      pending.push_back("core." + std::to_string(pid));
    else
      w.note_error("core: gcore: " + err);
  }
  w.put("manifest.txt", w.manifest());
  prune_dumps(watch_dir, o.keep);
  if (w.files() <= 1 && !w.errors().empty()) {
    error = w.errors().front();
    log_.emit(Msg::DumpFailed, u.name, {{"error", error}, {"path", dir}});
    return std::nullopt;
  }
  nlohmann::json fields = {{"path", dir}, {"files", w.files()}, {"bytes", w.bytes()}};
  if (!pending.empty()) fields["pending"] = join(pending, ", ");
  if (!w.errors().empty()) fields["errors"] = w.errors();
  log_.emit(Msg::DumpWritten, u.name, std::move(fields));
  return dir;
}

}  // namespace vigil

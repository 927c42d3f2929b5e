#include "host/proc/discover_scan.hpp"

#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>

#include "host/proc/proc_scan.hpp"

namespace vigil {

namespace {

// The inode of a namespace link ("net:[4026531840]"); 0 when unreadable.
uint64_t ns_inode(pid_t pid, const char* ns) {
  char path[64], link[64];
  snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, ns);
  ssize_t n = ::readlink(path, link, sizeof link - 1);
  if (n <= 0) return 0;
  std::string_view s(link, static_cast<size_t>(n));
  size_t open = s.find('[');
  if (open == std::string_view::npos) return 0;
  uint64_t ino = 0;
  std::from_chars(s.data() + open + 1, s.data() + s.size(), ino);
  return ino;
}

std::string read_link(pid_t pid, const char* name) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  char buf[4096];
  ssize_t n = ::readlink(path, buf, sizeof buf);
  if (n <= 0) return {};
  return std::string(buf, static_cast<size_t>(n));
}

// NUL-separated text into its parts.
void split_nul(std::string_view text, std::vector<std::string>& out) {
  out.clear();
  while (!text.empty()) {
    size_t z = text.find('\0');
    if (z == std::string_view::npos) z = text.size();
    out.emplace_back(text.substr(0, z));
    text.remove_prefix(std::min(text.size(), z + 1));
  }
}

// The first line "0::PATH" of /proc/PID/cgroup (cgroup v2), else the
// systemd hierarchy's (v1), else the first line's path.
std::string cgroup_path(std::string_view text) {
  std::string_view first, named;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    std::string_view ctl = line.substr(c1 + 1, c2 - c1 - 1);
    std::string_view path = line.substr(c2 + 1);
    if (ctl.empty()) return std::string(path);
    if (ctl == "name=systemd") named = path;
    if (first.empty()) first = path;
  }
  return std::string(named.empty() ? first : named);
}

void add_tcp(std::string_view text, const char* proto, bool udp, SocketTable& out) {
  parse_tcp_table(text, [&](const TcpSocket& s) {
    // udp sockets have no LISTEN state: a bound one (state 07 CLOSE) with
    // no remote end listens.
    if (udp ? s.state != 0x07 : s.state != kTcpListen) return;
    if (s.inode == 0) return;
    out[s.inode] = ListeningSocket{proto, s.local_port, {}};
  });
}

}  // namespace

void classify_cgroup(std::string_view path, std::string& unit, std::string& scope) {
  unit.clear();
  scope.clear();
  // The innermost *.service or *.scope component names it.
  while (!path.empty()) {
    size_t slash = path.rfind('/');
    std::string_view part = path.substr(slash == std::string_view::npos ? 0 : slash + 1);
    if (part.ends_with(".service") && unit.empty() && scope.empty()) {
      unit = part;
      return;
    }
    if (part.ends_with(".scope") && part.starts_with("session-")) {
      scope = part;
      return;
    }
    if (slash == std::string_view::npos) break;
    path = path.substr(0, slash);
  }
}

bool parse_unix_listeners(std::string_view text, SocketTable& out) {
  // "Num RefCount Protocol Flags Type St Inode Path"
  size_t nl = text.find('\n');
  if (nl == std::string_view::npos) return text.empty();
  text.remove_prefix(nl + 1);
  while (!text.empty()) {
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    std::vector<std::string_view> f;
    size_t at = 0;
    while (at < line.size() && f.size() < 7) {
      while (at < line.size() && line[at] == ' ') ++at;
      size_t end = line.find(' ', at);
      if (end == std::string_view::npos) end = line.size();
      if (end > at) f.push_back(line.substr(at, end - at));
      at = end;
    }
    if (f.size() < 7) continue;
    unsigned flags = 0;
    uint64_t inode = 0;
    if (std::from_chars(f[3].data(), f[3].data() + f[3].size(), flags, 16).ec != std::errc() ||
        std::from_chars(f[6].data(), f[6].data() + f[6].size(), inode).ec != std::errc())
      return false;
    if (!(flags & 0x10000) || inode == 0) continue;  // __SO_ACCEPTCON: listening
    while (at < line.size() && line[at] == ' ') ++at;
    out[inode] = ListeningSocket{"unix", 0, std::string(line.substr(at))};
  }
  return true;
}

const SocketTable& DiscoverScanner::tables_of(pid_t pid, uint64_t netns) {
  auto [it, fresh] = tables_.try_emplace(netns);
  if (!fresh) return it->second;
  // Read through this process: /proc/PID/net is its namespace's view.
  for (auto [name, udp] : {std::pair{"net/tcp", false}, {"net/tcp6", false}, {"net/udp", true},
                           {"net/udp6", true}})
    if (auto text = reader_.read(pid, name)) add_tcp(*text, name + 4, udp, it->second);
  if (auto text = reader_.read(pid, "net/unix")) parse_unix_listeners(*text, it->second);
  return it->second;
}

namespace {
// Seconds on the boot clock (start_time counts on it, suspend included).
double boot_now() {
  timespec boot{};
  clock_gettime(CLOCK_BOOTTIME, &boot);
  return static_cast<double>(boot.tv_sec) + static_cast<double>(boot.tv_nsec) / 1e9;
}
}  // namespace

bool DiscoverScanner::read_one(pid_t pid, const ScanOptions& o, double now, DiscoveredProcess& p) {
  ProcStat st;
  if (!reader_.stat(pid, st) || st.kernel_thread()) return false;
  static const long hz = sysconf(_SC_CLK_TCK);
  p.pid = st.pid;
  p.ppid = st.ppid;
  p.pgrp = st.pgrp;
  p.session = st.session;
  p.tty_nr = st.tty_nr;
  p.state = st.state;
  p.start_time = st.start_time;
  p.age = std::max(0.0, now - static_cast<double>(st.start_time) / static_cast<double>(hz));
  p.comm = st.comm;
  if (auto s = reader_.status(pid)) p.uid = s->uid;
  if (auto e = reader_.exe(pid)) p.exe = *e;
  if (auto c = reader_.read(pid, "cmdline")) split_nul(*c, p.argv);
  if (auto c = reader_.read(pid, "cgroup")) {
    p.cgroup = cgroup_path(*c);
    classify_cgroup(p.cgroup, p.unit, p.scope);
  }
  p.netns = ns_inode(pid, "net");
  p.pidns = ns_inode(pid, "pid");
  if (o.sockets && p.netns && reader_.socket_inodes(pid, inodes_) && !inodes_.empty()) {
    const SocketTable& t = tables_of(pid, p.netns);
    for (uint64_t ino : inodes_)
      if (auto it = t.find(ino); it != t.end()) p.listening.push_back(it->second);
  }
  if (o.details) {
    p.cwd = read_link(pid, "cwd");
    if (auto e = reader_.read(pid, "environ")) split_nul(*e, p.environ);
    if (auto l = reader_.read(pid, "limits")) p.nofile = parse_nofile_limit(*l);
  }
  return true;
}

std::vector<DiscoveredProcess> DiscoverScanner::scan(const ScanOptions& o, ScanStats* stats) {
  tables_.clear();
  std::vector<DiscoveredProcess> out;
  PidIterator pids;
  double now = boot_now();
  while (auto pid = pids.next()) {
    if (o.cancel && o.cancel->load(std::memory_order_relaxed)) break;
    DiscoveredProcess p;
    if (read_one(*pid, o, now, p)) out.push_back(std::move(p));
  }
  if (stats) {
    stats->processes = out.size();
    stats->namespaces = tables_.size();
  }
  return out;
}

std::optional<DiscoveredProcess> DiscoverScanner::one(pid_t pid) {
  ScanOptions o;
  o.sockets = false;  // a socket table per process would cost a scan's worth
  DiscoveredProcess p;
  if (!read_one(pid, o, boot_now(), p)) return std::nullopt;
  return p;
}

void DiscoverWindow::add(std::vector<DiscoveredProcess> scan, int index) {
  for (auto& p : scan) {
    Seen& s = seen_[{p.pid, p.start_time}];
    if (s.seen == 0) s.first = index;
    s.last = index;
    ++s.seen;
    s.latest = std::move(p);
  }
}

bool DiscoverWindow::add_between(DiscoveredProcess p, int after) {
  auto [it, made] = seen_.try_emplace({p.pid, p.start_time});
  if (!made) return false;  // a scan saw it, or an earlier exec of it
  it->second.first = it->second.last = after;
  it->second.latest = std::move(p);
  return true;
}

nlohmann::json DiscoverWindow::processes() const {
  nlohmann::json procs = nlohmann::json::array();
  for (const auto& [id, s] : seen_) {
    nlohmann::json j = s.latest.to_json();
    j["first"] = s.first;
    j["last"] = s.last;
    j["seen"] = s.seen;
    procs.push_back(std::move(j));
  }
  return procs;
}

nlohmann::json discover_init_scripts(const std::string& dir) {
  nlohmann::json out = nlohmann::json::array();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::string path = dir + "/" + n;
    std::ifstream in(path);
    if (!in) continue;
    std::string text(64 * 1024, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    out.push_back({{"path", path}, {"text", text}});
  }
  return out;
}

bool systemd_is_init() {
  std::ifstream in("/proc/1/comm");
  std::string comm;
  std::getline(in, comm);
  return comm == "systemd";
}

void discover_lists_as_lists(nlohmann::json& candidates) {
  if (!candidates.is_array()) {
    candidates = nlohmann::json::array();
    return;
  }
  for (auto& c : candidates)
    for (nlohmann::json* l : {&c["listening"], &c["process"]["listening"], &c["reasons"]})
      if (l->is_object() && l->empty()) *l = nlohmann::json::array();
}

nlohmann::json DiscoveredProcess::to_json() const {
  nlohmann::json j = {{"pid", pid},
                      {"ppid", ppid},
                      {"pgrp", pgrp},
                      {"session", session},
                      {"tty", tty_nr},
                      {"state", std::string(1, state)},
                      {"start_time", start_time},
                      {"age", age},
                      {"uid", uid},
                      {"comm", comm},
                      {"exe", exe},
                      {"argv", argv},
                      {"cgroup", cgroup},
                      {"unit", unit},
                      {"scope", scope},
                      {"netns", netns},
                      {"pidns", pidns}};
  nlohmann::json l = nlohmann::json::array();
  for (const auto& s : listening) {
    nlohmann::json e = {{"proto", s.proto}};
    if (s.proto == "unix")
      e["path"] = s.path;
    else
      e["port"] = s.port;
    l.push_back(std::move(e));
  }
  j["listening"] = std::move(l);
  if (!cwd.empty()) j["cwd"] = cwd;
  if (!environ.empty()) j["environ"] = environ;
  if (nofile) j["nofile"] = nofile;
  return j;
}

}  // namespace vigil

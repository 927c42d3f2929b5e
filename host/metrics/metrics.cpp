#include "host/metrics/metrics.hpp"

#include <algorithm>

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {

const double kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

double boot_seconds() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

Fd open_proc(pid_t pid, const char* name, int flags = O_RDONLY) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  return Fd(::open(path, flags | O_CLOEXEC));
}

// A counter's growth since the last sample (0 if it went backwards,
// which a process's own counters never do).
uint64_t grown(uint64_t now, uint64_t before) {
  return now >= before ? now - before : 0;
}

}  // namespace

Metrics::Metrics(EventLoop& loop, EventLog& log, Supervisor& supervisor, MetricsOptions options)
    : loop_(loop), log_(log), supervisor_(supervisor), options_(std::move(options)) {}

Metrics::~Metrics() {
  if (timer_) loop_.cancel(timer_);
}

void Metrics::start() {
  if (options_.csv) {
    csv_ = std::make_unique<CsvWriter>(
        CsvWriter::Options{options_.csv_dir, options_.csv_max_bytes, options_.csv_keep},
        [this](const std::string& path, const std::string& error) {
          log_.emit(Msg::MetricsWriteFailed, "", {{"path", path}, {"error", error}});
        },
        [this](const std::string& path, uint64_t dropped) {
          log_.emit(Msg::MetricsWriteRecovered, "", {{"path", path}, {"dropped", dropped}});
        });
  }
  std::string listen_text = "off";
  if (!options_.listen.empty()) {
    ListenAddress a;
    std::string error;
    http_ = std::make_unique<HttpEndpoint>(loop_, [this] { return prometheus(); });
    if (!parse_listen_address(options_.listen, a, error) || !http_->listen(a, error)) {
      log_.emit(Msg::MetricsListenFailed, "", {{"address", options_.listen}, {"error", error}});
      http_.reset();
    } else {
      listen_text = "http://" + a.text() + "/metrics";
    }
  }
  log_.emit(Msg::MetricsStarted, "",
            {{"interval", options_.interval},
             {"csv", options_.csv ? options_.csv_dir : "off"},
             {"listen", listen_text}});
  pass_start_ = MonoClock::now();
  begin_pass();
}

void Metrics::schedule() {
  MonoTime next = pass_start_ + from_seconds(options_.interval);
  MonoTime now = MonoClock::now();
  if (next < now) next = now + from_seconds(options_.interval);  // fell behind: skip, not burst
  pass_start_ = next;
  timer_ = loop_.at(next, [this] {
    timer_ = 0;
    begin_pass();
  });
}

void Metrics::begin_pass() {
  queue_.clear();
  for (const auto& [name, u] : supervisor_.units()) queue_.push_back(name);
  for (auto& [name, t] : tracks_) t.alive = false;
  next_ = 0;
  slice();
}

void Metrics::slice() {
  constexpr size_t kSlice = 200;
  double cpu0 = thread_cpu_seconds();
  MonoTime now = MonoClock::now();
  double wall = wall_seconds();
  size_t end = std::min(queue_.size(), next_ + kSlice);
  for (; next_ < end; ++next_)
    if (const Unit* u = supervisor_.find(queue_[next_])) sample_unit(*u, now, wall);
  pass_cpu_ += thread_cpu_seconds() - cpu0;
  if (next_ < queue_.size()) {
    timer_ = loop_.after(Duration::zero(), [this] {
      timer_ = 0;
      slice();
    });
    return;
  }
  finish_pass();
}

void Metrics::finish_pass() {
  for (auto it = tracks_.begin(); it != tracks_.end();)
    it = it->second.alive ? std::next(it) : tracks_.erase(it);  // removed from the rules
  double cpu0 = thread_cpu_seconds();
  if (csv_ && row_count_ > 0) csv_->write(rows_, row_count_, time(nullptr));
  pass_cpu_ += thread_cpu_seconds() - cpu0;
  last_pass_cpu_ = pass_cpu_;
  total_cpu_ += pass_cpu_;
  pass_cpu_ = 0;
  ++passes_;
  rows_.clear();
  row_count_ = 0;
  last_pass_ = wall_seconds();
  schedule();
}

void Metrics::sample_unit(const Unit& u, MonoTime now, double wall) {
  Track& t = tracks_[u.name];
  t.alive = true;
  WatchSample& s = t.totals;
  s.watch = u.name;
  s.state = u.paused ? "paused" : unit_state_name(u.state);
  s.restarts = u.restarts;
  s.time = wall;
  s.pid = 0;
  s.processes = 0;
  s.cpu_user_percent = s.cpu_system_percent = 0;
  s.rss_bytes = s.vsz_bytes = 0;
  s.threads = 0;
  s.open_fds = 0;
  s.uptime = 0;

  // The processes of the unit now: its one process, or its members.
  struct Want {
    pid_t pid;
    uint64_t start_time;
  };
  Want one[1];
  std::vector<Want> many;
  const Want* want = one;
  size_t n = 0;
  if (u.kind() == Unit::Kind::Members) {
    many.reserve(u.m->members.size());
    for (const auto& [pid, st] : u.m->members) many.push_back({pid, st});
    want = many.data();
    n = many.size();
  } else if (u.child && u.child->pid > 0 && !u.child->failure) {
    one[0] = {u.child->pid, u.child->start_time};
    n = 1;
    s.pid = u.child->pid;
  }

  // Forget processes that are no longer the unit's (their fds close).
  if (t.procs.size() > n || (n == 1 && !t.procs.contains(want[0].pid))) {
    for (auto it = t.procs.begin(); it != t.procs.end();) {
      bool keep = false;
      for (size_t i = 0; i < n && !keep; ++i)
        keep = want[i].pid == it->first && want[i].start_time == it->second.start_time;
      it = keep ? std::next(it) : t.procs.erase(it);
    }
  }
  double boot = boot_seconds();
  bool fds_known = true;
  for (size_t i = 0; i < n; ++i) {
    auto [it, added] = t.procs.try_emplace(want[i].pid);
    Proc& p = it->second;
    if (!added && p.start_time != want[i].start_time && want[i].start_time != 0) {
      p = Proc{};  // the pid is another process now
      added = true;
    }
    if (added) p.start_time = want[i].start_time;
    if (!sample_proc(p, want[i].pid, now, s, boot)) {
      t.procs.erase(it);  // gone (its exit is being handled) or unreadable
      continue;
    }
    ++s.processes;
    if (s.open_fds < 0) fds_known = false;
  }
  if (!fds_known || s.processes == 0) s.open_fds = s.processes ? -1 : 0;
  s.up = s.processes > 0;
  if (!s.up) s.pid = 0;
  append_csv_row(rows_, s);
  ++row_count_;
  auto& h = t.history;
  if (h.empty() || s.time - h.back().time >= history_step() * 0.99)
    h.push_back({s.time, static_cast<float>(s.cpu_user_percent + s.cpu_system_percent),
                 static_cast<uint32_t>(std::min<uint64_t>(s.rss_bytes / 1024, UINT32_MAX)),
                 static_cast<int32_t>(std::clamp<int64_t>(s.open_fds, -1, INT32_MAX))});
  while (!h.empty() && h.front().time < s.time - kHistorySeconds) h.pop_front();
}

double Metrics::history_step() const { return std::max(options_.interval, 10.0); }

nlohmann::json Metrics::history(const std::string& watch) const {
  auto it = tracks_.find(watch);
  if (it == tracks_.end()) return nullptr;
  nlohmann::json points = nlohmann::json::array();
  for (const Point& p : it->second.history)
    points.push_back({p.time, p.cpu, static_cast<uint64_t>(p.rss_kib) * 1024, p.fds});
  return {{"watch", watch}, {"step", history_step()}, {"points", std::move(points)}};
}

// Reads one process and adds it to `s`; false when it is gone.
bool Metrics::sample_proc(Proc& p, pid_t pid, MonoTime now, WatchSample& s, double boot_now) {
  bool first_open = !p.stat;
  if (first_open) p.stat = open_proc(pid, "stat");
  if (!p.stat) return false;
  ProcStat st;
  if (!reader_.stat_at(p.stat.get(), st) || st.dead()) return false;
  if (p.start_time == 0) p.start_time = st.start_time;
  if (st.start_time != p.start_time) return false;  // not the process the unit knows
  if (first_open) {
    // Bound to the process whose stat line was just read: its start time
    // matched, and the supervisor holds it (pidfd, or an unreaped child).
    p.status = open_proc(pid, "status");
    p.io = open_proc(pid, "io");  // root, or the same user only
    p.fd_dir = open_proc(pid, "fd", O_PATH | O_DIRECTORY);
    p.schedstat = open_proc(pid, "schedstat");
  }
  // Not scheduled since the last sample: no context switch, no I/O.
  // (Only the main thread's runs are in /proc/PID/schedstat.)
  bool ran = true;
  if (p.schedstat && st.num_threads == 1) {
    if (auto text = reader_.read_at(p.schedstat.get())) {
      uint64_t runs = parse_schedstat_runs(*text);
      ran = !p.seen || runs != p.runs;
      p.runs = runs;
    }
  }

  double uptime = std::max(0.0, boot_now - static_cast<double>(st.start_time) / kTicks);
  if (s.processes == 0 || uptime > s.uptime) s.uptime = uptime;
  s.rss_bytes += static_cast<uint64_t>(std::max<int64_t>(0, st.rss_pages)) * kPage;
  s.vsz_bytes += st.vsize;
  s.threads += st.num_threads;

  // CPU: deltas since the last sample; a process seen for the first time
  // brings what it used since it started.
  uint64_t du = p.seen ? grown(st.utime, p.utime) : st.utime;
  uint64_t ds = p.seen ? grown(st.stime, p.stime) : st.stime;
  double span = p.seen ? to_seconds(now - p.at) : uptime;
  s.cpu_user_seconds += static_cast<double>(du) / kTicks;
  s.cpu_system_seconds += static_cast<double>(ds) / kTicks;
  if (span > 0) {
    s.cpu_user_percent += static_cast<double>(du) / kTicks / span * 100;
    s.cpu_system_percent += static_cast<double>(ds) / kTicks / span * 100;
  }
  p.utime = st.utime;
  p.stime = st.stime;

  if (p.status && ran) {
    if (auto text = reader_.read_at(p.status.get())) {
      if (uint64_t v, iv; parse_ctxt_switches(*text, v, iv)) {
        s.voluntary_ctxt += p.seen ? grown(v, p.vcs) : v;
        s.involuntary_ctxt += p.seen ? grown(iv, p.ivcs) : iv;
        p.vcs = v;
        p.ivcs = iv;
      }
    }
  }
  if (p.io && !ran) {
    s.io_known = s.io_known || p.io_ok;  // unchanged since it was read
  } else if (p.io) {
    if (auto text = reader_.read_at(p.io.get())) {
      if (auto io = parse_proc_io(*text)) {
        s.read_bytes += p.seen ? grown(io->read_bytes, p.read_bytes) : io->read_bytes;
        s.write_bytes += p.seen ? grown(io->write_bytes, p.write_bytes) : io->write_bytes;
        p.read_bytes = io->read_bytes;
        p.write_bytes = io->write_bytes;
        s.io_known = p.io_ok = true;
      }
    }
  }
  // Linux >= 6.2 gives the number of open fds as the size of
  // /proc/PID/fd; older kernels say 0, and then the directory is read.
  int64_t fds = p.fds;
  if (!ran && p.fds >= 0) {
    // unchanged: only the process itself opens and closes its files
  } else if (struct stat fst; p.fd_dir && fstat(p.fd_dir.get(), &fst) == 0 && fst.st_size > 0) {
    fds = fst.st_size;
  } else if (p.fd_dir) {
    fds = reader_.count_fds(pid);
  }
  p.fds = fds;
  if (fds < 0 || s.open_fds < 0)
    s.open_fds = -1;
  else
    s.open_fds += fds;
  p.at = now;
  p.seen = true;
  return true;
}

nlohmann::json Metrics::to_json() const {
  nlohmann::json watches = nlohmann::json::array();
  for (const auto& [name, t] : tracks_) watches.push_back(t.totals.to_json());
  return {{"interval", options_.interval},
          {"time", last_pass_ > 0 ? nlohmann::json(rfc3339(last_pass_, true)) : nullptr},
          {"csv", csv_ ? nlohmann::json(csv_->path()) : nullptr},
          {"listen", http_ ? nlohmann::json(http_->port()) : nullptr},
          {"passes", passes_},
          {"pass_cpu_seconds", last_pass_cpu_},
          {"cpu_seconds", total_cpu_},
          {"watches", std::move(watches)}};
}

std::string Metrics::prometheus() const {
  std::vector<WatchSample> samples;
  samples.reserve(tracks_.size());
  for (const auto& [name, t] : tracks_) samples.push_back(t.totals);
  return render_prometheus(samples);
}

}  // namespace vigil

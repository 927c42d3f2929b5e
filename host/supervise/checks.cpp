// Supervisor, part three: processes that are alive but not well. Every
// `checks.every` seconds the stat line of each watched process is read
// (one small read per process: steady state touches only watched pids)
// and a process stopped (T) or blocked in uninterruptible sleep (D) for
// longer than its threshold is reported, once per episode, and handed to
// the rules. Dead processes that linger as zombies because their parent
// does not reap them are reported too.
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "host/core/clock.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

namespace {

// Sampling::cond indexes.
enum Cond { kStopped, kBlocked, kCpu, kNoProgress, kFds, kCloseWait, kThreads, kRss, kRssGrowth };
const char* const kCondNames[] = {"stopped",    "blocked", "cpu", "no_progress", "fds",
                                  "close_wait", "threads", "rss", "rss_growth"};
const Msg kCondMsgs[] = {Msg::StateStopped, Msg::StateBlocked, Msg::CpuRunaway,
                         Msg::NoProgress,   Msg::FdsExhausted, Msg::CloseWaitSockets,
                         Msg::ThreadsOver,  Msg::RssOver,      Msg::RssGrowth};

}  // namespace

void Supervisor::schedule_checks() {
  double every = 0;
  for (const auto& [name, u] : units_)
    if (u->checks.enabled() && (every == 0 || u->checks.every < every)) every = u->checks.every;
  if (!zombies_.empty() && every == 0) every = 1;
  if (every == 0) {
    loop_.cancel(check_timer_);
    check_timer_ = 0;
    return;
  }
  if (check_timer_) return;
  check_timer_ = loop_.after(from_seconds(every), [this] {
    check_timer_ = 0;
    run_checks();
    schedule_checks();
  });
}

void Supervisor::run_checks() {
  MonoTime now = MonoClock::now();
  std::vector<std::string> names;
  for (const auto& [name, u] : units_)
    if (u->child && u->checks.enabled()) names.push_back(name);
  for (const auto& name : names)
    if (Unit* u = find(name); u && u->child) check_unit(*u, now);

  for (auto it = zombies_.begin(); it != zombies_.end();) {
    ProcStat st;
    if (!reader_.stat(it->pid, st) || st.start_time != it->start_time || st.state != 'Z') {
      it = zombies_.erase(it);  // reaped at last
      continue;
    }
    Unit* u = find(it->unit);
    double threshold = u ? u->checks.zombie : 10;
    if (threshold <= 0) {
      it = zombies_.erase(it);  // not wanted for this watch
      continue;
    }
    double age = to_seconds(now - it->since);
    if (age >= threshold) {
      nlohmann::json ev = {{"pid", it->pid},
                           {"ppid", st.ppid},
                           {"state", "zombie"},
                           {"for", age},
                           {"threshold", threshold}};
      log_.emit(Msg::ZombieUnreaped, it->unit, ev);
      if (u && policy_ && !u->paused) policy_->on_state(*u, ev);
      it = zombies_.erase(it);
      continue;
    }
    ++it;
  }
}

void Supervisor::check_unit(Unit& u, MonoTime now) {
  Unit::Child& c = *u.child;
  const StateChecks& k = u.checks;
  ProcStat st;
  bool read = c.stat_fd ? reader_.stat_at(c.stat_fd.get(), st) : reader_.stat(c.pid, st);
  if (!read || st.start_time != c.start_time) return;  // gone: its exit comes
  if (!c.sampling) c.sampling = std::make_unique<Sampling>();
  Sampling& s = *c.sampling;
  static const long ticks_per_s = sysconf(_SC_CLK_TCK);
  static const long page = sysconf(_SC_PAGESIZE);
  uint64_t ticks = st.utime + st.stime;
  double dt = s.primed ? to_seconds(now - s.at) : 0;
  double cpu_pct = dt > 0 ? static_cast<double>(ticks - s.cpu_ticks) /
                                static_cast<double>(ticks_per_s) / dt * 100
                          : 0;
  bool no_cpu = s.primed && ticks == s.cpu_ticks;
  uint64_t rss =
      static_cast<uint64_t>(std::max<int64_t>(0, st.rss_pages)) * static_cast<uint64_t>(page);

  // What each condition says now, with its figures for the event.
  struct Now {
    bool bad = false;
    double hold = 0;  // must last this long (0: at once)
    nlohmann::json fields = nlohmann::json::object();
  } now_[9];
  now_[kStopped] = {(st.state == 'T' || st.state == 't') && k.stopped > 0, k.stopped, {}};
  now_[kBlocked] = {st.state == 'D' && k.blocked > 0, k.blocked, {}};
  if (k.cpu_percent > 0 && s.primed)
    now_[kCpu] = {cpu_pct >= k.cpu_percent,
                  k.cpu_for,
                  {{"percent", std::round(cpu_pct)}, {"limit", k.cpu_percent}}};
  if (k.sockets()) {
    // Which sockets are its own, then their states from its network
    // namespace's tables.
    std::vector<uint64_t> inodes;
    uint64_t backlog = 0, close_wait = 0;
    unsigned port = 0;
    if (reader_.socket_inodes(c.pid, inodes) && !inodes.empty()) {
      for (const char* table : {"net/tcp", "net/tcp6"}) {
        auto text = reader_.read(c.pid, table);
        if (!text) continue;
        parse_tcp_table(*text, [&](const TcpSocket& t) {
          if (!std::binary_search(inodes.begin(), inodes.end(), t.inode)) return;
          if (t.state == kTcpListen && t.rx_queue > backlog)
            backlog = t.rx_queue, port = t.local_port;
          if (t.state == kTcpCloseWait) ++close_wait;
        });
      }
    }
    if (k.no_progress > 0 && s.primed)
      now_[kNoProgress] = {
          backlog > 0 && no_cpu, k.no_progress, {{"backlog", backlog}, {"port", port}}};
    if (k.close_wait > 0)
      now_[kCloseWait] = {static_cast<int64_t>(close_wait) > k.close_wait,
                          0,
                          {{"count", close_wait}, {"limit", k.close_wait}}};
  }
  if (k.fds > 0) {
    // Read at every sample: a program may lower its own limit at any
    // time (a cached higher one would hide the exhaustion).
    if (auto lim = reader_.read(c.pid, "limits")) s.nofile = parse_nofile_limit(*lim);
    int open = reader_.count_fds(c.pid);
    if (s.nofile > 0 && open >= 0)
      now_[kFds] = {static_cast<double>(open) >= k.fds * static_cast<double>(s.nofile),
                    0,
                    {{"count", open}, {"limit", s.nofile}}};
  }
  if (k.threads > 0)
    now_[kThreads] = {
        st.num_threads > k.threads, 0, {{"count", st.num_threads}, {"limit", k.threads}}};
  if (k.rss > 0) now_[kRss] = {rss > k.rss, 0, {{"rss", rss}, {"limit", k.rss}}};
  if (k.rss_growth > 0) {
    s.rss.emplace_back(now, rss);
    while (s.rss.size() > 2 && to_seconds(now - s.rss[1].first) >= 60) s.rss.erase(s.rss.begin());
    double span = to_seconds(now - s.rss.front().first);
    if (span >= 30) {  // a rate over at least half a minute
      double per_min =
          (static_cast<double>(rss) - static_cast<double>(s.rss.front().second)) / span * 60;
      now_[kRssGrowth] = {per_min > static_cast<double>(k.rss_growth),
                          0,
                          {{"per_minute", std::llround(per_min)}, {"limit", k.rss_growth}}};
    }
  }
  s.cpu_ticks = ticks;
  s.at = now;
  s.primed = true;

  for (int i = 0; i < 9; ++i) {
    Sampling::Condition& cd = s.cond[i];
    const Now& n = now_[i];
    if (n.bad != cd.bad) {
      if (!n.bad && cd.reported)
        log_.emit(Msg::StateCleared, u.name,
                  {{"pid", c.pid}, {"was", kCondNames[i]}, {"state", std::string(1, st.state)}});
      cd.bad = n.bad;
      cd.since = now;
      cd.reported = false;
    }
    if (!cd.bad || cd.reported) continue;
    double age = to_seconds(now - cd.since);
    if (age < n.hold) continue;
    cd.reported = true;
    nlohmann::json ev = n.fields;
    ev["pid"] = c.pid;
    ev["state"] = kCondNames[i];
    ev["for"] = age;
    if (n.hold > 0) ev["threshold"] = n.hold;
    if (i == kBlocked) {
      // Where in the kernel it waits: the operator's first clue.
      if (auto w = reader_.read(c.pid, "wchan")) ev["wchan"] = std::string(*w);
    }
    log_.emit(kCondMsgs[i], u.name, ev);
    if (policy_ && !u.paused) policy_->on_state(u, ev);
    if (!u.child || u.child->pid != ev["pid"]) return;  // the rules acted on it
  }
}

void Supervisor::watch_zombie(const std::string& name, pid_t pid, uint64_t start_time, pid_t ppid) {
  zombies_.push_back({name, pid, start_time, ppid, MonoClock::now()});
  schedule_checks();
}

}  // namespace vigil

// Supervisor, part three: processes that are alive but not well. Every
// `checks.every` seconds the stat line of each watched process is read
// (one small read per process: steady state touches only watched pids)
// and a process stopped (T) or blocked in uninterruptible sleep (D) for
// longer than its threshold is reported, once per episode, and handed to
// the rules. Dead processes that linger as zombies because their parent
// does not reap them are reported too.
#include <sys/resource.h>
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

nlohmann::json Supervisor::checks_json(const Unit& u) const {
  const StateChecks& k = u.checks;
  const double limits[] = {k.stopped,
                           k.blocked,
                           k.cpu_percent,
                           k.no_progress,
                           k.fds,
                           static_cast<double>(k.close_wait),
                           static_cast<double>(k.threads),
                           static_cast<double>(k.rss),
                           static_cast<double>(k.rss_growth)};
  nlohmann::json j = {{"every", k.every}, {"zombie", k.zombie}};
  // How often a healthy process is sampled (next_sample): `every` only
  // for the figure checks; the state checks alone, half their threshold.
  double healthy = k.healthy_period(u.child && !u.child->adopted && reaper_.has_stop_handler());
  j["healthy_every"] = healthy > 0 ? nlohmann::json(healthy) : nlohmann::json(nullptr);
  const Sampling* s = u.child ? u.child->sampling.get() : nullptr;
  j["sampled"] = s && s->primed ? nlohmann::json(to_seconds(MonoClock::now() - s->at))
                                : nlohmann::json(nullptr);  // seconds ago
  nlohmann::json list = nlohmann::json::array();
  for (int i = 0; i < 9; ++i) {
    if (!(limits[i] > 0) || !(k.every > 0)) continue;
    nlohmann::json c = {{"check", kCondNames[i]}, {"threshold", limits[i]}};
    if (i == kCpu) c["for"] = k.cpu_for;
    if (s && s->primed) {
      c["bad"] = s->cond[i].bad;
      if (s->cond[i].bad) c["for_seconds"] = to_seconds(MonoClock::now() - s->cond[i].since);
      c["reported"] = s->cond[i].reported;
    }
    list.push_back(std::move(c));
  }
  j["checks"] = std::move(list);
  return j;
}

// When u's process is next due for a sample; nullopt when it is not
// sampled. Not sampled yet: after `every`. Something bad seen: every
// `every`, to follow it. Else at its healthy period (the default state
// checks alone: half the shortest threshold; none at all for the
// stopped check alone of vigil's own child, whose stops the kernel
// reports).
std::optional<MonoTime> Supervisor::next_sample(const Unit& u, MonoTime now) const {
  if (!u.child || !u.checks.sampled()) return std::nullopt;
  const Sampling* s = u.child->sampling.get();
  bool bad = s && std::any_of(std::begin(s->cond), std::end(s->cond),
                              [](const Sampling::Condition& c) { return c.bad; });
  if (bad) {
    // A stop or block not reported yet is looked at again when it has
    // lasted its threshold, if that comes before the next `every`.
    MonoTime due = s->at + from_seconds(u.checks.every);
    const double holds[] = {u.checks.stopped, u.checks.blocked};  // kStopped, kBlocked
    for (int i : {kStopped, kBlocked})
      if (s->cond[i].bad && !s->cond[i].reported)
        due = std::min(due, s->cond[i].since + from_seconds(holds[i]));
    return due;
  }
  double period = u.checks.healthy_period(!u.child->adopted && reaper_.has_stop_handler());
  if (period <= 0) return std::nullopt;
  if (!s || !s->primed) return now + from_seconds(u.checks.every);
  return s->at + from_seconds(period);
}

// The kernel says one of vigil's children stopped or continued: sampled
// now (from the loop), so a stop is timed from its start and a continue
// clears it, without polling.
void Supervisor::on_child_stop(pid_t pid) {
  for (const auto& [name, u] : units_) {
    if (!u->child || u->child->adopted || u->child->pid != pid) continue;
    if (!u->checks.sampled()) return;
    defer([this, name = name, pid] {
      Unit* unit = find(name);
      if (!unit || !unit->child || unit->child->pid != pid || !unit->checks.sampled()) return;
      check_unit(*unit, MonoClock::now());
      schedule_checks();
    });
    return;
  }
}

// One timer for every watch's checks, set for the first process due: an
// idle vigil whose watches have only the default checks wakes up once
// per half threshold (15 s), not every 5 s, and not at all without
// processes to sample.
void Supervisor::schedule_checks() {
  if (!check_queue_.empty() && check_next_ < check_queue_.size()) return;  // a pass runs
  MonoTime now = MonoClock::now();
  // Stops of vigil's children are reported by the kernel while a watch
  // checks for them (its SIGCHLD, CLD_STOPPED).
  bool stops = std::any_of(units_.begin(), units_.end(), [](const auto& kv) {
    return kv.second->checks.sampled() && kv.second->checks.stopped > 0;
  });
  if (stops != reaper_.has_stop_handler()) {
    if (stops)
      reaper_.set_stop_handler([this](pid_t pid) { on_child_stop(pid); });
    else
      reaper_.set_stop_handler({});
  }
  bool any = false;
  MonoTime earliest{};
  for (const auto& [name, u] : units_) {
    auto at = next_sample(*u, now);
    if (at && (!any || *at < earliest)) earliest = *at;
    any = any || at.has_value();
  }
  std::optional<MonoTime> first;
  if (any) first = earliest;
  if (!zombies_.empty() && (!first || *first > now + std::chrono::seconds(1)))
    first = now + std::chrono::seconds(1);
  if (!first) {
    loop_.cancel(check_timer_);
    check_timer_ = 0;
    return;
  }
  // A timer already due as soon or sooner stays.
  if (check_timer_ && check_at_ <= *first) return;
  loop_.cancel(check_timer_);
  check_at_ = std::max(*first, now);
  check_timer_ = loop_.at(check_at_, [this] {
    check_timer_ = 0;
    run_checks();
  });
}

// A process came up: its first sample is due after `every`, sooner than
// the timer may be set for.
void Supervisor::check_soon(const Unit& u) {
  if (!next_sample(u, MonoClock::now()) ||
      (!check_queue_.empty() && check_next_ < check_queue_.size()))
    return;
  MonoTime at = MonoClock::now() + from_seconds(u.checks.every);
  if (check_timer_ && check_at_ <= at) return;
  loop_.cancel(check_timer_);
  check_at_ = at;
  check_timer_ = loop_.at(check_at_, [this] {
    check_timer_ = 0;
    run_checks();
  });
}

// A pass samples the processes that are due, a slice at a time, so that
// other events (a death, a probe's answer, a command) are handled between
// slices instead of waiting for a thousand /proc reads. Due within a
// little of now counts as due: the pass takes them along instead of
// waking up again a moment later.
void Supervisor::run_checks() {
  ++check_passes_;
  check_queue_.clear();
  MonoTime now = MonoClock::now();
  for (const auto& [name, u] : units_) {
    auto at = next_sample(*u, now);
    if (!at) continue;
    Duration slack = std::min<Duration>(std::chrono::seconds(1), from_seconds(u->checks.every / 2));
    if (!u->child->sampling || !u->child->sampling->primed || *at <= now + slack)
      check_queue_.push_back(name);
  }
  check_next_ = 0;
  check_slice();
}

void Supervisor::check_slice() {
  constexpr size_t kSlice = 100;
  MonoTime now = MonoClock::now();
  size_t end = std::min(check_queue_.size(), check_next_ + kSlice);
  for (; check_next_ < end; ++check_next_)
    if (Unit* u = find(check_queue_[check_next_]); u && u->child && u->checks.sampled())
      check_unit(*u, now);
  if (check_next_ < check_queue_.size()) {
    check_timer_ = loop_.after(Duration::zero(), [this] {
      check_timer_ = 0;
      check_slice();
    });
    return;
  }

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
  check_queue_.clear();
  check_next_ = 0;
  schedule_checks();
}

// The files the samples read, opened at the first (not on the restart
// path) and held for the life of the process. vigil's own child cannot
// be reaped meanwhile and an adopted one's start time is checked by the
// first read, so they are its files.
void Supervisor::open_samples(const StateChecks& k, Unit::Child& c) {
  c.stat_fd = open_stat(c.pid);
  if (k.states_only()) c.sched_fd = open_stat(c.pid, "schedstat");
}

void Supervisor::check_unit(Unit& u, MonoTime now) {
  Unit::Child& c = *u.child;
  const StateChecks& k = u.checks;
  if (!c.sampling) open_samples(k, c);
  // A healthy process that has not run since its last sample is still in
  // the state it was in then: a task changes its state only by running
  // (a wakeup makes it runnable, R, not stopped or blocked). With only
  // the states checked, its scheduler counters, a quarter of the cost of
  // the stat line (issue 13: the idle cost), say whether to read that.
  // They are read first: if it runs between the two reads, the next
  // sample sees counters that changed.
  uint64_t ran_ns = 0, runs = 0;
  bool counted = c.sched_fd && k.states_only() &&
                 reader_.schedstat_at(c.sched_fd.get(), ran_ns, runs) && runs > 0;
  if (counted && c.sampling && c.sampling->primed && c.sampling->runs == runs &&
      c.sampling->ran_ns == ran_ns &&
      std::none_of(std::begin(c.sampling->cond), std::end(c.sampling->cond),
                   [](const Sampling::Condition& cd) { return cd.bad; })) {
    ++check_samples_;
    ++check_unchanged_;
    c.sampling->at = now;
    return;
  }
  ProcStat st;
  bool read = c.stat_fd ? reader_.stat_at(c.stat_fd.get(), st) : reader_.stat(c.pid, st);
  if (!read || st.start_time != c.start_time) return;  // gone: its exit comes
  ++check_samples_;
  if (!c.sampling) c.sampling = std::make_unique<Sampling>();
  Sampling& s = *c.sampling;
  s.ran_ns = counted ? ran_ns : 0;
  s.runs = counted ? runs : 0;
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
  // (The fields are built only for a condition that is bad: a sample of
  // a healthy process allocates nothing.)
  struct Now {
    bool bad = false;
    double hold = 0;  // must last this long (0: at once)
    nlohmann::json fields;
  } now_[9];
  auto set = [&](int i, bool bad, double hold, auto&& fields) {
    now_[i].bad = bad;
    now_[i].hold = hold;
    if (bad) now_[i].fields = fields();
  };
  now_[kStopped] = {(st.state == 'T' || st.state == 't') && k.stopped > 0, k.stopped, {}};
  now_[kBlocked] = {st.state == 'D' && k.blocked > 0, k.blocked, {}};
  if (k.cpu_percent > 0 && s.primed)
    set(kCpu, cpu_pct >= k.cpu_percent, k.cpu_for, [&] {
      return nlohmann::json{{"percent", std::round(cpu_pct)}, {"limit", k.cpu_percent}};
    });
  int open_fds = -1;
  if (k.sockets()) {
    // Which sockets are its own, then their states from its network
    // namespace's tables.
    std::vector<uint64_t> inodes;
    uint64_t backlog = 0, close_wait = 0;
    unsigned port = 0;
    if (reader_.socket_inodes(c.pid, inodes, &open_fds) && !inodes.empty()) {
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
      set(kNoProgress, backlog > 0 && no_cpu, k.no_progress, [&] {
        return nlohmann::json{{"backlog", backlog}, {"port", port}};
      });
    if (k.close_wait > 0)
      set(kCloseWait, static_cast<int64_t>(close_wait) > k.close_wait, 0, [&] {
        return nlohmann::json{{"count", close_wait}, {"limit", k.close_wait}};
      });
  }
  if (k.fds > 0) {
    // Asked at every sample: a program may lower its own limit at any
    // time (a cached higher one would hide the exhaustion).
    rlimit lim;
    if (prlimit(c.pid, RLIMIT_NOFILE, nullptr, &lim) == 0)
      s.nofile = lim.rlim_cur;
    else if (auto text = reader_.read(c.pid, "limits"))
      s.nofile = parse_nofile_limit(*text);
    if (open_fds < 0) open_fds = reader_.count_fds(c.pid);
    if (s.nofile > 0 && open_fds >= 0)
      set(kFds, static_cast<double>(open_fds) >= k.fds * static_cast<double>(s.nofile), 0, [&] {
        return nlohmann::json{{"count", open_fds}, {"limit", s.nofile}};
      });
  }
  if (k.threads > 0)
    set(kThreads, st.num_threads > k.threads, 0, [&] {
      return nlohmann::json{{"count", st.num_threads}, {"limit", k.threads}};
    });
  if (k.rss > 0)
    set(kRss, rss > k.rss, 0, [&] { return nlohmann::json{{"rss", rss}, {"limit", k.rss}}; });
  if (k.rss_growth > 0) {
    s.rss.emplace_back(now, rss);
    while (s.rss.size() > 2 && to_seconds(now - s.rss[1].first) >= 60) s.rss.erase(s.rss.begin());
    double span = to_seconds(now - s.rss.front().first);
    if (span >= 30) {  // a rate over at least half a minute
      double per_min =
          (static_cast<double>(rss) - static_cast<double>(s.rss.front().second)) / span * 60;
      set(kRssGrowth, per_min > static_cast<double>(k.rss_growth), 0, [&] {
        return nlohmann::json{{"per_minute", std::llround(per_min)}, {"limit", k.rss_growth}};
      });
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
    nlohmann::json ev = n.fields.is_null() ? nlohmann::json::object() : n.fields;
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

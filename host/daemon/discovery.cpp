#include "host/daemon/discovery.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <system_error>
#include <thread>

#include "lua/runtime.hpp"

namespace vigil {

using nlohmann::json;

std::optional<DiscoverSchedule> DiscoverSchedule::from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  DiscoverSchedule s;
  s.every = j.value("every", 0.0);
  s.window = j.value("window", 0.0);
  s.scans = j.value("scans", 0);
  s.where = j.value("where", std::string());
  // The stdlib checked the bounds; a table it did not make is refused here.
  if (!(s.every > 0) || !(s.window > 0) || s.window > s.every || s.scans < 2) return std::nullopt;
  return s;
}

// One run. Exactly one side holds it at a time: the loop between scans,
// a worker during one (busy_); meanwhile the loop touches only
// `cancelled`.
struct Discovery::Job {
  uint64_t generation = 0;
  // The loop dropped this run (a reload, the daemon stopping): the worker
  // stops at its next process and skips the policy. The one field both
  // sides touch while a worker has the job.
  std::atomic<bool> cancelled = false;
  int index = 0;  // the scan to make (1 for the first)
  int scans = 0;
  double window = 0;
  DiscoverScanner scanner;
  DiscoverWindow window_seen;
  std::vector<std::pair<int, DiscoveredProcess>> between;  // handed over at each dispatch
  // The last scan's: the policy's input and the rules that tune it.
  std::vector<pid_t> watched;
  std::vector<Matcher> matchers;
  json previous, tuning;
  std::string stdlib_dir, init_dir;
  pid_t self = 0;
  // Results.
  size_t processes = 0;
  size_t between_added = 0;  // identities only an exec between two scans showed
  double cpu = 0;  // seconds of the workers' CPU
  std::string error;
  json out;
};

namespace {

// The policy, on the worker: a rule state of its own with the stdlib
// alone (no host), tuned by what the live rules set (input.tuning).
void run_policy(Discovery::Job& job) {
  RuntimeOptions ro;
  ro.stdlib_dir = job.stdlib_dir;
  ro.load_budget = 60;
  ro.memory_limit = 1024u << 20;
  RuleRuntime rt(ro, HostContext{});
  json watched = json::array();
  for (pid_t p : job.watched) watched.push_back(p);
  json processes = job.window_seen.processes();
  if (!job.matchers.empty()) {
    ProcReader reader;
    ProcView view(reader);
    ProcStat st;
    for (const auto& p : processes) {
      pid_t pid = p.value("pid", 0);
      if (pid <= 0 || !reader.stat(pid, st) || st.start_time != p.value("start_time", uint64_t{0})) continue;
      view.reset(st);
      for (const Matcher& m : job.matchers)
        if (!m.uses_parent_watch() && m.matches(view)) {
          watched.push_back(pid);
          break;
        }
    }
  }
  json input = {{"scans", job.scans},
                {"window", job.window},
                {"every", job.window / (job.scans - 1)},
                {"self", static_cast<int>(job.self)},
                {"systemd", systemd_is_init()},
                {"init_scripts", discover_init_scripts(job.init_dir)},
                {"watched", std::move(watched)},
                {"processes", std::move(processes)}};
  if (!job.previous.is_null()) input["previous"] = job.previous;
  if (job.tuning.is_object()) input["tuning"] = job.tuning;
  std::string error;
  job.out = rt.discover(input, error);
  if (job.out.is_null()) job.error = "the discover policy failed: " + error;
}

void work(std::shared_ptr<Discovery::Job> job) {
  // Background work: on a busy machine the restarts (the loop, the
  // children's execs) go first. Linux's nice is per thread.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
  double cpu0 = thread_cpu_seconds();
  try {
    for (auto& [after, p] : job->between)
      job->between_added += job->window_seen.add_between(std::move(p), after);
    job->between.clear();
    ScanOptions so;
    so.details = job->index == job->scans;  // cwd, environment, limits: for a proposed start
    so.cancel = &job->cancelled;
    ScanStats st;
    job->window_seen.add(job->scanner.scan(so, &st), job->index);
    job->processes = st.processes;
    if (job->index == job->scans && !job->cancelled) run_policy(*job);
  } catch (const std::exception& e) {
    job->error = std::string("discovery worker: ") + e.what();
  }
  job->cpu += thread_cpu_seconds() - cpu0;
}

json as_list(const json& j) { return j.is_array() ? j : json::array(); }

}  // namespace

Discovery::Discovery(EventLoop& loop, EventLog& log, DiscoveryOptions options)
    : loop_(loop), log_(log), options_(std::move(options)), inbox_(loop) {}

Discovery::~Discovery() {
  loop_.cancel(run_timer_);
  loop_.cancel(scan_timer_);
  if (job_) job_->cancelled = true;
  // A worker still scanning stops at its next process; its push() lands in
  // an inbox whose tasks never run now.
  reap_workers(true);
}

void Discovery::reap_workers(bool all) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (all || it->done->load()) {
      if (it->thread.joinable()) it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

void Discovery::configure(const DiscoverSchedule& s) {
  if (run_timer_ && schedule_.same(s)) {
    schedule_.where = s.where;
    return;
  }
  schedule_ = s;
  loop_.cancel(run_timer_);
  loop_.cancel(scan_timer_);
  scan_timer_ = 0;
  ++generation_;  // a run in flight is dropped
  if (job_) job_->cancelled = true;
  job_.reset();
  busy_ = false;
  between_.clear();
  run_timer_ = loop_.after(Duration::zero(), [this] { start_run(); });
}

void Discovery::start_run() {
  run_timer_ = loop_.after(from_seconds(schedule_.every), [this] { start_run(); });
  if (job_) return;  // the last one is still scanning (a slow machine): this turn is skipped
  job_ = std::make_shared<Job>();
  job_->generation = generation_;
  job_->scans = schedule_.scans;
  job_->window = schedule_.window;
  run_start_ = loop_.now();
  between_.clear();
  between_taken_ = 0;
  index_ = 0;
  dispatch_scan();
}

void Discovery::dispatch_scan() {
  scan_timer_ = 0;
  Job& j = *job_;
  j.index = ++index_;
  j.between = std::move(between_);
  between_.clear();
  if (j.index == j.scans) {
    if (options_.watched) j.watched = options_.watched();
    if (options_.matchers) j.matchers = options_.matchers();
    j.previous = previous_;
    if (options_.tuning) j.tuning = options_.tuning();
    j.stdlib_dir = options_.stdlib_dir;
    j.init_dir = options_.init_dir;
    j.self = getpid();
  }
  busy_ = true;
  reap_workers(false);
  try {
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([job = job_, sender = inbox_.sender(), self = this, done] {
      work(job);
      // Runs on the loop only while the inbox (and so this Discovery) lives.
      sender.push([job, self] { self->scanned(job); });
      done->store(true);
    });
    workers_.push_back({std::move(t), std::move(done)});
  } catch (const std::system_error& e) {
    busy_ = false;
    job_.reset();
    failed(std::string("cannot start a discovery thread: ") + e.what());
  }
}

void Discovery::scanned(std::shared_ptr<Job> job) {
  if (job != job_ || job->generation != generation_) return;  // dropped meanwhile
  busy_ = false;
  if (!job->error.empty()) {
    job_.reset();
    return failed(job->error);
  }
  if (job->index == job->scans) {
    job_.reset();
    return finished(*job);
  }
  // The next scan at its place in the window, or at once if this one ran late.
  double gap = schedule_.window / (schedule_.scans - 1);
  MonoTime next = run_start_ + from_seconds(gap * job->index);
  scan_timer_ = loop_.at(std::max(next, loop_.now()), [this] { dispatch_scan(); });
}

void Discovery::on_exec(pid_t pid) {
  // Only while a window is open, up to its last scan, and bounded: an exec
  // storm must not turn into as many /proc reads on the loop.
  if (!job_ || (busy_ && index_ == schedule_.scans) || between_taken_ >= kBetween) return;
  ++between_taken_;
  // After the scans done: while scan index_ runs, it may see it too (the
  // window then keeps the scan's).
  if (auto p = one_.one(pid)) between_.emplace_back(busy_ ? index_ - 1 : index_, std::move(*p));
}

void Discovery::failed(const std::string& error) {
  log_.emit(Msg::DiscoverFailed, "", {{"error", error}});
}

void Discovery::finished(Job& job) {
  json& out = job.out;
  json cands = out.contains("candidates") ? out["candidates"] : json::array();
  discover_lists_as_lists(cands);
  json summaries = as_list(out.value("summaries", json()));
  json fresh = as_list(out.value("new", json()));
  json vanished = as_list(out.value("vanished", json()));
  last_ = {{"at", static_cast<int64_t>(::time(nullptr))},
           {"window", schedule_.window},
           {"scans", schedule_.scans},
           {"between", job.between_added},
           {"candidates", std::move(cands)},
           {"text", out.value("text", std::string())}};
  if (previous_.is_null()) {
    // The first run: the whole set once, in one event (200 services are
    // one line in syslog, not 200).
    std::string names;
    size_t n = 0;
    json list = json::array();
    for (const auto& s : summaries) {
      std::string name = s.value("name", std::string());
      list.push_back(name);
      if (n++ < kListed) names += (names.empty() ? "" : ", ") + name;
    }
    if (n > kListed) names += " and " + std::to_string(n - kListed) + " more";
    log_.emit(Msg::DiscoverSummary, "",
              {{"count", n}, {"names", names.empty() ? std::string("none") : names},
               {"candidates", std::move(list)}});
  } else {
    auto listed = [&](const json& list, Msg msg) {
      size_t i = 0;
      for (const auto& s : list) {
        if (i++ >= kListed) break;
        json f = {{"name", s.value("name", std::string())},
                  {"exe", s.value("exe", std::string())},
                  {"pid", s.value("pid", 0)}};
        if (msg == Msg::DiscoverNew) {
          f["score"] = s.value("score", 0);
          f["recovery"] = s.value("recovery", std::string("alert"));
          if (s.contains("command") && s["command"].is_string()) f["command"] = s["command"];
        }
        log_.emit(msg, "", std::move(f));
      }
    };
    listed(fresh, Msg::DiscoverNew);
    listed(vanished, Msg::DiscoverVanished);
    size_t more_new = fresh.size() > kListed ? fresh.size() - kListed : 0;
    size_t more_gone = vanished.size() > kListed ? vanished.size() - kListed : 0;
    if (more_new || more_gone)
      log_.emit(Msg::DiscoverMore, "", {{"new", more_new}, {"vanished", more_gone}});
  }
  log_.emit(Msg::DiscoverRan, "",
            {{"candidates", summaries.size()},
             {"new", fresh.size()},
             {"vanished", vanished.size()},
             {"scans", schedule_.scans},
             {"window", schedule_.window},
             {"processes", job.processes},
             {"between", job.between_added},
             {"cpu", std::round(job.cpu * 1000) / 1000}});
  previous_ = std::move(summaries);
  // The window's snapshots and the policy's state (freed in the worker's
  // own malloc arena): give the pages back instead of carrying them.
  job.window_seen = DiscoverWindow();
  job.out = nullptr;
  malloc_trim(0);
}

}  // namespace vigil

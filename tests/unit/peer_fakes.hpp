// Fakes for host/remote/ tests: a clock whose time the test advances, a
// transport whose requests the test answers (also used by
// tests/bench/remote_bench.cpp).
#pragma once

#include <algorithm>
#include <map>
#include <stdexcept>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host/remote/peer_link.hpp"

namespace vigil::testing_fakes {

// Virtual time: timers run when advance() passes their deadline.
class FakeClock : public PeerClock {
 public:
  MonoTime now() const override { return now_; }
  TimerId after(Duration delay, std::function<void()> task) override {
    TimerId id = next_++;
    timers_[id] = {now_ + delay, std::move(task)};
    return id;
  }
  void cancel(TimerId id) override { timers_.erase(id); }
  // Runs every timer due up to now + d, in deadline order.
  void advance(Duration d) {
    MonoTime end = now_ + d;
    for (;;) {
      auto next = timers_.end();
      for (auto it = timers_.begin(); it != timers_.end(); ++it)
        if (it->second.first <= end && (next == timers_.end() || it->second.first < next->second.first))
          next = it;
      if (next == timers_.end()) break;
      now_ = std::max(now_, next->second.first);
      auto task = std::move(next->second.second);
      timers_.erase(next);
      task();
    }
    now_ = end;
  }
  void advance_s(double s) { advance(from_seconds(s)); }

 private:
  MonoTime now_ = MonoTime{} + std::chrono::hours(1);
  TimerId next_ = 1;
  std::map<TimerId, std::pair<MonoTime, std::function<void()>>> timers_;
};

// Requests are recorded; the test answers them.
class FakeTransport : public PeerTransport {
 public:
  struct Request {
    std::string method, path, last_event_id;
    Done done;
    Line line;
  };
  std::map<Handle, Request> open;
  std::vector<std::string> log;  // "GET /v1/status", "STREAM 12", "POST ..."
  Handle next = 1;

  Handle get(const std::string& path, Done done) override {
    log.push_back("GET " + path);
    open[next] = {"GET", path, "", std::move(done), {}};
    return next++;
  }
  Handle post(const std::string& path, Done done) override {
    log.push_back("POST " + path);
    open[next] = {"POST", path, "", std::move(done), {}};
    return next++;
  }
  Handle stream(const std::string& path, const std::string& last_event_id, Line line,
                Done end) override {
    log.push_back("STREAM " + last_event_id);
    open[next] = {"STREAM", path, last_event_id, std::move(end), std::move(line)};
    return next++;
  }
  void cancel(Handle h) override { open.erase(h); }

  Handle find(const std::string& method) const {
    for (const auto& [h, r] : open)
      if (r.method == method) return h;
    return 0;
  }
  size_t count(const std::string& prefix) const {
    size_t n = 0;
    for (const auto& l : log) n += l.rfind(prefix, 0) == 0;
    return n;
  }
  // Answers the oldest open request of `method`.
  bool answer(const std::string& method, Reply r) {
    Handle h = find(method);
    if (!h) return false;
    Done d = std::move(open[h].done);
    open.erase(h);
    d(r);
    return true;
  }
  bool status(const nlohmann::json& watches) {
    return answer("GET", {200, nlohmann::json{{"ok", true}, {"watches", watches}}.dump(), ""});
  }
  bool fail_get(const std::string& why = "connection refused") { return answer("GET", {0, "", why}); }
  void lines(std::initializer_list<std::string> ls) {
    Handle h = find("STREAM");
    if (!h) throw std::logic_error("no stream open");
    for (const auto& l : ls) {
      if (!open.contains(h)) return;
      open[h].line(l);
    }
  }
  void event(uint64_t seq, const std::string& watch, const std::string& name = "process_exited") {
    nlohmann::json ev = {{"seq", seq}, {"id", "VGL0102"}, {"event", name}, {"watch", watch},
                         {"severity", "warning"}, {"message", watch + ": pid 1 exited 3"},
                         {"fields", {{"watch", watch}, {"code", 3}}}};
    lines({"id: " + std::to_string(seq), "data: " + ev.dump(), ""});
  }
  void end_stream(int status = 0, const std::string& why = "connection reset") {
    answer("STREAM", {status, "", why});
  }
};

}  // namespace vigil::testing_fakes

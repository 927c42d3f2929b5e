#include "host/remote/peer_link.hpp"

#include "host/net/http_server.hpp"

#include <algorithm>
#include <charconv>

#include "host/core/json_read.hpp"

namespace vigil {

namespace {

const std::string kStatusPath = "/v1/status";
const std::string kStreamPath = "/v1/events/stream";

template <typename T>
void read_into(const nlohmann::json& j, const char* key, T& out) {
  const nlohmann::json& v = field(j, key);
  if (v.is_null()) return;
  if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_string()) out = v.get<std::string>();
  } else {
    if (v.is_number()) out = v.get<T>();
  }
}

bool same(const RemoteState& a, const RemoteState& b) {
  return a.state == b.state && a.ready == b.ready;
}

}  // namespace

PeerConfig PeerConfig::from_json(const nlohmann::json& j) {
  PeerConfig c;
  read_into(j, "name", c.name);
  read_into(j, "url", c.url);
  read_into(j, "ca", c.ca);
  read_into(j, "cert", c.cert);
  read_into(j, "key", c.key);
  read_into(j, "pin", c.pin);
  read_into(j, "token_file", c.token_file);
  read_into(j, "every", c.every);
  read_into(j, "fails", c.fails);
  read_into(j, "timeout", c.timeout);
  read_into(j, "where", c.where);
  c.every = std::max(c.every, 0.01);
  c.fails = std::max(c.fails, 1);
  c.backoff_max = std::max(c.backoff_min, std::min(c.backoff_max, c.every * c.fails));
  return c;
}

PeerLink::PeerLink(PeerConfig config, std::unique_ptr<PeerTransport> transport, PeerClock& clock,
                   Observer& observer)
    : config_(std::move(config)),
      transport_(std::move(transport)),
      clock_(clock),
      observer_(observer),
      backoff_(config_.backoff_min),
      sse_([this](const SseParser::Event& e) { on_event(e); }) {}

PeerLink::~PeerLink() {
  *alive_ = false;
  for (auto t : {poll_timer_, down_timer_, reconnect_timer_, refetch_timer_})
    if (t) clock_.cancel(t);
  for (auto h : {poll_req_, stream_req_})
    if (h) transport_->cancel(h);
  for (auto h : actions_) transport_->cancel(h);
}

const char* PeerLink::health_name() const {
  switch (health_) {
    case Health::Up: return "up";
    case Health::Down: return "down";
    case Health::Unknown: break;
  }
  return "unknown";
}

const RemoteState* PeerLink::watch(const std::string& name) const {
  auto it = watches_.find(name);
  return it == watches_.end() ? nullptr : &it->second;
}

Duration PeerLink::silence_limit() const { return from_seconds(config_.every * config_.fails); }

void PeerLink::start() {
  if (started_) return;
  started_ = true;
  last_answer_ = clock_.now();
  arm_down_check();
  poll();
  open_stream();
}

void PeerLink::set_watches(const std::set<std::string>& names) {
  bool added = false;
  for (auto it = watches_.begin(); it != watches_.end();)
    it = names.contains(it->first) ? std::next(it) : watches_.erase(it);
  for (const auto& n : names) added |= watches_.try_emplace(n).second;
  if (added && started_) poll();
}

// A poll now: one request at a time; asked for while one is in flight,
// another follows its answer (so a change the stream announced is seen).
// Polls are `every` apart, counted from when the last one was sent.
void PeerLink::poll() {
  if (poll_timer_) clock_.cancel(poll_timer_);
  poll_timer_ = 0;
  if (poll_req_) {
    // The transport ends a request at its timeout; one that is still
    // here long after is given up (a transport that lost it).
    if (clock_.now() - poll_sent_ < from_seconds(2 * config_.timeout + config_.every)) {
      poll_again_ = true;
      arm_poll();
      return;
    }
    transport_->cancel(poll_req_);
    poll_req_ = 0;
    failed("GET " + kStatusPath + ": no answer");
  }
  poll_again_ = false;
  poll_sent_ = clock_.now();
  std::weak_ptr<bool> alive = alive_;
  poll_req_ = transport_->get(kStatusPath, [this, alive](const PeerTransport::Reply& r) {
    if (alive.expired()) return;
    poll_req_ = 0;
    on_status(r);
    if (poll_again_) poll();
  });
  arm_poll();
}

void PeerLink::arm_poll() {
  if (poll_timer_) clock_.cancel(poll_timer_);
  poll_timer_ = clock_.after(from_seconds(config_.every), [this] {
    poll_timer_ = 0;
    poll();
  });
}

void PeerLink::on_status(const PeerTransport::Reply& r) {
  if (r.status == 0) return failed("GET " + kStatusPath + ": " + r.error);
  if (r.status != 200) {
    answered(true);  // it answers, but does not show its watches
    last_error_ = "GET " + kStatusPath + ": HTTP " + std::to_string(r.status);
    for (auto& [name, st] : watches_) set_state(name, RemoteState{});
    return;
  }
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object() || !field(j, "watches").is_array())
    return failed("GET " + kStatusPath + ": not a status reply");
  answered(true);
  last_error_.clear();
  apply_status(j);
}

void PeerLink::apply_status(const nlohmann::json& status) {
  std::map<std::string, const nlohmann::json*> by_name;
  for (const auto& w : status["watches"]) {
    const nlohmann::json& n = field(w, "name");
    if (n.is_string() && watches_.contains(n.get<std::string>())) by_name[n.get<std::string>()] = &w;
  }
  for (auto& [name, st] : watches_) {
    RemoteState now;
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      now.state = "absent";
    } else {
      const nlohmann::json& w = *it->second;
      now.state = field(w, "state").is_string() ? field(w, "state").get<std::string>() : "unknown";
      now.ready = field(w, "ready").is_boolean() && field(w, "ready").get<bool>();
      now.status = w;
    }
    set_state(name, std::move(now));
  }
}

void PeerLink::set_state(const std::string& watch, RemoteState now) {
  auto it = watches_.find(watch);
  if (it == watches_.end()) return;
  if (same(it->second, now)) {
    it->second.status = std::move(now.status);
    return;
  }
  RemoteState before = std::move(it->second);
  it->second = std::move(now);
  observer_.remote_state(*this, watch, before, it->second);
}

void PeerLink::answered(bool with_status) {
  last_answer_ = clock_.now();
  arm_down_check();
  if (health_ == Health::Up) return;
  health_ = Health::Up;
  observer_.peer_up(*this);
  // Back by another answer than a status (its stream, an action's
  // reply): its watches' states are read at once.
  if (!with_status) refetch_soon();
}

void PeerLink::failed(const std::string& error) { last_error_ = error; }

void PeerLink::arm_down_check() {
  if (down_timer_) clock_.cancel(down_timer_);
  Duration left = last_answer_ + silence_limit() - clock_.now();
  down_timer_ = clock_.after(std::max(Duration::zero(), left), [this] {
    down_timer_ = 0;
    check_down();
  });
}

void PeerLink::check_down() {
  Duration silent = clock_.now() - last_answer_;
  if (silent < silence_limit()) return arm_down_check();
  if (health_ == Health::Down) return;
  health_ = Health::Down;
  observer_.peer_down(*this, to_seconds(silent),
                      last_error_.empty() ? "no answer" : last_error_);
  // Nothing is known of its watches any more: not ready.
  for (auto& [name, st] : watches_) set_state(name, RemoteState{});
}

void PeerLink::open_stream() {
  reconnect_timer_ = 0;
  sse_ = SseParser([this](const SseParser::Event& e) { on_event(e); });
  stream_delivered_ = false;
  stream_message_ = false;
  ++stream_opens_;
  std::weak_ptr<bool> alive = alive_;
  stream_req_ = transport_->stream(
      kStreamPath, last_seq_ ? std::to_string(last_seq_) : std::string(),
      [this, alive](std::string_view line) {
        if (!alive.expired()) on_line(line);
      },
      [this, alive](const PeerTransport::Reply& r) {
        if (!alive.expired()) on_stream_end(r);
      });
}

// One line of the stream: any line is an answer; SseParser makes the
// events of them.
void PeerLink::on_line(std::string_view line) {
  if (!stream_delivered_) {
    stream_delivered_ = true;
    backoff_ = config_.backoff_min;
  }
  answered();
  sse_.line(line);
}

void PeerLink::on_event(const SseParser::Event& e) {
  // Only an event's own id counts: the parser gives one without an id
  // line the previous event's, which would make an id-less event (the
  // server's `event: gap`) look like one already seen.
  uint64_t seq = 0;
  bool has_seq = e.own_id && !e.id.empty() &&
                 std::from_chars(e.id.data(), e.id.data() + e.id.size(), seq).ec == std::errc() &&
                 seq > 0;
  if (e.type == "gap") {
    // Events were lost between last_seq_ and the next one the stream
    // sends: what they would have said is read from the status.
    observer_.gap(*this, last_seq_);
    if (has_seq && seq > last_seq_) last_seq_ = seq;
    poll();
    return;
  }
  if (e.data.empty()) return;
  bool first = !stream_message_;
  stream_message_ = true;
  if (has_seq) {
    if (first && seq < last_seq_) {
      // A stream that resumes after last_seq_ cannot start before it: the
      // peer numbers its events anew (its history was removed). What
      // happened meanwhile is read from its status.
      observer_.gap(*this, last_seq_);
      poll();
    } else if (seq <= last_seq_) {
      return;  // seen before the stream was resumed
    }
    last_seq_ = seq;
  }
  nlohmann::json ev = nlohmann::json::parse(e.data, nullptr, false);
  if (!ev.is_object()) {
    last_error_ = "event stream: event " + e.id + " is not a JSON object";
    return;
  }
  const nlohmann::json& w = field(ev, "watch");
  if (!w.is_string() || !watches_.contains(w.get<std::string>())) return;
  observer_.remote_event(*this, w.get<std::string>(), ev);
  refetch_soon();  // its state may have changed with it
}

// The status again shortly: the events of a burst share one fetch (a
// node's status is one reply for all its watches).
void PeerLink::refetch_soon() {
  if (refetch_timer_) return;
  refetch_timer_ = clock_.after(from_seconds(config_.refetch_delay), [this] {
    refetch_timer_ = 0;
    poll();
  });
}

void PeerLink::on_stream_end(const PeerTransport::Reply& r) {
  stream_req_ = 0;
  if (r.status == 0) {
    last_error_ = "GET " + kStreamPath + ": " + (r.error.empty() ? "closed" : r.error);
  } else {
    answered();
    if (r.status != 200) last_error_ = "GET " + kStreamPath + ": HTTP " + std::to_string(r.status);
  }
  double delay = backoff_;
  backoff_ = std::min(backoff_ * 2, config_.backoff_max);
  reconnect_timer_ = clock_.after(from_seconds(delay), [this] { open_stream(); });
}

void PeerLink::act(const std::string& watch, const std::string& verb,
                   std::function<void(const PeerTransport::Reply&)> done) {
  auto id = std::make_shared<PeerTransport::Handle>(0);
  std::weak_ptr<bool> alive = alive_;
  *id = transport_->post("/v1/watches/" + percent_encode(watch) + "/" + percent_encode(verb),
                         [this, alive, id, done = std::move(done)](const PeerTransport::Reply& r) {
                           if (alive.expired()) return;
                           actions_.erase(*id);
                           if (r.status != 0) answered();
                           if (done) done(r);
                         });
  actions_.insert(*id);
}

nlohmann::json PeerLink::to_json() const {
  nlohmann::json w = nlohmann::json::object();
  for (const auto& [name, st] : watches_) w[name] = {{"state", st.state}, {"ready", st.ready}};
  nlohmann::json j = {{"name", config_.name},
                      {"url", config_.url},
                      {"health", health_name()},
                      {"last_seq", last_seq_},
                      {"watches", std::move(w)}};
  if (!last_error_.empty()) j["last_error"] = last_error_;
  return j;
}

}  // namespace vigil

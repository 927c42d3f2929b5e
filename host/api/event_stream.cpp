#include "host/api/event_stream.hpp"

#include <algorithm>
#include <charconv>


namespace vigil {
namespace {

bool parse_seq(const std::string& text, uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && p == text.data() + text.size();
}

void bad_request(HttpReply& reply, const std::string& error) {
  reply.error(400, error);  // in the listener's error format (JSON on the socket and the API)
}

}  // namespace

EventStreams::EventStreams(EventLoop& loop, const EventLog& log) : loop_(loop), log_(log) {}

EventStreams::~EventStreams() {
  if (keepalive_timer_) loop_.cancel(keepalive_timer_);
  for (auto& s : streams_) s->reply.end();
}

void EventStreams::serve(HttpRequest& request, HttpReply reply) {
  auto stream = std::make_unique<Stream>();
  stream->last = log_.last_seq();
  std::string from = request.header("last-event-id");
  const char* key = "Last-Event-ID";
  if (from.empty()) {
    if (const std::string* q = request.query_value("since")) {
      from = *q;
      key = "since";
    }
  }
  if (!from.empty() && !parse_seq(from, stream->last))
    return bad_request(reply, std::string(key) + ": expected an event sequence number, got '" +
                                  from + "'");
  for (auto& [k, v] : request.query) {
    if (k == "watch") stream->watch = v;
    else if (k == "id") stream->id = v;
    else if (k != "since")
      return bad_request(reply, "events/stream: unknown query key '" + k +
                                    "' (since, watch, id)");
  }
  if (!reply.begin_events()) return;
  stream->reply = reply;
  Stream* s = stream.get();
  // A client that resumes from ahead of us (a node that lost its state
  // directory) would wait forever for its next id: start it from now.
  if (s->last > log_.last_seq()) s->last = log_.last_seq();
  streams_.push_back(std::move(stream));
  if (!write(*s)) {
    std::erase_if(streams_, [s](const auto& p) { return p.get() == s; });
    return;
  }
  if (!keepalive_timer_) keepalive_timer_ = loop_.after(kKeepAlive, [this] { keep_alive(); });
}

void EventStreams::on_event() {
  if (flush_posted_ || streams_.empty()) return;
  flush_posted_ = true;
  std::weak_ptr<int> alive = alive_;
  loop_.post([this, alive] {
    if (alive.expired()) return;
    flush_posted_ = false;
    flush();
  });
}

void EventStreams::flush() {
  std::erase_if(streams_, [this](const auto& s) { return !write(*s); });
}

bool EventStreams::write(Stream& s) {
  if (!s.reply.open()) return false;
  uint64_t newest = log_.last_seq();
  if (s.last >= newest) return true;
  uint64_t oldest = log_.oldest_seq();
  if (oldest > s.last + 1) {
    std::string gap = "{\"after\":" + std::to_string(s.last) +
                      ",\"oldest\":" + std::to_string(oldest) + "}";
    if (!s.reply.event("", "gap", gap)) return false;
    s.last = oldest - 1;
  }
  bool ok = true;
  size_t n = log_.each_since(s.last, kBatch, s.watch, s.id,
                             [&](uint64_t seq, const std::string& json) {
                               if (ok) ok = s.reply.event(std::to_string(seq), "", json);
                               if (ok) s.last = seq;
                             });
  if (!ok) return false;
  if (n < kBatch) {
    s.last = newest;  // what the filter skipped is passed too
  } else {
    on_event();  // more to write: after the loop served the others
  }
  if (s.reply.queued() > kMaxQueued) {
    s.reply.end();  // too slow: it resumes with Last-Event-ID
    return false;
  }
  return true;
}

void EventStreams::keep_alive() {
  keepalive_timer_ = 0;
  std::erase_if(streams_, [](const auto& s) { return !s->reply.comment(); });
  if (!streams_.empty()) keepalive_timer_ = loop_.after(kKeepAlive, [this] { keep_alive(); });
}

}  // namespace vigil

// EventStreams: GET /v1/events/stream, the event log as Server-Sent Events,
// on the control socket and the remote API alike. Each event goes out as
//
//   id: <its sequence number>
//   data: <its JSON object, the same line as in events.jsonl>
//
// A client that reconnects with Last-Event-ID (or ?since=SEQ) gets what it
// missed from the ring first, then the live events, without a loss or a
// duplicate: sequence numbers continue across a restart of vigil
// (EventLog::restore). When the ring no longer holds the next event it
// wanted, the stream says so first:
//
//   event: gap
//   data: {"after": 41, "oldest": 980}
//
// and goes on from the oldest it has (the client should re-read
// /v1/status). Without either, a stream starts with the next event.
// ?watch=NAME and ?id=VGLnnnn filter. Events are written from the ring
// after the callback that emitted them returned (never inside a handler);
// a client that reads too slowly to keep up (more than kMaxQueued bytes
// waiting) is disconnected and resumes with its Last-Event-ID.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/http_server.hpp"

namespace vigil {

class EventStreams {
 public:
  static constexpr Duration kKeepAlive = std::chrono::seconds(15);
  static constexpr size_t kMaxQueued = 1u << 20;
  static constexpr size_t kBatch = 256;  // events written per stream per turn

  EventStreams(EventLoop& loop, const EventLog& log);
  ~EventStreams();
  EventStreams(const EventStreams&) = delete;
  EventStreams& operator=(const EventStreams&) = delete;

  // The handler of GET /v1/events/stream (400 for a bad since/Last-Event-ID).
  void serve(HttpRequest& request, HttpReply reply);
  // An event was emitted (the daemon's log listener): written soon.
  void on_event();
  size_t clients() const { return streams_.size(); }

 private:
  struct Stream {
    HttpReply reply;
    uint64_t last = 0;  // the newest seq written (or skipped by the filter)
    std::string watch, id;
  };
  void flush();
  bool write(Stream& s);  // false: the stream is over
  void keep_alive();

  EventLoop& loop_;
  const EventLog& log_;
  std::vector<std::unique_ptr<Stream>> streams_;
  bool flush_posted_ = false;
  TimerId keepalive_timer_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // posted work outliving us
};

}  // namespace vigil

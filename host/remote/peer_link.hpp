// PeerLink: this node's view of one other node's vigil (a `peer` of the
// rules), through that node's remote API. It polls GET /v1/status every
// `every`, keeps one SSE stream of GET /v1/events/stream open (reconnected
// with backoff, resumed with Last-Event-ID so that no event is lost or seen
// twice; an `event: gap` makes it fetch the status again), and decides
// whether the peer is up: down once nothing has answered for
// fails x every, up again at the first answer.
//
// The watches of the peer that local rules watch (remote watches) follow
// the remote's state; their changes and the remote events about them go to
// the Observer, which turns them into local events.
//
// The link is written against two small interfaces, PeerTransport (the
// network) and PeerClock (time), so that its logic is tested with fakes
// (tests/unit/peer_link_test.cpp); the daemon gives it the event loop and
// an HTTP transport.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "host/core/clock.hpp"
#include "host/net/http_client.hpp"

namespace vigil {

// The network as a peer link needs it: three asynchronous requests on the
// peer's base URL. Every call returns at once; callbacks run later, from
// the loop, never from inside the call. A request that is cancelled calls
// nothing any more.
class PeerTransport {
 public:
  struct Reply {
    int status = 0;     // HTTP status; 0: no answer (connection, TLS, timeout: see error)
    std::string body;
    std::string error;  // why there was no answer, "" otherwise
  };
  using Handle = uint64_t;  // 0 is never a handle
  using Done = std::function<void(const Reply&)>;
  using Line = std::function<void(std::string_view line)>;

  virtual ~PeerTransport() = default;
  virtual Handle get(const std::string& path, Done done) = 0;
  virtual Handle post(const std::string& path, Done done) = 0;
  // A streaming GET: each line of the body (without its "\n" or "\r\n")
  // as it arrives; `end` once, when the stream ends for whatever reason
  // (status and error say how). Sends Last-Event-ID when it is not empty.
  virtual Handle stream(const std::string& path, const std::string& last_event_id, Line line,
                        Done end) = 0;
  virtual void cancel(Handle h) = 0;
};

// Timers for the link: the event loop in the daemon, a fake in tests.
class PeerClock {
 public:
  using TimerId = uint64_t;  // 0 is never a timer
  virtual ~PeerClock() = default;
  virtual MonoTime now() const = 0;
  virtual TimerId after(Duration delay, std::function<void()> task) = 0;
  virtual void cancel(TimerId id) = 0;
};

struct PeerConfig {
  std::string name;  // the peer's name in the rules
  std::string url;   // https://HOST:PORT
  std::string ca, cert, key, pin, token_file;  // for the transport
  double every = 5;    // seconds between status polls
  int fails = 3;       // down after fails x every without an answer
  double timeout = 5;  // a request's deadline (the transport's)
  // The stream's reconnect delay: starts at backoff_min, doubles at each
  // failed attempt up to backoff_max, and is back at backoff_min once a
  // stream has delivered something.
  double backoff_min = 0.5;
  double backoff_max = 30;
  // After an event about a watched remote watch, its status is fetched
  // again this much later (one fetch for the events of a burst).
  double refetch_delay = 0.2;
  std::string where;  // file:line of the declaration

  // From one element of RuleRuntime::peers(); missing keys keep their
  // defaults.
  static PeerConfig from_json(const nlohmann::json& j);
  bool operator==(const PeerConfig&) const = default;
};

// The remote state of a watch of the peer, as the link knows it.
struct RemoteState {
  std::string state = "unknown";  // the remote's state name; "unknown": not known (peer down,
                                  // not fetched yet), "absent": the peer has no such watch
  bool ready = false;             // the remote's `ready`
  nlohmann::json status;          // the remote's status object of the watch (null if none)
};

class PeerLink {
 public:
  class Observer {
   public:
    virtual ~Observer() = default;
    virtual void peer_up(const PeerLink& link) = 0;
    virtual void peer_down(const PeerLink& link, double silent_for, const std::string& error) = 0;
    // A watched remote watch changed state or readiness.
    virtual void remote_state(const PeerLink& link, const std::string& watch,
                              const RemoteState& before, const RemoteState& now) = 0;
    // An event of the peer about a watched remote watch (the remote's
    // event object, as a line of its events.jsonl).
    virtual void remote_event(const PeerLink& link, const std::string& watch,
                              const nlohmann::json& event) = 0;
    // The peer's stream said events were lost (or resuming was refused):
    // the status is fetched again.
    virtual void gap(const PeerLink& link, uint64_t after_seq) = 0;
  };

  PeerLink(PeerConfig config, std::unique_ptr<PeerTransport> transport, PeerClock& clock,
           Observer& observer);
  ~PeerLink();
  PeerLink(const PeerLink&) = delete;
  PeerLink& operator=(const PeerLink&) = delete;

  // Starts polling and streaming (idempotent).
  void start();
  // The remote watches local rules watch (the remote names). Ones added
  // are fetched at once; ones removed are forgotten.
  void set_watches(const std::set<std::string>& names);
  const PeerConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }

  enum class Health { Unknown, Up, Down };
  Health health() const { return health_; }
  const char* health_name() const;
  const std::map<std::string, RemoteState>& watches() const { return watches_; }
  const RemoteState* watch(const std::string& name) const;
  uint64_t last_seq() const { return last_seq_; }
  const std::string& last_error() const { return last_error_; }
  // How many times the stream was (re)opened, for status and tests.
  uint64_t stream_opens() const { return stream_opens_; }

  // POST /v1/watches/WATCH/VERB on the peer (start, stop, restart, pause,
  // resume): `done` gets the reply (the remote authorizes).
  void act(const std::string& watch, const std::string& verb,
           std::function<void(const PeerTransport::Reply&)> done);

  // {name, url, health, last_seq, last_error, watches: {name: {state, ready}}}
  nlohmann::json to_json() const;

 private:
  void poll();
  void arm_poll();
  void refetch_soon();
  void on_status(const PeerTransport::Reply& r);
  void apply_status(const nlohmann::json& status);
  void set_state(const std::string& watch, RemoteState now);
  void answered(bool with_status = false);
  void failed(const std::string& error);
  void arm_down_check();
  void check_down();
  void open_stream();
  void on_line(std::string_view line);
  void on_event(const SseParser::Event& e);
  void on_stream_end(const PeerTransport::Reply& r);
  Duration silence_limit() const;

  PeerConfig config_;
  std::unique_ptr<PeerTransport> transport_;
  PeerClock& clock_;
  Observer& observer_;
  bool started_ = false;
  Health health_ = Health::Unknown;
  MonoTime last_answer_{};  // the last answer, or the start
  std::string last_error_;
  std::map<std::string, RemoteState> watches_;

  // Status polls.
  PeerTransport::Handle poll_req_ = 0;
  bool poll_again_ = false;  // asked for while one was in flight
  MonoTime poll_sent_{};
  PeerClock::TimerId poll_timer_ = 0;
  PeerClock::TimerId down_timer_ = 0;
  PeerClock::TimerId refetch_timer_ = 0;

  // The stream and its SSE parser (a new one for each stream).
  PeerTransport::Handle stream_req_ = 0;
  PeerClock::TimerId reconnect_timer_ = 0;
  double backoff_ = 0;
  bool stream_delivered_ = false;  // a line (any) arrived on this stream
  bool stream_message_ = false;    // an event arrived on this stream
  uint64_t stream_opens_ = 0;
  uint64_t last_seq_ = 0;  // the newest event seen: Last-Event-ID
  SseParser sse_;

  std::set<PeerTransport::Handle> actions_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

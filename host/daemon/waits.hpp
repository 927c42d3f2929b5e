// Waits: `vigil wait NAME --until STATE` served in the daemon. A wait is a
// control request whose reply is held until the watch or group reaches the
// state, can no longer reach it without an operator, is removed, or the
// wait's own timeout passes. Nothing polls: the supervisor says when a
// state or readiness changed (and every event is a hint too), and the
// waits are judged once per loop iteration after that, so a burst of
// changes costs one pass. Waits are bounded (kMax) so that clients waiting
// can never take the connections ordinary commands need.
#pragma once

#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "host/control/server.hpp"
#include "host/loop/event_loop.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

class Waits {
 public:
  // Half the control connections: the other half stays for everything else.
  static constexpr size_t kMax = ControlServer::kMaxConnections / 2;

  enum class Verdict { Reached, Pending, Unreachable, Unknown };

  Waits(EventLoop& loop, Supervisor& supervisor);
  ~Waits();
  Waits(const Waits&) = delete;
  Waits& operator=(const Waits&) = delete;

  // The states a wait can be for.
  static bool valid_target(const std::string& until);
  // Where `name` stands for `until` now; `state` gets its state (a watch's,
  // or the group's as a whole) and `recheck` a time to judge again when
  // no event will say it (a watch that becomes ready by running `settle`
  // seconds).
  Verdict judge(const std::string& name, const std::string& until, std::string& state,
                std::optional<MonoTime>& recheck) const;

  // Starts a wait (replies at once when it is decided already). `conn`
  // expires when the client goes away: its wait is dropped. False (and
  // `error`) when kMax waits are in progress.
  bool add(const std::string& name, const std::string& until, std::optional<double> timeout,
           std::weak_ptr<void> conn, ControlServer::Reply reply, std::string& error);
  // Something changed: judge the waits in progress soon (coalesced).
  void poke();
  size_t size() const { return waits_.size(); }

 private:
  struct Wait {
    std::string name, until;
    std::weak_ptr<void> conn;
    ControlServer::Reply reply;
    TimerId timeout_timer = 0;
    MonoTime started;
  };
  using Iter = std::list<Wait>::iterator;
  // Replies and forgets the wait when it is decided; true then.
  bool settle(Iter it, std::optional<MonoTime>& recheck);
  void finish(Iter it, const char* result, const std::string& state);
  void judge_all();
  void prune();

  EventLoop& loop_;
  Supervisor& supervisor_;
  std::list<Wait> waits_;
  bool posted_ = false;
  TimerId recheck_timer_ = 0;
  MonoTime recheck_at_{};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

// RemoteHub: the peers the rules declared and the remote watches on them.
// One PeerLink per peer; what the links see becomes local events
// (VGL0240-VGL0246, through the EventLog like any other, so the rules'
// hooks, the sinks and `vigil events` get them) and the readiness of the
// remote watches (Supervisor::set_remote_ready), which gates local starts
// through `requires`. The rules act on a peer through act()
// (vigil.remote(node):restart(watch)): asynchronous, the result an event.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/remote/peer_link.hpp"
#include "host/supervise/supervisor.hpp"

namespace vigil {

// A watch of another node, as the rules declared it.
struct RemoteWatchDecl {
  std::string name;    // the local name, "db@nodeb"
  std::string node;    // the peer
  std::string remote;  // the name on the node, "db"
  std::string where;   // file:line
  bool operator==(const RemoteWatchDecl&) const = default;
  // From one element of RuleRuntime::remote_watches().
  static RemoteWatchDecl from_json(const nlohmann::json& j);
};

// The event loop as a PeerClock.
class LoopClock : public PeerClock {
 public:
  explicit LoopClock(EventLoop& loop) : loop_(loop) {}
  MonoTime now() const override { return loop_.now(); }
  TimerId after(Duration delay, std::function<void()> task) override {
    return loop_.after(delay, std::move(task));
  }
  void cancel(TimerId id) override { loop_.cancel(id); }

 private:
  EventLoop& loop_;
};

class RemoteHub : public PeerLink::Observer {
 public:
  // Makes the transport of a peer (its URL, CA, client certificate or
  // token): nullptr and `error` when it cannot (the peer is then down
  // with that error).
  using TransportFactory =
      std::function<std::unique_ptr<PeerTransport>(const PeerConfig&, std::string& error)>;

  RemoteHub(PeerClock& clock, EventLog& log, Supervisor& supervisor, TransportFactory factory);
  ~RemoteHub() override;

  // At each (re)load, from RuleRuntime::peers() and remote_watches(): a
  // peer whose declaration did not change keeps its link (and what it
  // knows); changed or new ones get a new link; removed ones go.
  void configure(const nlohmann::json& peers, std::vector<RemoteWatchDecl> watches);

  // POST VERB for the remote watch `watch` (the name on the node) of peer
  // `node`; the result is an event (VGL0244/VGL0245). False and `error`
  // at once when there is no such peer or verb.
  bool act(const std::string& node, const std::string& verb, const std::string& watch,
           std::string& error);

  // For `vigil status`: the remote watches (name, node, remote, state,
  // ready, peer, where), and the peers.
  nlohmann::json watches_json() const;
  // One remote watch by its local name (as in watches_json, with `status`:
  // the node's status object of it), or null.
  nlohmann::json watch_json(const std::string& name) const;
  nlohmann::json peers_json() const;
  const PeerLink* link(const std::string& node) const;
  size_t size() const { return links_.size(); }

  // PeerLink::Observer.
  void peer_up(const PeerLink& link) override;
  void peer_down(const PeerLink& link, double silent_for, const std::string& error) override;
  void remote_state(const PeerLink& link, const std::string& watch, const RemoteState& before,
                    const RemoteState& now) override;
  void remote_event(const PeerLink& link, const std::string& watch,
                    const nlohmann::json& event) override;
  void gap(const PeerLink& link, uint64_t after_seq) override;

 private:
  // The local names of the remote watches of `node` named `remote` there.
  std::vector<const RemoteWatchDecl*> local_names(const std::string& node,
                                                  const std::string& remote) const;

  PeerClock& clock_;
  EventLog& log_;
  Supervisor& supervisor_;
  TransportFactory factory_;
  std::map<std::string, std::unique_ptr<PeerLink>> links_;
  std::vector<RemoteWatchDecl> watches_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace vigil

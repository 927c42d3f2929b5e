#include "host/remote/remote_hub.hpp"

#include <cmath>
#include <set>

#include "host/core/json_read.hpp"

namespace vigil {

namespace {

std::string text_of(const nlohmann::json& j, const char* key) {
  const nlohmann::json& v = field(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

// A peer whose transport cannot be made (a bad certificate file, no HTTP
// client): every request fails with the reason, from the loop, so the
// link goes down with it after fails x every as for any other failure.
class FailingTransport : public PeerTransport {
 public:
  FailingTransport(PeerClock& clock, std::string error) : clock_(clock), error_(std::move(error)) {}
  ~FailingTransport() override {
    for (auto& [h, t] : pending_) clock_.cancel(t);
  }
  Handle get(const std::string&, Done done) override { return fail(std::move(done)); }
  Handle post(const std::string&, Done done) override { return fail(std::move(done)); }
  Handle stream(const std::string&, const std::string&, Line, Done end) override {
    return fail(std::move(end));
  }
  void cancel(Handle h) override {
    auto it = pending_.find(h);
    if (it == pending_.end()) return;
    clock_.cancel(it->second);
    pending_.erase(it);
  }

 private:
  Handle fail(Done done) {
    Handle h = next_++;
    pending_[h] = clock_.after(Duration::zero(), [this, h, done = std::move(done)] {
      pending_.erase(h);
      done(Reply{0, "", error_});
    });
    return h;
  }
  PeerClock& clock_;
  std::string error_;
  Handle next_ = 1;
  std::map<Handle, PeerClock::TimerId> pending_;
};

const std::set<std::string> kVerbs = {"start", "stop", "restart", "pause", "resume"};

double rounded(double s) { return std::round(s * 10) / 10; }

}  // namespace

RemoteWatchDecl RemoteWatchDecl::from_json(const nlohmann::json& j) {
  return {text_of(j, "name"), text_of(j, "on"), text_of(j, "remote"), text_of(j, "where")};
}

RemoteHub::RemoteHub(PeerClock& clock, EventLog& log, Supervisor& supervisor,
                     TransportFactory factory)
    : clock_(clock), log_(log), supervisor_(supervisor), factory_(std::move(factory)) {}

RemoteHub::~RemoteHub() {
  *alive_ = false;
  links_.clear();
  for (const auto& w : watches_) supervisor_.forget_remote(w.name);
}

void RemoteHub::configure(const nlohmann::json& peers, std::vector<RemoteWatchDecl> watches) {
  std::map<std::string, PeerConfig> wanted;
  if (peers.is_array())
    for (const auto& p : peers) {
      PeerConfig c = PeerConfig::from_json(p);
      if (!c.name.empty()) wanted[c.name] = std::move(c);
    }
  for (auto it = links_.begin(); it != links_.end();) {
    auto w = wanted.find(it->first);
    // `where` moves when lines are added above it: not a change.
    PeerConfig now = it->second->config();
    if (w != wanted.end()) now.where = w->second.where;
    it = w != wanted.end() && now == w->second ? std::next(it) : links_.erase(it);
  }
  // Remote watches that are gone (or moved to another node) stop counting.
  std::set<std::string> names;
  for (const auto& w : watches) names.insert(w.name);
  for (const auto& w : watches_)
    if (!names.contains(w.name)) supervisor_.forget_remote(w.name);
  watches_ = std::move(watches);

  for (auto& [name, config] : wanted) {
    if (links_.contains(name)) continue;
    std::string error;
    std::unique_ptr<PeerTransport> t = factory_ ? factory_(config, error) : nullptr;
    if (!t) {
      if (error.empty()) error = "no HTTP client for peers in this build";
      t = std::make_unique<FailingTransport>(clock_, error);
    }
    links_[name] = std::make_unique<PeerLink>(config, std::move(t), clock_, *this);
  }
  for (auto& [name, link] : links_) {
    std::set<std::string> remote;
    for (const auto& w : watches_)
      if (w.node == name) remote.insert(w.remote);
    link->set_watches(remote);
    link->start();
  }
  // Each remote watch is as ready as its node says now (a link kept
  // over the reload knows; a new one says not ready until it knows).
  for (const auto& w : watches_) {
    const PeerLink* l = link(w.node);
    const RemoteState* st = l ? l->watch(w.remote) : nullptr;
    supervisor_.set_remote_ready(w.name, st && st->ready);
  }
}

const PeerLink* RemoteHub::link(const std::string& node) const {
  auto it = links_.find(node);
  return it == links_.end() ? nullptr : it->second.get();
}

std::vector<const RemoteWatchDecl*> RemoteHub::local_names(const std::string& node,
                                                           const std::string& remote) const {
  std::vector<const RemoteWatchDecl*> out;
  for (const auto& w : watches_)
    if (w.node == node && w.remote == remote) out.push_back(&w);
  return out;
}

bool RemoteHub::act(const std::string& node, const std::string& verb, const std::string& watch,
                    std::string& error) {
  auto it = links_.find(node);
  if (it == links_.end()) {
    error = "no peer named '" + node + "'";
    return false;
  }
  if (!kVerbs.contains(verb)) {
    error = "'" + verb + "' is not start, stop, restart, pause or resume";
    return false;
  }
  if (watch.empty()) {
    error = "no watch named";
    return false;
  }
  std::weak_ptr<bool> alive = alive_;
  it->second->act(watch, verb, [this, alive, node, verb, watch](const PeerTransport::Reply& r) {
    if (alive.expired()) return;
    nlohmann::json fields = {{"node", node}, {"remote", watch}, {"verb", verb}};
    nlohmann::json reply = nlohmann::json::parse(r.body, nullptr, false);
    bool ok = r.status >= 200 && r.status < 300 &&
              !(reply.is_object() && field(reply, "ok").is_boolean() && !field(reply, "ok").get<bool>());
    std::string local;
    if (auto names = local_names(node, watch); !names.empty()) local = names.front()->name;
    if (ok) {
      fields["reply"] = reply.is_discarded() ? nlohmann::json(r.body) : reply;
      log_.emit(Msg::RemoteActionDone, local, std::move(fields));
      return;
    }
    std::string error = r.status == 0 ? r.error : "HTTP " + std::to_string(r.status);
    if (std::string e = text_of(reply, "error"); !e.empty()) error += ": " + e;
    fields["status"] = r.status;
    fields["error"] = error;
    log_.emit(Msg::RemoteActionFailed, local, std::move(fields));
  });
  return true;
}

void RemoteHub::peer_up(const PeerLink& link) {
  log_.emit(Msg::PeerUp, "", {{"peer", link.name()}, {"url", link.config().url}});
}

void RemoteHub::peer_down(const PeerLink& link, double silent_for, const std::string& error) {
  log_.emit(Msg::PeerDown, "",
            {{"peer", link.name()},
             {"url", link.config().url},
             {"silent", rounded(silent_for)},
             {"error", error}});
}

void RemoteHub::remote_state(const PeerLink& link, const std::string& watch,
                             const RemoteState& before, const RemoteState& now) {
  std::string why;
  if (now.state == "unknown")
    why = link.health() == PeerLink::Health::Down ? ": peer down" : ": status not readable";
  else if (now.state == "absent")
    why = ": the node has no such watch";
  for (const RemoteWatchDecl* w : local_names(link.name(), watch)) {
    log_.emit(Msg::RemoteState, w->name,
              {{"node", link.name()},
               {"remote", watch},
               {"state", now.state},
               {"from", before.state},
               {"ready", now.ready},
               {"was_ready", before.ready},
               {"why", why}});
    supervisor_.set_remote_ready(w->name, now.ready);
  }
}

void RemoteHub::remote_event(const PeerLink& link, const std::string& watch,
                             const nlohmann::json& event) {
  Severity sev = message_def(Msg::RemoteEvent).severity;
  std::string sname = text_of(event, "severity");
  for (int s = 0; s <= static_cast<int>(Severity::Critical); ++s)
    if (severity_name(static_cast<Severity>(s)) == sname) sev = static_cast<Severity>(s);
  std::string message = text_of(event, "message");
  for (const RemoteWatchDecl* w : local_names(link.name(), watch)) {
    nlohmann::json fields = {{"watch", w->name},
                             {"node", link.name()},
                             {"remote", watch},
                             {"remote_id", text_of(event, "id")},
                             {"remote_event", text_of(event, "event")},
                             {"remote_seq", field(event, "seq")},
                             {"message", message},
                             {"fields", field(event, "fields")}};
    std::string text = render_template(message_def(Msg::RemoteEvent).text, fields);
    log_.emit(Msg::RemoteEvent, sev, w->name, std::move(fields), std::move(text));
  }
}

void RemoteHub::gap(const PeerLink& link, uint64_t after_seq) {
  log_.emit(Msg::PeerGap, "", {{"peer", link.name()}, {"after", after_seq}});
}

namespace {
nlohmann::json remote_json(const RemoteWatchDecl& w, const PeerLink* l, bool with_status) {
  const RemoteState* st = l ? l->watch(w.remote) : nullptr;
  nlohmann::json j = {{"name", w.name},
                      {"node", w.node},
                      {"remote", w.remote},
                      {"state", st ? st->state : "unknown"},
                      {"ready", st && st->ready},
                      {"peer", l ? l->health_name() : "unknown"},
                      {"where", w.where}};
  if (with_status) j["status"] = st ? st->status : nlohmann::json();
  return j;
}
}  // namespace

nlohmann::json RemoteHub::watches_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& w : watches_) out.push_back(remote_json(w, link(w.node), false));
  return out;
}

nlohmann::json RemoteHub::watch_json(const std::string& name) const {
  for (const auto& w : watches_)
    if (w.name == name) return remote_json(w, link(w.node), true);
  return nullptr;
}

nlohmann::json RemoteHub::peers_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, l] : links_) out.push_back(l->to_json());
  return out;
}

}  // namespace vigil

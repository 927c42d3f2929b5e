// Placeholder until the curl-based engine lands: every check fails at
// once with a clear reason. The interface is final (probe_engine.hpp).
#include "host/probe/probe_engine.hpp"

#include <map>

namespace vigil {

struct ProbeEngine::Impl {
  EventLoop& loop;
  ProbeId next = 1;
  std::map<ProbeId, Done> pending;
};

ProbeEngine::ProbeEngine(EventLoop& loop) : impl_(std::make_unique<Impl>(Impl{loop, 1, {}})) {}
ProbeEngine::~ProbeEngine() = default;

namespace {
ProbeId fail_later(ProbeEngine::Impl& impl, ProbeEngine::Done done) {
  ProbeId id = impl.next++;
  impl.pending[id] = std::move(done);
  impl.loop.post([&impl, id] {
    auto it = impl.pending.find(id);
    if (it == impl.pending.end()) return;
    auto cb = std::move(it->second);
    impl.pending.erase(it);
    ProbeResult r;
    r.reason = "probes are not available in this build";
    cb(r);
  });
  return id;
}
}  // namespace

ProbeId ProbeEngine::http(const HttpCheck&, Done done) {
  return fail_later(*impl_, std::move(done));
}
ProbeId ProbeEngine::tcp(const TcpCheck&, Done done) {
  return fail_later(*impl_, std::move(done));
}
void ProbeEngine::cancel(ProbeId id) {
  impl_->pending.erase(id);
}
size_t ProbeEngine::in_flight() const {
  return impl_->pending.size();
}

std::optional<std::string> validate_http_url(const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return "'" + url + "' is not an http:// or https:// URL";
  return std::nullopt;
}

}  // namespace vigil

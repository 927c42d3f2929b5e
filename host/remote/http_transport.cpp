#include "host/remote/http_transport.hpp"

#include "host/net/http_client.hpp"

namespace vigil {

namespace {

class HttpPeerTransport : public PeerTransport {
 public:
  HttpPeerTransport(EventLoop& loop, HttpClientRequest proto, Duration stream_idle)
      : client_(HttpClient::for_loop(loop)), proto_(std::move(proto)), stream_idle_(stream_idle) {}

  Handle get(const std::string& path, Done done) override {
    return client_->start(request("GET", path), handlers(std::move(done)));
  }
  Handle post(const std::string& path, Done done) override {
    return client_->start(request("POST", path), handlers(std::move(done)));
  }
  Handle stream(const std::string& path, const std::string& last_event_id, Line line,
                Done end) override {
    HttpClientRequest r = request("GET", path);
    r.timeout = Duration::zero();  // a stream lasts; the idle timeout ends a dead one
    r.idle_timeout = stream_idle_;
    r.headers.emplace_back("Accept", "text/event-stream");
    if (!last_event_id.empty()) r.headers.emplace_back("Last-Event-ID", last_event_id);
    HttpHandlers h = handlers(std::move(end));
    h.on_line = std::move(line);
    return client_->start(std::move(r), std::move(h));
  }
  void cancel(Handle h) override { client_->cancel(h); }

 private:
  HttpClientRequest request(const char* method, const std::string& path) const {
    HttpClientRequest r = proto_;
    r.method = method;
    r.url += path;
    return r;
  }
  static HttpHandlers handlers(Done done) {
    HttpHandlers h;
    h.on_done = [done = std::move(done)](const HttpResponse& resp) {
      Reply r;
      r.status = resp.ok() ? resp.status : 0;
      r.body = resp.body;
      r.error = resp.error;
      done(r);
    };
    return h;
  }

  std::shared_ptr<HttpClient> client_;
  HttpClientRequest proto_;  // the URL, TLS, token and timeouts every request shares
  Duration stream_idle_;
};

}  // namespace

bool peer_request(const PeerConfig& c, HttpClientRequest& out, std::string& error) {
  out.url = c.url;
  while (!out.url.empty() && out.url.back() == '/') out.url.pop_back();
  out.tls.ca_file = c.ca;
  out.tls.cert_file = c.cert;
  out.tls.key_file = c.key;
  out.tls.pinned_key = c.pin;
  // A pin alone (no CA): the key is the trust, not a chain.
  out.tls.verify = !(c.ca.empty() && !c.pin.empty());
  return c.token_file.empty() || out.load_bearer_token(c.token_file, error);
}

std::unique_ptr<PeerTransport> http_peer_transport(EventLoop& loop, const PeerConfig& c,
                                                   std::string& error) {
  HttpClientRequest proto;
  if (!peer_request(c, proto, error)) return nullptr;
  proto.timeout = from_seconds(c.timeout);
  proto.connect_timeout = from_seconds(c.timeout);
  // A stream that has said nothing (not even a keep-alive) for as long as
  // it takes to call the peer down is dead: reconnect.
  Duration idle = from_seconds(c.every * c.fails);
  return std::make_unique<HttpPeerTransport>(loop, std::move(proto), idle);
}

}  // namespace vigil

// The PeerTransport of the daemon: host/net's HttpClient (the loop's one
// curl multi handle), with the peer's TLS files, pin or bearer token.
#pragma once

#include <memory>
#include <string>

#include "host/loop/event_loop.hpp"
#include "host/remote/peer_link.hpp"

namespace vigil {

// nullptr and `error` when the peer's files cannot be used (its token
// file: missing, readable by others, empty). A bad certificate shows at
// the first request, as an error of that request (the peer goes down
// with it).
std::unique_ptr<PeerTransport> http_peer_transport(EventLoop& loop, const PeerConfig& config,
                                                   std::string& error);

// What every request to the peer carries: its URL (the base; append the
// path), CA, client certificate, pin (a pin alone, without a CA, is the
// trust itself) and bearer token. Shared by the links and the CLI's
// --node/--nodes. False and `error` when the token file cannot be used.
bool peer_request(const PeerConfig& config, HttpClientRequest& out, std::string& error);

}  // namespace vigil

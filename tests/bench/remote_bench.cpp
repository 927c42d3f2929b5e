// vigil_remote_bench: the cost of a peer link on this node. Events of a
// peer's stream go through PeerLink (SSE parsing, dedupe by seq) and
// RemoteHub (a local event each, VGL0243, to the ring) with the network
// faked (tests/unit/peer_fakes.hpp): what the link costs per event, apart
// from the HTTP client's own. Also the heap a link holds. Run by hand:
//   build/tests/bench/vigil_remote_bench [--events N] [--watches N] [--rate EVENTS_PER_S]
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "host/core/events.hpp"
#include "host/loop/event_loop.hpp"
#include "host/remote/remote_hub.hpp"
#include "host/supervise/supervisor.hpp"
#include "tests/unit/peer_fakes.hpp"

using namespace vigil;
using testing_fakes::FakeClock;
using testing_fakes::FakeTransport;

namespace {
size_t heap() {
  malloc_trim(0);
  return mallinfo2().uordblks;
}
}  // namespace

int main(int argc, char** argv) {
  int events = 100000, watches = 100, rate = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--events")) events = std::stoi(argv[i + 1]);
    if (!strcmp(argv[i], "--watches")) watches = std::stoi(argv[i + 1]);
    if (!strcmp(argv[i], "--rate")) rate = std::stoi(argv[i + 1]);
  }
  EventLoop loop;
  LogOptions lo;
  lo.console = false;
  EventLog log(lo);
  Supervisor sup(loop, log, "");
  FakeClock clock;
  FakeTransport* t = nullptr;
  size_t before = heap();
  RemoteHub hub(clock, log, sup, [&](const PeerConfig&, std::string&) -> std::unique_ptr<PeerTransport> {
    auto ft = std::make_unique<FakeTransport>();
    t = ft.get();
    return ft;
  });
  std::vector<RemoteWatchDecl> decls;
  nlohmann::json status = nlohmann::json::array();
  for (int i = 0; i < watches; ++i) {
    std::string n = "w" + std::to_string(i);
    decls.push_back({n + "@nodeb", "nodeb", n, "r.lua:1"});
    status.push_back({{"name", n}, {"state", "running"}, {"ready", true}});
  }
  hub.configure(nlohmann::json::array({{{"name", "nodeb"}, {"url", "https://h:1"}}}), decls);
  t->status(status);
  size_t held = heap() - before;

  auto run = [&](const char* label, bool watched) {
    auto t0 = std::chrono::steady_clock::now();
    uint64_t seq0 = hub.link("nodeb")->last_seq();
    size_t gets0 = t->count("GET");
    for (int i = 1; i <= events; ++i) {
      t->event(seq0 + static_cast<uint64_t>(i), watched ? "w" + std::to_string(i % watches) : "elsewhere");
      // The peer emits `rate` events a second; the fetches of the status
      // that watched events ask for are answered at once.
      clock.advance(std::chrono::nanoseconds(1000000000 / rate));
      while (t->find("GET")) t->status(status);
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%-34s %8d events at %d/s  %7.2f us/event, status fetched %zu times\n", label, events,
           rate, s / events * 1e6, t->count("GET") - gets0);
  };
  run("events of watches not followed", false);
  run("events of remote watches (relayed)", true);
  printf("heap held by one peer link with %d remote watches: %.1f KiB\n", watches, held / 1024.0);
  return 0;
}

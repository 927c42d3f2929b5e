// vigil_container_bench: against a real Podman API service (the tests'
// podman_fixture.hpp), how soon a container's death is known two ways
// when its main process is killed from the host: the pidfd of State.Pid
// becoming readable, and the engine's `die` event arriving on the event
// stream. Then the time of a resync (list all=1 + inspect each) with 100
// containers. Root only; run by hand, not registered with ctest.
//
//   vigil_container_bench [--kills N] [--containers M]
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "host/container/docker_engine.hpp"
#include "host/core/fd.hpp"
#include "host/core/pidfd.hpp"
#include "host/loop/event_loop.hpp"
#include "tests/bench/bench_util.hpp"
#include "tests/unit/podman_fixture.hpp"

using namespace vigil;
using namespace std::chrono_literals;

namespace {

struct Listener : EngineListener {
  std::string up_version;
  bool synced = false;
  std::string want_id;
  double die_at = 0;
  void engine_up(const std::string& v) override { up_version = v; }
  void engine_down(const std::string& why) override { fprintf(stderr, "engine down: %s\n", why.c_str()); }
  void container_event(const ContainerEvent& ev) override {
    if (ev.action == "die" && ev.id == want_id && die_at == 0) die_at = now_s();
  }
  void resync(const std::vector<ContainerInfo>&) override { synced = true; }
};

bool run_until(EventLoop& loop, const std::function<bool()>& pred, double seconds) {
  double end = now_s() + seconds;
  while (!pred()) {
    if (now_s() > end) return false;
    loop.run_once(20ms);
  }
  return true;
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  int kills = 20, containers = 100;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--kills" && i + 1 < argc) kills = std::atoi(argv[++i]);
    else if (a == "--containers" && i + 1 < argc) containers = std::atoi(argv[++i]);
    else die("usage: vigil_container_bench [--kills N] [--containers M]");
  }
  if (auto why = testing_podman::missing(); !why.empty()) die(why);
  testing_podman::PodmanService svc;
  if (!svc.error().empty()) die(svc.error());
  EventLoop loop;
  EngineConfig cfg;
  cfg.host = svc.host();
  DockerEngine engine(loop, cfg);
  Listener l;
  engine.set_listener(&l);
  if (!run_until(loop, [&] { return l.synced; }, 20)) die("no resync from the engine");
  printf("engine: Podman %s at %s\n", l.up_version.c_str(), cfg.host.c_str());

  std::vector<double> by_pidfd, by_event;
  for (int k = 0; k < kills; ++k) {
    std::string name = "victim" + std::to_string(k);
    std::string id = svc.run_container(name);
    if (id.empty()) die("podman run failed");
    ContainerInfo info;
    bool got = false;
    engine.inspect(id, [&](const std::string& e, const ContainerInfo& i) {
      if (!e.empty()) die(e);
      info = i, got = true;
    });
    run_until(loop, [&] { return got; }, 20);
    Fd pfd(pidfd_open(info.pid, 0));
    if (!pfd) die("pidfd_open failed");
    double pidfd_at = 0;
    WatchId w = loop.add(pfd.get(), POLLIN, [&](uint32_t) {
      if (pidfd_at == 0) pidfd_at = now_s();
    });
    l.want_id = id;
    l.die_at = 0;
    double t0 = now_s();
    ::kill(info.pid, SIGKILL);
    if (!run_until(loop, [&] { return pidfd_at > 0 && l.die_at > 0; }, 20)) die("no die event in 20 s");
    loop.remove(w);
    by_pidfd.push_back((pidfd_at - t0) * 1000);
    by_event.push_back((l.die_at - t0) * 1000);
    bool removed = false;
    engine.remove(id, true, [&](const std::string&) { removed = true; });
    run_until(loop, [&] { return removed; }, 20);
  }
  printf("death of a container's main process killed from the host, %d kills (ms):\n", kills);
  printf("  pidfd readable:     median %7.2f  p95 %7.2f  max %7.2f\n", pct(by_pidfd, 0.5), pct(by_pidfd, 0.95),
         pct(by_pidfd, 1));
  printf("  engine die event:   median %7.2f  p95 %7.2f  max %7.2f\n", pct(by_event, 0.5), pct(by_event, 0.95),
         pct(by_event, 1));

  double c0 = now_s();
  for (int i = 0; i < containers; ++i) {
    std::string out;
    if (svc.podman({"create", "--network", "none", "--name", "c" + std::to_string(i), "--label", "bench=1",
                    testing_podman::PodmanService::kImage, "true"},
                   &out) != 0)
      die("podman create: " + out);
  }
  printf("%d containers created in %.1f s (podman create)\n", containers, now_s() - c0);
  std::vector<double> resync;
  for (int r = 0; r < 5; ++r) {
    bool done = false;
    size_t n = 0;
    double t0 = now_s();
    engine.list_inspected(true, [&](const std::string& e, std::vector<ContainerInfo> all) {
      if (!e.empty()) die(e);
      n = all.size(), done = true;
    });
    run_until(loop, [&] { return done; }, 60);
    resync.push_back((now_s() - t0) * 1000);
    if (n != static_cast<size_t>(containers)) die("resync listed " + std::to_string(n));
  }
  printf("resync (list all=1 + inspect each) of %d containers, 5 runs (ms): median %.1f  max %.1f\n", containers,
         pct(resync, 0.5), pct(resync, 1));
  engine.set_listener(nullptr);
  return 0;
}

// libFuzzer target: one control request, as the daemon gets it from its
// socket, through the real parse_request and Daemon::handle of a daemon on
// a temporary state directory (no rules, no kernel process events). The
// loop runs a few iterations after each request so that posted work and
// replies happen. A `quit` is handled like any request; the daemon it
// stopped is replaced by a fresh one.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "host/control/protocol.hpp"
#include "host/daemon/daemon.hpp"

namespace vigil {

struct DaemonFuzzAccess {
  static void handle(Daemon& d, const nlohmann::json& req, ControlServer::Reply reply) {
    d.handle(req, std::move(reply));
  }
  static EventLoop& loop(Daemon& d) { return d.loop_; }
  static bool stopping(Daemon& d) { return d.shutting_down_ || d.loop_.stopping(); }
};

}  // namespace vigil

namespace {

std::string g_dir;
std::unique_ptr<vigil::Daemon> g_daemon;

void start_daemon() {
  g_daemon.reset();  // the old one first: it holds the state directory
  vigil::DaemonOptions o;
  o.rules = g_dir + "/rules";
  o.state_dir = g_dir + "/state";
  o.socket_path = g_dir + "/vigil.sock";
  o.log.console = false;
  o.watch_rules = false;
  o.proc_events = false;
  o.history_max_bytes = 1u << 20;
  o.log.file_max_bytes = 1u << 20;
  o.log.file_keep = 1;
  g_daemon = std::make_unique<vigil::Daemon>(o);
  std::string error;
  if (!g_daemon->start(error)) {
    fprintf(stderr, "control_fuzz: daemon did not start: %s\n", error.c_str());
    abort();
  }
  // The daemon blocks these for its signalfd; the fuzzer wants them back
  // (Ctrl-C, and -timeout's SIGALRM is not among them anyway).
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, s);
  sigprocmask(SIG_UNBLOCK, &mask, nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/vigil-control-fuzz.XXXXXX";
  if (!mkdtemp(tmpl)) abort();
  g_dir = tmpl;
  std::filesystem::create_directories(g_dir + "/rules");
  atexit([] {
    g_daemon.reset();
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
  });
  start_daemon();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The server hands over the first line.
  std::string line(reinterpret_cast<const char*>(data), size);
  if (auto nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
  std::string error;
  auto req = vigil::parse_request(line, error);
  if (!req) return 0;  // the server replies the error itself
  // A reply may come after handle() returns: it must be a reply object.
  vigil::DaemonFuzzAccess::handle(*g_daemon, *req, [](const nlohmann::json& r) {
    if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean()) abort();
  });
  vigil::EventLoop& loop = vigil::DaemonFuzzAccess::loop(*g_daemon);
  for (int i = 0; i < 20 && !loop.stopping(); ++i) loop.run_once(std::chrono::milliseconds(0));
  if (vigil::DaemonFuzzAccess::stopping(*g_daemon)) start_daemon();
  return 0;
}

// libFuzzer target: one control request, as the daemon gets it from its
// socket, through the real parse_request and Daemon::handle of a daemon on
// a temporary state directory (no rules, no kernel process events). The
// loop runs a few iterations after each request so that posted work and
// replies happen. A `quit` is handled like any request; the daemon it
// stopped is replaced by a fresh one. An input starting with '{' is the
// request line as it is; any other input builds one (a command and
// arguments of every JSON type), so type confusion in any field is found.
#include <fuzzer/FuzzedDataProvider.h>
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

namespace {

// Any JSON value, of any type, from the input.
nlohmann::json any_value(FuzzedDataProvider& p, int depth) {
  switch (p.ConsumeIntegralInRange(0, depth > 1 ? 5 : 7)) {
    case 0: return nullptr;
    case 1: return p.ConsumeBool();
    case 2: return p.ConsumeIntegral<int64_t>();
    case 3: return p.ConsumeFloatingPoint<double>();
    case 4: return p.ConsumeRandomLengthString(32);
    case 5: return p.ConsumeIntegral<uint64_t>();
    case 6: {
      nlohmann::json a = nlohmann::json::array();
      for (int n = p.ConsumeIntegralInRange(0, 3); n > 0; --n) a.push_back(any_value(p, depth + 1));
      return a;
    }
    default: {
      nlohmann::json o = nlohmann::json::object();
      for (int n = p.ConsumeIntegralInRange(0, 3); n > 0; --n)
        o[p.ConsumeRandomLengthString(8)] = any_value(p, depth + 1);
      return o;
    }
  }
}

// An input not starting with '{' builds the request: a known command (or
// any string) and known or any argument names with values of any type, so
// that every field of every command meets every type.
std::string structured_request(const uint8_t* data, size_t size) {
  static const char* kCmds[] = {"ping",  "quit",    "status",  "metrics", "reload",
                                "events", "dumps",  "explain", "start",   "stop",
                                "restart", "pause", "resume",  "set"};
  static const char* kArgs[] = {"name", "all", "keep", "n", "watch", "id", "key", "value"};
  FuzzedDataProvider p(data, size);
  nlohmann::json req = nlohmann::json::object();
  req["cmd"] = p.ConsumeBool() ? std::string(p.PickValueInArray(kCmds))
                               : p.ConsumeRandomLengthString(16);
  for (int n = p.ConsumeIntegralInRange(0, 4); n > 0; --n) {
    std::string key = p.ConsumeIntegralInRange(0, 9) < 9 ? std::string(p.PickValueInArray(kArgs))
                                                          : p.ConsumeRandomLengthString(8);
    req[key] = any_value(p, 0);
  }
  return req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The server hands over the first line.
  std::string line = size > 0 && data[0] == '{'
                         ? std::string(reinterpret_cast<const char*>(data), size)
                         : structured_request(data, size);
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

// libFuzzer target: bytes on the control socket, as the daemon gets them:
// the real HttpServer (http_parser, limits, pipelining), the control
// routes and Daemon::handle of a daemon on a temporary state directory (no
// rules, no kernel process events), over a real unix socket connection.
// The loop runs until the daemon has answered and closed (or a bounded
// number of iterations). A `quit` is handled like any request; the daemon
// it stopped is replaced by a fresh one. An input starting with an upper-
// case letter is raw HTTP as it is; any other input builds a JSON request
// (a command and arguments of every JSON type, so type confusion in any
// field is found) and sends it the way the CLI does, or through POST
// /v1/command when no route takes it. Every reply must be HTTP whose
// body is a JSON reply object.
#include <fuzzer/FuzzedDataProvider.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <http_parser.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "host/control/protocol.hpp"
#include "host/control/routes.hpp"
#include "host/daemon/daemon.hpp"

namespace vigil {

struct DaemonFuzzAccess {
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

namespace {

// The HTTP request for a JSON request: its route, as the CLI sends it, or
// the request as it is.
std::string http_for(const std::string& json_text) {
  std::string method = "POST", target = "/v1/command", body = json_text, error;
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (auto call = j.is_discarded() ? std::nullopt : vigil::control_http_call(j, error)) {
    method = call->method;
    target = call->target;
    body = call->body;
  }
  return method + " " + target + " HTTP/1.1\r\nHost: vigil\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Every reply in bytes is HTTP with a JSON reply object as its body (the
// last one may be cut short: the connection was given up on).
void check_replies(const std::string& bytes) {
  struct State {
    std::string body;
    bool any = false;
  } st;
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_body = [](http_parser* p, const char* at, size_t n) {
    static_cast<State*>(p->data)->body.append(at, n);
    return 0;
  };
  settings.on_message_complete = [](http_parser* p) {
    auto* s = static_cast<State*>(p->data);
    auto j = nlohmann::json::parse(s->body, nullptr, false);
    if (!j.is_object() || !j.contains("ok") || !j["ok"].is_boolean()) {
      fprintf(stderr, "control_fuzz: a reply that is not a JSON reply object: %.200s\n", s->body.c_str());
      abort();
    }
    s->body.clear();
    return 0;
  };
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = &st;
  http_parser_execute(&parser, &settings, bytes.data(), bytes.size());
  if (HTTP_PARSER_ERRNO(&parser) != HPE_OK) {
    fprintf(stderr, "control_fuzz: the reply is not HTTP (%s): %.200s\n",
            http_errno_name(HTTP_PARSER_ERRNO(&parser)), bytes.c_str());
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bool raw = size > 0 && data[0] >= 'A' && data[0] <= 'Z';
  std::string bytes = raw ? std::string(reinterpret_cast<const char*>(data), size)
                          : http_for(size > 0 && data[0] == '{'
                                         ? std::string(reinterpret_cast<const char*>(data), size)
                                         : structured_request(data, size));
  vigil::EventLoop& loop = vigil::DaemonFuzzAccess::loop(*g_daemon);
  vigil::Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = g_dir + "/vigil.sock";
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) abort();
  size_t off = 0;
  std::string reply;
  bool eof = false;
  char buf[65536];
  for (int i = 0; i < 200 && !eof && !loop.stopping(); ++i) {
    while (off < bytes.size()) {
      ssize_t n = ::send(fd.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
      if (off == bytes.size()) shutdown(fd.get(), SHUT_WR);
    }
    if (bytes.empty() && i == 0) shutdown(fd.get(), SHUT_WR);
    loop.run_once(std::chrono::milliseconds(0));
    for (;;) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        reply.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || errno != EAGAIN) eof = true;
      break;
    }
  }
  fd.reset();  // a reply still held (a wait) is given up on
  for (int i = 0; i < 5 && !loop.stopping(); ++i) loop.run_once(std::chrono::milliseconds(0));
  // A HEAD reply has no body: its framing cannot be checked from here.
  if (bytes.find("HEAD") == std::string::npos) check_replies(reply);
  if (vigil::DaemonFuzzAccess::stopping(*g_daemon)) start_daemon();
  return 0;
}

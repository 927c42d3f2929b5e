// vigil_api_bench: the remote API's costs in the real daemon.
//   1. RSS of a daemon with 10 watches, the API off and on (TLS, after one
//      request, so that OpenSSL is loaded);
//   2. GET /v1/status at --watches watches over one keep-alive TLS
//      connection (a bearer token): median and p99 of --requests calls;
//   3. --sse event streams connected while the rules emit --rate events a
//      second: the daemon's CPU (% of one core, from schedstat) with and
//      without the streams, and the events each stream received.
// Certificates are made with openssl (tests/e2e/net_fixture). Root only
// (as the other benches); not registered with ctest. See README.md here.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "host/control/client.hpp"
#include "host/loop/event_loop.hpp"
#include "host/net/http_client.hpp"
#include "tests/e2e/net_fixture.hpp"
#include "tests/bench/bench_util.hpp"

using nlohmann::json;

namespace {

// VmRSS, RssAnon (private: what the daemon adds) and Pss, in kB.
struct Mem {
  long rss = -1, anon = -1, pss = -1;
};
Mem mem_kb(pid_t pid) {
  Mem m;
  std::string line;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss = std::stol(line.substr(6));
    if (line.rfind("RssAnon:", 0) == 0) m.anon = std::stol(line.substr(8));
  }
  std::ifstream r("/proc/" + std::to_string(pid) + "/smaps_rollup");
  while (std::getline(r, line))
    if (line.rfind("Pss:", 0) == 0) m.pss = std::stol(line.substr(4));
  return m;
}

int free_port() {
  static int next = 20000 + (getpid() % 20000);
  return next++;
}

struct Node {
  explicit Node(std::string r) : root(std::move(r)) {}
  std::string root, sock;
  pid_t pid = -1;
  void start(const std::string& vigil, const std::string& rules, int watches) {
    std::filesystem::create_directories(root + "/rules");
    sock = root + "/vigil.sock";
    std::ofstream(root + "/rules/bench.lua") << rules;
    pid = fork();
    if (pid == 0) {
      std::vector<std::string> args = {vigil,     "--socket",      sock,          "run",
                                       "--rules", root + "/rules", "--state-dir", root + "/state",
                                       "--quiet", "--no-watch-rules"};
      std::vector<char*> av;
      for (auto& a : args) av.push_back(a.data());
      av.push_back(nullptr);
      execv(av[0], av.data());
      _exit(127);
    }
    double deadline = now_s() + 180;
    for (;;) {
      std::string err;
      auto r = vigil::control_request(sock, {{"cmd", "status"}}, err);
      int running = 0;
      if (r)
        for (const auto& w : (*r)["watches"]) running += w["state"] == "running";
      if (running == watches) break;
      if (now_s() > deadline) die("the watches did not start");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  void stop() {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
};

std::string watches_rule(int n) {
  return "for i = 1, " + std::to_string(n) +
         " do watch(\"w\" .. i) { start = { \"/bin/sleep\", \"100000\" }, checks = false, log = "
         "false } end\n";
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  int watches = 1000, requests = 1000, sse = 100, rate = 100;
  double seconds = 10;
  std::string vigil = VIGIL_BINARY;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die("missing value for " + a);
      return std::string(argv[++i]);
    };
    if (a == "--watches") watches = std::stoi(next());
    else if (a == "--requests") requests = std::stoi(next());
    else if (a == "--sse") sse = std::stoi(next());
    else if (a == "--rate") rate = std::stoi(next());
    else if (a == "--seconds") seconds = std::stod(next());
    else if (a == "--vigil") vigil = next();
    else
      die("usage: vigil_api_bench [--watches N] [--requests N] [--sse N] [--rate N] "
          "[--seconds S] [--vigil PATH]");
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::string root = "/tmp/vigil-api-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(root);
  auto certs = vigil::test::Certs::make(root + "/certs", "IP:127.0.0.1");
  if (!certs.ok) die("certificates: " + certs.error);
  std::string tokens = root + "/tokens";
  std::string token;
  {
    std::string cmd = vigil + " token add bench --file " + tokens;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[256] = {};
    if (!p || !fgets(buf, sizeof buf, p)) die("vigil token add failed");
    pclose(p);
    token = buf;
    while (!token.empty() && (token.back() == '\n')) token.pop_back();
  }
  auto api = [&](int port) {
    return "api { listen = \"127.0.0.1:" + std::to_string(port) + "\", cert = \"" + certs.server +
           "\", key = \"" + certs.server_key + "\", tokens = \"" + tokens +
           "\", max_connections = 256 }\n";
  };
  auto get = [&](vigil::HttpClient& c, vigil::EventLoop& loop, const std::string& url) {
    vigil::HttpClientRequest r;
    r.url = url;
    r.bearer_token = token;
    r.tls.ca_file = certs.ca;
    vigil::HttpResponse out;
    bool done = false;
    c.start(r, {nullptr, nullptr, [&](const vigil::HttpResponse& resp) {
                  out = resp;
                  done = true;
                }});
    while (!done) loop.run_once(std::chrono::seconds(1));
    return out;
  };

  // 1. RSS with the API off and on.
  {
    Node off(root + "/off");
    off.start(vigil, watches_rule(10), 10);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    Mem a = mem_kb(off.pid);
    off.stop();
    int port = free_port();
    Node on(root + "/on");
    on.start(vigil, watches_rule(10) + api(port), 10);
    vigil::EventLoop loop;
    vigil::HttpClient client(loop);
    auto resp = get(client, loop, "https://127.0.0.1:" + std::to_string(port) + "/v1/status");
    if (resp.status != 200) die("GET /v1/status: " + std::to_string(resp.status) + " " + resp.error);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    Mem b = mem_kb(on.pid);
    on.stop();
    printf("memory, 10 watches, kB: API off VmRSS %ld, RssAnon %ld, Pss %ld; API on (TLS, after a "
           "request) VmRSS %ld, RssAnon %ld, Pss %ld\n",
           a.rss, a.anon, a.pss, b.rss, b.anon, b.pss);
  }

  // 2 and 3 on one daemon: --watches watches, the API, a rule emitting --rate events/s.
  int port = free_port();
  std::string url = "https://127.0.0.1:" + std::to_string(port);
  std::string emit = "local n = 0\nvigil.timer.every(" + std::to_string(1.0 / rate) +
                     ", function() n = n + 1; vigil.log.info(\"tick\", { n = n }) end)\n";
  Node big(root + "/big");
  big.start(vigil, watches_rule(watches) + api(port) + emit, watches);
  {
    vigil::EventLoop loop;
    vigil::HttpClient client(loop);
    std::vector<double> ms;
    size_t reused = 0;
    get(client, loop, url + "/v1/status");  // the handshake, outside the figures
    for (int i = 0; i < requests; ++i) {
      auto resp = get(client, loop, url + "/v1/status");
      if (resp.status != 200) die("GET /v1/status: " + std::to_string(resp.status) + " " + resp.error);
      ms.push_back(resp.timings.total * 1000);
      reused += resp.reused_connection;
    }
    printf("GET /v1/status, %d watches, keep-alive TLS, %d requests: p50 %.2f ms, p99 %.2f ms "
           "(%zu on a reused connection)\n",
           watches, requests, pct(ms, 0.5), pct(ms, 0.99), reused);
  }
  {
    uint64_t c0 = run_ns(big.pid);
    double t0 = now_s();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    double quiet = static_cast<double>(run_ns(big.pid) - c0) / 1e9 / (now_s() - t0) * 100;

    vigil::EventLoop loop;
    vigil::HttpClient client(loop);
    std::vector<size_t> got(static_cast<size_t>(sse), 0);
    for (int i = 0; i < sse; ++i) {
      vigil::HttpClientRequest r;
      r.url = url + "/v1/events/stream";
      r.bearer_token = token;
      r.tls.ca_file = certs.ca;
      r.timeout = vigil::Duration::zero();
      size_t* n = &got[static_cast<size_t>(i)];
      client.start(r, {nullptr, [n](std::string_view line) { *n += line.rfind("id: ", 0) == 0; },
                       [](const vigil::HttpResponse& resp) {
                         fprintf(stderr, "stream ended: %d %s\n", resp.status, resp.error.c_str());
                       }});
    }
    double warm = now_s() + 2;
    while (now_s() < warm) loop.run_once(std::chrono::milliseconds(100));
    std::fill(got.begin(), got.end(), 0);
    c0 = run_ns(big.pid);
    t0 = now_s();
    double end = t0 + seconds;
    while (now_s() < end) loop.run_once(std::chrono::milliseconds(100));
    double busy = static_cast<double>(run_ns(big.pid) - c0) / 1e9 / (now_s() - t0) * 100;
    size_t lo = *std::min_element(got.begin(), got.end());
    size_t hi = *std::max_element(got.begin(), got.end());
    printf("%d events/s, %d watches: daemon CPU %.2f%% of a core without streams, %.2f%% with %d "
           "SSE streams (each received %zu-%zu events in %.0f s)\n",
           rate, watches, quiet, busy, sse, lo, hi, seconds);
  }
  big.stop();
  std::filesystem::remove_all(root);
  return 0;
}

// vigil_tls_load_child CERT KEY [CLIENT_CA]: a process linked as the daemon
// is (vigil_core, not OpenSSL) for tls_test and tls_bench. It prints
// whether libssl and libcrypto are mapped, and its resident size, before
// and after TlsServerContext::load:
//   before: libssl=0 libcrypto=0 rss_kb=3152 anon_kb=160 file_kb=2992 pss_kb=...
//   after: libssl=1 libcrypto=1 rss_kb=8380 anon_kb=... file_kb=... pss_kb=...
// Exit 0; 1 if the load failed (its error on stderr).
#include <cstdio>
#include <fstream>
#include <string>

#include "host/net/tls.hpp"

namespace {

void report(const char* when) {
  bool ssl = false, crypto = false;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    ssl = ssl || line.find("/libssl.so") != std::string::npos;
    crypto = crypto || line.find("/libcrypto.so") != std::string::npos;
  }
  long rss = -1, anon = -1, file = -1;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stol(line.substr(6));
    if (line.rfind("RssAnon:", 0) == 0) anon = std::stol(line.substr(8));
    if (line.rfind("RssFile:", 0) == 0) file = std::stol(line.substr(8));
  }
  long pss = -1;
  std::ifstream rollup("/proc/self/smaps_rollup");
  for (std::string line; std::getline(rollup, line);)
    if (line.rfind("Pss:", 0) == 0) pss = std::stol(line.substr(4));
  std::printf("%s: libssl=%d libcrypto=%d rss_kb=%ld anon_kb=%ld file_kb=%ld pss_kb=%ld\n", when, ssl,
              crypto, rss, anon, file, pss);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CERT KEY [CLIENT_CA]\n", argv[0]);
    return 2;
  }
  report("before");
  std::string error;
  auto ctx = vigil::TlsServerContext::load({argv[1], argv[2], argc > 3 ? argv[3] : ""}, error);
  if (!ctx) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  report("after");
  return 0;
}

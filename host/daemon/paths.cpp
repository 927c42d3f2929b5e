#include "host/daemon/paths.hpp"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "host/core/strings.hpp"

namespace vigil {

namespace {
std::string env_or_empty(const char* name) {
  const char* v = getenv(name);
  return v && *v ? v : "";
}
}  // namespace

std::string default_socket_path() {
  if (auto v = env_or_empty("VIGIL_SOCKET"); !v.empty()) return v;
  if (geteuid() == 0) return "/run/vigil/vigil.sock";
  if (auto rt = env_or_empty("XDG_RUNTIME_DIR"); !rt.empty()) return rt + "/vigil/vigil.sock";
  return "/tmp/vigil-" + std::to_string(geteuid()) + "/vigil.sock";
}

std::string default_state_dir() {
  if (auto v = env_or_empty("VIGIL_STATE_DIR"); !v.empty()) return v;
  if (geteuid() == 0) return "/var/lib/vigil";
  if (auto st = env_or_empty("XDG_STATE_HOME"); !st.empty()) return st + "/vigil";
  if (auto home = env_or_empty("HOME"); !home.empty()) return home + "/.local/state/vigil";
  return "/tmp/vigil-" + std::to_string(geteuid()) + "/state";
}

std::string default_stdlib_dir() {
  if (auto v = env_or_empty("VIGIL_STDLIB"); !v.empty()) return v;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    std::string bin(exe, static_cast<size_t>(n));
    std::string dir = bin.substr(0, bin.rfind('/'));
    char build[PATH_MAX];
    if (realpath(VIGIL_BUILD_DIR, build) && dir == build) return VIGIL_STDLIB_DIR;
    std::string beside = dir + "/../share/vigil/stdlib";
    if (access((beside + "/vigil/rules.lua").c_str(), R_OK) == 0) return beside;
  }
  return VIGIL_INSTALL_STDLIB_DIR;
}

std::string make_dirs(const std::string& path, unsigned mode) {
  if (path.empty()) return "empty path";
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return cur + ": " + errno_text(errno);
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return path + ": not a directory";
  return {};
}

}  // namespace vigil

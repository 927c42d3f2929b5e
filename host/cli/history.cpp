// `vigil events --since`: the event history files, read by the CLI itself
// (a long query never holds up the daemon's loop; it works without one).
#include <errno.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "host/cli/cli.hpp"

using nlohmann::json;

namespace vigil::cli {

// "90s", "30m", "1h", "2d", "1.5h" or plain seconds; -1 when not valid.
double parse_duration(const std::string& s) {
  char* end = nullptr;
  double v = strtod(s.c_str(), &end);
  if (!end || end == s.c_str() || v < 0) return -1;
  std::string unit(end);
  if (unit.empty() || unit == "s") return v;
  if (unit == "m") return v * 60;
  if (unit == "h") return v * 3600;
  if (unit == "d") return v * 86400;
  return -1;
}

// The events of the history files (oldest first: the rotated file, then
// the current one) at or after filter.since, of filter.watch and
// filter.id when given; the newest `limit` of them when limit > 0.
// nullopt and `error` (the path and why) when a file that is there, or
// the directory, cannot be read: silence would look like "no events".
std::optional<json> read_history(const std::string& path, const json& filter, size_t limit,
                                 std::string& error) {
  json out = json::array();
  if (path.empty()) return out;
  std::string since = filter["since"].get<std::string>();
  std::string watch = filter.value("watch", std::string());
  std::string id = filter.value("id", std::string());
  size_t missing = 0;
  for (const std::string& p : {path + ".1", path}) {
    FILE* f = fopen(p.c_str(), "re");
    if (!f) {
      int err = errno;
      if (err != ENOENT) {
        error = "cannot read the event history " + p + ": " + strerror(err);
        return std::nullopt;
      }
      ++missing;
      continue;
    }
    char* line = nullptr;
    size_t cap = 0;
    ssize_t n;
    errno = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
      std::string_view l(line, static_cast<size_t>(n));
      // Cheap checks before parsing: most lines of a long history are
      // about other watches or ids.
      if (!id.empty() && l.find("\"" + id + "\"") == std::string_view::npos) continue;
      if (!watch.empty() && l.find("\"" + watch + "\"") == std::string_view::npos) continue;
      json ev = json::parse(l, nullptr, false);
      if (!ev.is_object() || !ev["time"].is_string()) continue;
      if (ev["time"].get<std::string>() < since) continue;
      if (!id.empty() && ev.value("id", std::string()) != id) continue;
      if (!watch.empty() && (!ev["watch"].is_string() || ev["watch"].get<std::string>() != watch))
        continue;
      out.push_back(std::move(ev));
    }
    bool failed = ferror(f);
    int err = errno;
    free(line);
    fclose(f);
    if (failed) {
      error = "cannot read the event history " + p + ": " + strerror(err);
      return std::nullopt;
    }
  }
  if (missing == 2) {
    // No history yet is fine; a directory that is not there (or not ours
    // to look into) is not.
    std::string dir = path.substr(0, path.rfind('/'));
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
      error = "cannot read the event history in " + dir + ": " + strerror(errno);
      return std::nullopt;
    }
  }
  if (limit > 0 && out.size() > limit) out.erase(out.begin(), out.end() - static_cast<long>(limit));
  return out;
}

}  // namespace vigil::cli

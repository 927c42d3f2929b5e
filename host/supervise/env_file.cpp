#include "host/supervise/env_file.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/core/fd.hpp"
#include "host/core/strings.hpp"

namespace vigil {

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

bool valid_name(std::string_view k) {
  if (k.empty() || (k[0] >= '0' && k[0] <= '9')) return false;
  for (char c : k)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

// Larger than any environment a program can be given (ARG_MAX is 2 MB
// with the arguments): a bigger file is a mistake, not an environment.
constexpr off_t kMaxFile = 1 << 20;

}  // namespace

std::optional<std::string> parse_env_text(std::string_view text, const std::string& file,
                                          EnvList& out) {
  size_t i = 0, n = text.size();
  int line = 1;
  auto err = [&](int at, const std::string& what) {
    return file + ":" + std::to_string(at) + ": " + what;
  };
  while (i < n) {
    // Start of a line: blanks, then a comment, an empty line or a key.
    while (i < n && blank(text[i])) ++i;
    if (i == n) break;
    if (text[i] == '\n') {
      ++i, ++line;
      continue;
    }
    if (text[i] == '#' || text[i] == ';') {
      // A comment runs to the end of the line; as in systemd, a
      // backslash-newline continues it.
      while (i < n && text[i] != '\n') {
        if (text[i] == '\\' && i + 1 < n) ++i, line += text[i] == '\n';
        ++i;
      }
      continue;
    }
    int key_line = line;
    size_t k0 = i;
    while (i < n && text[i] != '=' && text[i] != '\n') ++i;
    if (i == n || text[i] == '\n') return err(key_line, "expected KEY=VALUE");
    size_t k1 = i;
    while (k1 > k0 && blank(text[k1 - 1])) --k1;
    std::string_view key = text.substr(k0, k1 - k0);
    if (!valid_name(key))
      return err(key_line, "'" + std::string(key) + "' is not a variable name");
    ++i;  // '='
    // As systemd's parser: `pre` is where a value part may start (after
    // '=', after a closing quote): blanks are skipped there and a quote
    // opens a quoted part; inside a bare part quotes are kept as they are.
    std::string value;
    size_t keep = 0;  // length of value without its trailing bare blanks
    bool pre = true;
    while (i < n && text[i] != '\n') {
      char c = text[i];
      if (pre && blank(c)) {
        ++i;
        continue;
      }
      if (pre && (c == '\'' || c == '"')) {
        int open_line = line;
        bool closed = false;
        for (++i; i < n; ++i) {
          char q = text[i];
          if (q == c) {
            closed = true;
            ++i;
            break;
          }
          if (c == '"' && q == '\\' && i + 1 < n) {
            char e = text[i + 1];
            if (e == '\n') {
              ++i, ++line;
              continue;
            }
            if (e == '"' || e == '\\' || e == '`' || e == '$') {
              value += e;
              ++i;
              continue;
            }
          }
          line += q == '\n';
          value += q;
        }
        if (!closed) return err(open_line, std::string("unterminated ") + c + " quote");
        keep = value.size();
        continue;  // still `pre`
      }
      pre = false;
      if (c == '\\' && i + 1 < n) {
        if (text[i + 1] == '\n') {
          i += 2, ++line;
          continue;
        }
        value += text[i + 1];
        keep = value.size();
        i += 2;
        continue;
      }
      value += c;
      if (!blank(c)) keep = value.size();
      ++i;
    }
    value.resize(keep);
    bool replaced = false;
    for (auto& [k, v] : out)
      if (k == key) v = value, replaced = true;
    if (!replaced) out.emplace_back(std::string(key), std::move(value));
  }
  return std::nullopt;
}

std::optional<std::string> read_env_file(const std::string& spec, EnvList& out) {
  bool optional = !spec.empty() && spec[0] == '-';
  std::string path = optional ? spec.substr(1) : spec;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    if (optional && errno == ENOENT) return std::nullopt;
    return path + ": " + errno_text(errno);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return path + ": " + errno_text(errno);
  if (S_ISDIR(st.st_mode)) return path + ": is a directory";
  if (!S_ISREG(st.st_mode)) return path + ": not a regular file";
  if (st.st_size > kMaxFile) return path + ": larger than 1 MB";
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t r = ::read(fd.get(), text.data() + got, text.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return path + ": " + errno_text(errno);
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  text.resize(got);
  return parse_env_text(text, path, out);
}

}  // namespace vigil

#include "host/api/tokens.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <sstream>

#include "host/core/fd.hpp"
#include "host/core/strings.hpp"
#include "host/net/tls.hpp"

namespace vigil {
namespace {

constexpr size_t kMaxFileBytes = 1 << 20;

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '@' || c == '-'))
      return false;
  return true;
}

bool valid_hash(const std::string& h) {
  if (h.size() != 64) return false;
  for (char c : h)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string mode_text(mode_t m) {
  char b[8];
  snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m & 07777));
  return b;
}

// The file's checks, on the open descriptor (no race with a rename).
bool check_file(int fd, const std::string& path, std::string& error) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return error = path + ": " + errno_text(errno), false;
  if (!S_ISREG(st.st_mode)) return error = path + ": not a regular file", false;
  if (st.st_uid != 0 && st.st_uid != geteuid())
    return error = path + ": owned by uid " + std::to_string(st.st_uid) +
                   ": must belong to root or vigil's own user",
           false;
  if (st.st_mode & 077)
    return error = path + ": mode " + mode_text(st.st_mode) +
                   ": must not be readable or writable by group or others (chmod 600)",
           false;
  if (st.st_size > static_cast<off_t>(kMaxFileBytes))
    return error = path + ": larger than 1 MiB: not a token file", false;
  return true;
}

bool read_all(int fd, const std::string& path, std::string& out, std::string& error) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return error = path + ": " + errno_text(errno), false;
    if (n == 0) return true;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxFileBytes) return error = path + ": larger than 1 MiB", false;
  }
}

bool write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

bool TokenFile::load(const std::string& path, std::string& error) {
  entries_.clear();
  path_ = path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return error = path + ": " + errno_text(errno), false;
  std::string text;
  if (!check_file(fd.get(), path, error) || !read_all(fd.get(), path, text, error)) return false;
  std::istringstream in(text);
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    std::istringstream fields(line);
    std::string name, hash, extra;
    fields >> name >> hash >> extra;
    std::string where = path + ":" + std::to_string(no) + ": ";
    if (hash.empty() || !extra.empty())
      return error = where + "expected \"NAME SHA256-HEX\" (vigil token add NAME writes it)", false;
    if (!valid_name(name)) return error = where + "name '" + name + "' is not valid ([A-Za-z0-9._@-], 1-64)", false;
    if (!valid_hash(hash)) return error = where + "'" + name + "': the hash must be 64 lower-case hex digits", false;
    for (auto& e : entries_)
      if (e.name == name) return error = where + "'" + name + "' appears twice", false;
    entries_.push_back({name, hash});
  }
  return true;
}

std::string TokenFile::verify(const std::string& token) const {
  if (token.empty() || entries_.empty()) return {};
  std::string err;
  std::string hash = sha256_hex(token, err);
  if (hash.empty()) return {};
  const Entry* found = nullptr;
  for (auto& e : entries_)  // no early exit: every line is compared
    if (constant_time_equal(hash, e.hash) && !found) found = &e;
  return found ? found->name : std::string();
}

bool TokenFile::add(const std::string& path, const std::string& name, std::string& token,
                    std::string& error) {
  if (!valid_name(name))
    return error = "token name '" + name + "' is not valid ([A-Za-z0-9._@-], 1-64 characters)", false;
  Fd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return error = path + ": " + errno_text(errno), false;
  TokenFile existing;
  struct stat st {};
  if (fstat(fd.get(), &st) == 0 && st.st_size > 0 && !existing.load(path, error)) return false;
  if (!check_file(fd.get(), path, error)) return false;
  for (auto& e : existing.entries_)
    if (e.name == name) return error = path + ": a token named '" + name + "' exists (vigil token remove " + name + " first)", false;
  unsigned char raw[32];
  if (getrandom(raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw))
    return error = "getrandom: " + errno_text(errno), false;
  static const char* hex = "0123456789abcdef";
  token = "vgl_";
  for (unsigned char c : raw) {
    token += hex[c >> 4];
    token += hex[c & 15];
  }
  std::string hash = sha256_hex(token, error);
  if (hash.empty()) return false;
  if (!write_all(fd.get(), name + " " + hash + "\n") || fsync(fd.get()) != 0)
    return error = path + ": " + errno_text(errno), false;
  return true;
}

bool TokenFile::remove(const std::string& path, const std::string& name, std::string& error) {
  std::string text;
  {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return error = path + ": " + errno_text(errno), false;
    if (!check_file(fd.get(), path, error) || !read_all(fd.get(), path, text, error)) return false;
  }
  std::istringstream in(text);
  std::string line, kept;
  bool found = false;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string n;
    f >> n;
    if (n == name) {
      found = true;
      continue;
    }
    kept += line + "\n";
  }
  if (!found) return error = path + ": no token named '" + name + "'", false;
  std::string tmp = path + ".new";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return error = tmp + ": " + errno_text(errno), false;
  if (!write_all(fd.get(), kept) || fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    error = path + ": " + errno_text(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace vigil

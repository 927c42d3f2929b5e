// TokenFile: the API's bearer tokens, stored hashed. One line per token,
// "NAME SHA256-HEX-OF-THE-TOKEN"; '#' starts a comment. The file must be a
// regular file owned by root or vigil's own user and readable by its owner
// only (0600 or stricter): a token file others can read is refused, with
// the path and the mode in the error. Tokens are compared in constant time
// and accepted only over TLS (host/api/api_server.cpp).
#pragma once

#include <string>
#include <vector>

namespace vigil {

class TokenFile {
 public:
  // Reads path; false with error ("/etc/vigil/tokens:3: ...", "/etc/vigil/tokens:
  // mode 0644: must not be readable by group or others (chmod 600)").
  bool load(const std::string& path, std::string& error);
  // The token's name, or empty when no line matches. Every line is
  // compared, each in constant time, so the time taken does not tell how
  // much of a hash matched or which line did.
  std::string verify(const std::string& token) const;
  size_t size() const { return entries_.size(); }
  const std::string& path() const { return path_; }

  // `vigil token add NAME`: a new random token ("vgl_" and 64 hex digits),
  // appended hashed to path (created 0600 when missing); the token itself
  // is returned (printed once, never stored). False with error when the
  // name is taken or not valid ([A-Za-z0-9._@-], 1-64 characters), or the
  // file is refused as load() refuses it.
  static bool add(const std::string& path, const std::string& name, std::string& token,
                  std::string& error);
  // `vigil token remove NAME`: rewrites path without that name's line.
  static bool remove(const std::string& path, const std::string& name, std::string& error);

 private:
  struct Entry {
    std::string name;
    std::string hash;  // lower-case hex SHA-256
  };
  std::vector<Entry> entries_;
  std::string path_;
};

}  // namespace vigil

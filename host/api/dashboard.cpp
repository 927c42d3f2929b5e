#include "host/api/dashboard.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <optional>

#include "host/api/api_server.hpp"
#include "host/control/routes.hpp"
#include "host/core/fd.hpp"
#include "host/net/tls.hpp"

namespace vigil {

const char* const kDashboardCsp = "default-src 'self'; frame-ancestors 'none'";

namespace {

namespace fs = std::filesystem;

// A rule file the form sends: a rule file is small; this bounds the
// check's work (the listener bounds the body at 1 MiB already).
constexpr size_t kMaxRuleText = 256 * 1024;
// The most of a process's output one request reads.
constexpr size_t kMaxOutputTail = 256 * 1024;

std::string_view content_type(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

const WebAsset* find_asset(std::string_view name) {
  for (const auto& a : web_assets())
    if (a.name == name) return &a;
  return nullptr;
}

void send_asset(HttpReply& reply, std::string_view name) {
  const WebAsset* a = find_asset(name);
  if (!a) return reply.error(404, "no dashboard file '" + std::string(name) + "'");
  reply.send(200, content_type(name), std::string(a->body),
             {{"Content-Security-Policy", kDashboardCsp},
              {"X-Content-Type-Options", "nosniff"},
              {"Referrer-Policy", "no-referrer"},
              {"Cache-Control", "no-cache"}});
}

void send_json(HttpReply& reply, int status, nlohmann::json body) {
  if (status != 200) body["http_status"] = status;
  send_control_reply(reply, body);
}

void fail(HttpReply& reply, int status, const std::string& error, nlohmann::json more = {}) {
  nlohmann::json body = more.is_object() ? std::move(more) : nlohmann::json::object();
  body["ok"] = false;
  body["error"] = error;
  send_json(reply, status, std::move(body));
}

// The whole file, or nullopt when it does not exist (error set when it
// exists and cannot be read).
std::optional<std::string> read_rule_file(const std::string& path, std::string& error) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno != ENOENT) error = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return error = path + ": " + std::strerror(errno), std::nullopt;
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 16 * kMaxRuleText) return error = path + ": too large", std::nullopt;
  }
  return out;
}

// Content hash of a rule file's text: what the form sends back to say
// which version it edited. "" for a file that does not exist.
std::string content_hash(const std::optional<std::string>& text, std::string& error) {
  if (!text) return "";
  std::string h = sha256_hex(*text, error);
  return h.empty() ? "" : "sha256:" + h;
}

// Writes path atomically (a temporary file in the same directory, then a
// rename): a reload never reads half a file.
bool write_atomically(const std::string& path, const std::string& text, std::string& error) {
  std::string tmp = path + ".dashboard-tmp";  // not *.lua: never loaded as a rule file
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return error = tmp + ": " + std::strerror(errno), false;
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = tmp + ": " + std::strerror(errno);
        ::unlink(tmp.c_str());
        return false;
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      error = tmp + ": " + std::strerror(errno);
      ::unlink(tmp.c_str());
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

// A temporary directory, removed with what it holds when it goes.
struct TempDir {
  std::string path;
  TempDir() {
    std::error_code ec;
    std::string base = (fs::temp_directory_path(ec) / "vigil-check-XXXXXX").string();
    std::vector<char> buf(base.begin(), base.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data())) path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// "name" and "text" (and "hash") of a POST body; nullopt after answering 400.
struct RuleRequest {
  std::string name, text, hash;
  bool has_hash = false;
};
std::optional<RuleRequest> rule_request(HttpRequest& req, HttpReply& reply) {
  auto j = nlohmann::json::parse(req.body, nullptr, false);
  if (!j.is_object()) return fail(reply, 400, "the body is not a JSON object"), std::nullopt;
  RuleRequest r;
  auto str = [&](const char* key, std::string& out, bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) fail(reply, 400, std::string("'") + key + "' is required");
      return !required;
    }
    if (!it->is_string()) {
      fail(reply, 400, std::string("'") + key + "' must be a string");
      return false;
    }
    out = it->get<std::string>();
    return true;
  };
  if (!str("name", r.name, true) || !str("text", r.text, true)) return std::nullopt;
  r.has_hash = j.contains("hash") && !j["hash"].is_null();
  if (!str("hash", r.hash, false)) return std::nullopt;
  if (!valid_rule_file_name(r.name))
    return fail(reply, 400,
                "'" + r.name.substr(0, 80) +
                    "' is not a rule file name the dashboard writes (lower-case letters, digits, "
                    "'_' and '-', ending in .lua; no directories)"),
           std::nullopt;
  if (r.text.size() > kMaxRuleText)
    return fail(reply, 413, "the rule text is larger than " + std::to_string(kMaxRuleText) + " bytes"),
           std::nullopt;
  return r;
}

// The last `bytes` of path (from a line's start when the cut is not at the
// file's start), and the file's size.
bool read_tail(const std::string& path, size_t bytes, std::string& text, uint64_t& size,
               std::string& error) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return size = 0, text.clear(), true;  // nothing written yet
    return error = path + ": " + std::strerror(errno), false;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return error = path + ": " + std::strerror(errno), false;
  size = static_cast<uint64_t>(st.st_size);
  uint64_t from = size > bytes ? size - bytes : 0;
  text.assign(static_cast<size_t>(size - from), '\0');
  ssize_t n = ::pread(fd.get(), text.data(), text.size(), static_cast<off_t>(from));
  if (n < 0) return error = path + ": " + std::strerror(errno), false;
  text.resize(static_cast<size_t>(n));
  if (from > 0) {
    size_t nl = text.find('\n');
    if (nl != std::string::npos) text.erase(0, nl + 1);
  }
  return true;
}

nlohmann::json error_list(const std::vector<std::string>& errors) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : errors) out.push_back(parse_rule_error(e));
  return out;
}

}  // namespace

// Plain string scans, not std::regex: libstdc++'s regex recurses per
// character (a long error text could exhaust the stack) and trips GCC's
// maybe-uninitialized warnings under the sanitizers.
bool valid_rule_file_name(std::string_view name) {
  if (name.size() <= 4 || name.size() > 128 || !name.ends_with(".lua")) return false;
  for (char c : name.substr(0, name.size() - 4))
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

bool dashboard_public(std::string_view method, std::string_view path) {
  if (method != "GET" && method != "HEAD") return false;
  return path == "/" || path == "/ui" || path.rfind("/ui/", 0) == 0 || path == "/favicon.ico";
}

namespace {

bool key_char(char c, bool brackets) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         (brackets && (c == '.' || c == '[' || c == ']'));
}

// The key a declaration error names: "watch 'w'.restart.limit: ..." or
// "group 'g': 'strategy' ...".
std::string error_key(std::string_view message) {
  if (!message.starts_with("watch '") && !message.starts_with("group '")) return "";
  size_t close = message.find('\'', 7);
  if (close == std::string_view::npos) return "";
  std::string_view rest = message.substr(close + 1);
  size_t n = 0;
  if (rest.starts_with(".")) {
    rest.remove_prefix(1);
    while (n < rest.size() && key_char(rest[n], true)) ++n;
    return std::string(rest.substr(0, n));
  }
  if (!rest.starts_with(": '")) return "";
  rest.remove_prefix(3);
  while (n < rest.size() && key_char(rest[n], false)) ++n;
  return n > 0 && n < rest.size() && rest[n] == '\'' ? std::string(rest.substr(0, n)) : "";
}

}  // namespace

nlohmann::json parse_rule_error(const std::string& error) {
  nlohmann::json out = {{"file", ""}, {"line", 0}, {"message", error}, {"key", ""}};
  // FILE.lua:LINE: MESSAGE, at the first ".lua:" that digits and ": " follow.
  for (size_t at = error.find(".lua:"); at != std::string::npos; at = error.find(".lua:", at + 1)) {
    size_t digits = at + 5, end = digits;
    while (end < error.size() && std::isdigit(static_cast<unsigned char>(error[end]))) ++end;
    if (end == digits || error.compare(end, 2, ": ") != 0) continue;
    std::string file = error.substr(0, at + 4);
    size_t slash = file.rfind('/');
    out["file"] = slash == std::string::npos ? file : file.substr(slash + 1);
    out["line"] = std::stoi(error.substr(digits, std::min<size_t>(end - digits, 9)));
    std::string message = error.substr(end + 2);
    out["key"] = error_key(message);
    out["message"] = std::move(message);
    return out;
  }
  return out;
}

std::vector<std::string> check_candidate(const DashboardHooks& hooks, const std::string& name,
                                         const std::string& text, std::string& error) {
  TempDir tmp;
  if (tmp.path.empty()) return error = std::string("mkdtemp: ") + std::strerror(errno), std::vector<std::string>{};
  std::error_code ec;
  // The others as they are on disk, and lib/ for their require.
  for (const auto& e : fs::directory_iterator(hooks.rules_dir, ec)) {
    std::string f = e.path().filename().string();
    if (f == name) continue;
    bool rule = f.size() > 4 && f.substr(f.size() - 4) == ".lua";
    if (!rule && f != "lib") continue;
    fs::create_symlink(e.path(), fs::path(tmp.path) / f, ec);
    if (ec) return error = "cannot link " + e.path().string() + ": " + ec.message(), std::vector<std::string>{};
  }
  std::string werr;
  if (!write_atomically(tmp.path + "/" + name, text, werr)) return error = werr, std::vector<std::string>{};
  std::vector<std::string> errors = hooks.check(tmp.path);
  // The user's file names, not the temporary directory's.
  for (auto& e : errors)
    for (size_t at; (at = e.find(tmp.path + "/")) != std::string::npos;)
      e.replace(at, tmp.path.size(), hooks.rules_dir);
  return errors;
}

void add_dashboard_routes(HttpRouter& router, DashboardHooks hooks) {
  auto h = std::make_shared<DashboardHooks>(std::move(hooks));
  router.add("GET", "/", [](HttpRequest&, HttpReply reply) { send_asset(reply, "index.html"); });
  router.add("GET", "/ui", [](HttpRequest&, HttpReply reply) { send_asset(reply, "index.html"); });
  router.add("GET", "/ui/{file}", [](HttpRequest& req, HttpReply reply) {
    send_asset(reply, req.param("file"));
  });
  // Browsers ask for it on their own: nothing, rather than a 404 in their console.
  router.add("GET", "/favicon.ico", [](HttpRequest&, HttpReply reply) { reply.send(204, "", ""); });

  router.add("GET", "/v1/whoami", [h](HttpRequest& req, HttpReply reply) {
    nlohmann::json id = identity_json(req.identity);
    // "operate": may it act? The rules' answer for an action's path.
    bool operate = h->authorize && h->authorize(id, "POST", "/v1/reload").first;
    send_json(reply, 200, {{"ok", true}, {"identity", id}, {"operate", operate},
                           {"rules_dir", !h->rules_dir.empty()}});
  });

  router.add("GET", "/v1/schema/{kind}", [h](HttpRequest& req, HttpReply reply) {
    std::string kind = req.param("kind");
    nlohmann::json s = h->schema ? h->schema(kind) : nlohmann::json();
    if (!s.is_object()) return fail(reply, 404, "no rule kind '" + kind.substr(0, 40) + "' (watch, group)");
    send_json(reply, 200, {{"ok", true}, {"kind", kind}, {"schema", std::move(s)}});
  });

  router.add("GET", "/v1/watches/{name}/output", [h](HttpRequest& req, HttpReply reply) {
    std::string name = req.param("name");
    const std::string* stream = req.query_value("stream");
    std::string which = stream ? *stream : "stdout";
    if (which != "stdout" && which != "stderr")
      return fail(reply, 400, "stream: 'stdout' or 'stderr', got '" + which.substr(0, 20) + "'");
    size_t bytes = 16384;
    if (const std::string* b = req.query_value("bytes")) {
      char* end = nullptr;
      unsigned long v = std::strtoul(b->c_str(), &end, 10);
      if (b->empty() || *end || v == 0 || v > kMaxOutputTail)
        return fail(reply, 400, "bytes: a number from 1 to " + std::to_string(kMaxOutputTail));
      bytes = v;
    }
    std::string why;
    int status = 409;
    std::string path = h->output_path ? h->output_path(name, which == "stderr", why, status) : "";
    if (path.empty()) return fail(reply, status, why.empty() ? "no output" : why);
    std::string text, err;
    uint64_t size = 0;
    if (!read_tail(path, bytes, text, size, err)) return fail(reply, 500, err);
    send_json(reply, 200, {{"ok", true}, {"name", name}, {"stream", which}, {"size", size},
                           {"truncated", size > text.size()},
                           // Bytes that are not UTF-8 are replaced when the reply is written.
                           {"text", std::move(text)}});
  });

  router.add("GET", "/v1/rules", [h](HttpRequest&, HttpReply reply) {
    if (h->rules_dir.empty()) return fail(reply, 409, "the rules are one file, not a directory");
    nlohmann::json files = nlohmann::json::array();
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(h->rules_dir, ec)) {
      std::string f = e.path().filename().string();
      if (f.size() > 4 && f.substr(f.size() - 4) == ".lua") names.push_back(f);
    }
    std::sort(names.begin(), names.end());
    for (const auto& f : names) {
      std::string err;
      auto text = read_rule_file(h->rules_dir + "/" + f, err);
      files.push_back({{"name", f}, {"hash", content_hash(text, err)},
                       {"writable", valid_rule_file_name(f)}});
    }
    send_json(reply, 200, {{"ok", true}, {"files", std::move(files)}});
  });

  router.add("GET", "/v1/rules/{name}", [h](HttpRequest& req, HttpReply reply) {
    std::string name = req.param("name");
    if (h->rules_dir.empty()) return fail(reply, 409, "the rules are one file, not a directory");
    if (!valid_rule_file_name(name)) return fail(reply, 400, "not a rule file name: [a-z0-9_-]+.lua");
    std::string err;
    auto text = read_rule_file(h->rules_dir + "/" + name, err);
    if (!err.empty()) return fail(reply, 500, err);
    std::string hash = content_hash(text, err);
    if (!err.empty()) return fail(reply, 500, err);
    send_json(reply, 200, {{"ok", true}, {"name", name}, {"exists", text.has_value()},
                           {"text", text.value_or("")}, {"hash", hash}});
  });

  router.add("POST", "/v1/rules/check", [h](HttpRequest& req, HttpReply reply) {
    if (h->rules_dir.empty()) return fail(reply, 409, "the rules are one file, not a directory");
    auto r = rule_request(req, reply);
    if (!r) return;
    std::string err;
    auto errors = check_candidate(*h, r->name, r->text, err);
    if (!err.empty()) return fail(reply, 500, err);
    if (!errors.empty())
      return fail(reply, 400, errors.front(), {{"errors", error_list(errors)}});
    send_json(reply, 200, {{"ok", true}, {"name", r->name}, {"errors", nlohmann::json::array()}});
  });

  router.add("POST", "/v1/rules/write", [h](HttpRequest& req, HttpReply reply) {
    if (h->rules_dir.empty()) return fail(reply, 409, "the rules are one file, not a directory");
    auto r = rule_request(req, reply);
    if (!r) return;
    if (!r->has_hash)
      return fail(reply, 400, "'hash' is required: the hash the form read (\"\" for a new file)");
    std::string path = h->rules_dir + "/" + r->name;
    std::string err;
    auto before = read_rule_file(path, err);
    if (!err.empty()) return fail(reply, 500, err);
    std::string now = content_hash(before, err);
    if (!err.empty()) return fail(reply, 500, err);
    if (now != r->hash)
      return fail(reply, 409,
                  r->hash.empty() ? r->name + " was created on disk since the form was opened: "
                                              "reload the form to see it"
                  : now.empty()   ? r->name + " was removed from disk since the form read it"
                                  : r->name + " changed on disk since the form read it: reload "
                                              "the form (nothing was written)",
                  {{"changed", true}, {"hash", now}});
    auto errors = check_candidate(*h, r->name, r->text, err);
    if (!err.empty()) return fail(reply, 500, err);
    if (!errors.empty())
      return fail(reply, 400, errors.front(), {{"errors", error_list(errors)}});
    if (!write_atomically(path, r->text, err)) return fail(reply, 500, err);
    errors = h->reload();
    if (!errors.empty()) {
      // The running rules stayed as they were; so does the file.
      std::string back;
      bool restored = before ? write_atomically(path, *before, back) : ::unlink(path.c_str()) == 0;
      if (restored) h->reload();
      return fail(reply, 400, errors.front(),
                  {{"errors", error_list(errors)}, {"restored", restored}});
    }
    std::string hash = content_hash(r->text, err);
    send_json(reply, 200, {{"ok", true}, {"name", r->name}, {"hash", hash},
                           {"created", !before.has_value()}});
  });
}

}  // namespace vigil

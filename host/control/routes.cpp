#include "host/control/routes.hpp"

#include <charconv>
#include <set>

#include "host/control/protocol.hpp"

namespace vigil {

namespace {

using T = ControlField::Type;

// The verbs that act on a watch or a group.
#define VIGIL_ACTIONS(X) X(start) X(stop) X(restart) X(pause) X(resume)

const std::vector<ControlRoute> kRoutes = {
    {"status", "GET", "/v1/status", {}, ""},
    {"ping", "GET", "/v1/ping", {}, ""},
    {"inspect", "GET", "/v1/watches/{name}", {{"events", T::Integer}}, ""},
    {"inspect", "GET", "/v1/groups/{name}", {{"events", T::Integer}}, R"({"kind":"group"})"},
    {"inspect", "GET", "/v1/inspect", {{"names", T::List}, {"events", T::Integer}}, ""},
    {"events",
     "GET",
     "/v1/events",
     {{"since", T::Integer}, {"max", T::Integer}, {"n", T::Integer}, {"watch", T::String},
      {"id", T::String}},
     ""},
    {"explain", "GET", "/v1/explain/{name}", {}, ""},
    {"logs", "GET", "/v1/watches/{name}/logs", {}, ""},
    {"wait",
     "GET",
     "/v1/watches/{name}/wait",
     {{"until", T::String}, {"timeout_ms", T::Integer}},
     ""},
    {"dumps", "GET", "/v1/dumps", {{"watch", T::String}}, ""},
    {"metrics", "GET", "/v1/metrics", {}, ""},
    {"metrics", "GET", "/v1/watches/{name}/metrics", {}, ""},
    {"discover", "GET", "/v1/discover", {}, ""},
#define VIGIL_ROUTE(v) {#v, "POST", "/v1/watches/{name}/" #v, {}, ""},
    VIGIL_ACTIONS(VIGIL_ROUTE)
#undef VIGIL_ROUTE
#define VIGIL_ROUTE(v) {#v, "POST", "/v1/groups/{name}/" #v, {}, R"({"kind":"group"})"},
    VIGIL_ACTIONS(VIGIL_ROUTE)
#undef VIGIL_ROUTE
    {"pause", "POST", "/v1/all/pause", {}, R"({"all":true})"},
    {"resume", "POST", "/v1/all/resume", {}, R"({"all":true})"},
    {"signal", "POST", "/v1/watches/{name}/signal", {{"signal", T::String}}, ""},
    {"signal", "POST", "/v1/groups/{name}/signal", {{"signal", T::String}}, R"({"kind":"group"})"},
    {"set",
     "POST",
     "/v1/watches/{name}/set",
     {{"key", T::String}, {"value", T::String}, {"default", T::Flag}},
     ""},
    {"set",
     "POST",
     "/v1/groups/{name}/set",
     {{"key", T::String}, {"value", T::String}, {"default", T::Flag}},
     R"({"kind":"group"})"},
    {"failover", "POST", "/v1/groups/{name}/failover", {{"to", T::String}}, R"({"kind":"group"})"},
    {"cluster", "GET", "/v1/cluster", {}, ""},
    {"reload", "POST", "/v1/reload", {}, ""},
    {"quit", "POST", "/v1/quit", {{"keep", T::Flag}}, ""},
    // The JSON request as it is, for any command (what the socket spoke
    // before it spoke HTTP): tests and tools that build requests
    // themselves. Not for the remote API: authorization there goes by
    // method and path.
    {"", "POST", "/v1/command", {}, ""},
};
#undef VIGIL_ACTIONS

std::vector<std::string_view> path_fields(std::string_view pattern) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while ((i = pattern.find('{', i)) != std::string_view::npos) {
    size_t j = pattern.find('}', i);
    out.push_back(pattern.substr(i + 1, j - i - 1));
    i = j;
  }
  return out;
}

nlohmann::json fixed_of(const ControlRoute& r) {
  return r.fixed.empty() ? nlohmann::json::object() : nlohmann::json::parse(r.fixed);
}

const char* type_words(T t) {
  switch (t) {
    case T::Integer: return "an integer";
    case T::Flag: return "true or false";
    case T::List: return "a comma-separated list";
    default: return "a string";
  }
}

// Query text → the field's JSON value.
bool typed(const ControlField& f, const std::string& text, nlohmann::json& out) {
  switch (f.type) {
    case T::String: out = text; return true;
    case T::Flag:
      if (text == "true" || text == "1" || text.empty()) out = true;
      else if (text == "false" || text == "0") out = false;
      else return false;
      return true;
    case T::Integer: {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || p != text.data() + text.size() || text.empty()) return false;
      out = v;
      return true;
    }
    case T::List: {
      out = nlohmann::json::array();
      size_t i = 0;
      while (i <= text.size() && !text.empty()) {
        size_t j = text.find(',', i);
        if (j == std::string::npos) j = text.size();
        if (j > i) out.push_back(text.substr(i, j - i));
        i = j + 1;
      }
      return true;
    }
  }
  return false;
}

// JSON value → query text; false when it is not of the field's type.
bool untyped(const ControlField& f, const nlohmann::json& v, std::string& out) {
  switch (f.type) {
    case T::String:
      if (!v.is_string()) return false;
      out = v.get<std::string>();
      return true;
    case T::Flag:
      if (!v.is_boolean()) return false;
      out = v.get<bool>() ? "true" : "false";
      return true;
    case T::Integer:
      if (!v.is_number_integer()) return false;
      out = v.dump();
      return true;
    case T::List:
      if (!v.is_array()) return false;
      out.clear();
      for (const auto& item : v) {
        if (!item.is_string() || item.get_ref<const std::string&>().find(',') != std::string::npos)
          return false;
        out += (out.empty() ? "" : ",") + item.get<std::string>();
      }
      return true;
  }
  return false;
}

}  // namespace

const std::vector<ControlRoute>& control_routes() { return kRoutes; }

std::optional<nlohmann::json> control_request_from_http(const ControlRoute& route,
                                                        const HttpRequest& request,
                                                        std::string& error) {
  nlohmann::json req = nlohmann::json::object();
  if (route.method == "POST" && !request.body.empty()) {
    if (route.cmd.empty()) return parse_request(request.body, error);  // Daemon::handle checks it
    req = nlohmann::json::parse(request.body, nullptr, false);
    if (req.is_discarded()) {
      error = "the request body is not JSON";
      return std::nullopt;
    }
    if (!req.is_object()) {
      error = "the request body must be a JSON object, got " + std::string(req.type_name());
      return std::nullopt;
    }
  } else if (route.cmd.empty()) {
    error = "POST " + std::string(route.pattern) + " needs the JSON request as its body";
    return std::nullopt;
  }
  for (const auto& [key, text] : request.query) {
    const ControlField* f = nullptr;
    for (const auto& c : route.fields)
      if (c.name == key) f = &c;
    if (!f) {
      std::string known;
      for (const auto& c : route.fields) known += (known.empty() ? "" : ", ") + std::string(c.name);
      error = "unknown query parameter '" + key + "' for " + std::string(route.method) + " " +
              std::string(route.pattern) + (known.empty() ? " (it takes none)" : " (it takes " + known + ")");
      return std::nullopt;
    }
    nlohmann::json v;
    if (!typed(*f, text, v)) {
      error = "query parameter '" + key + "': '" + text + "' is not " + type_words(f->type);
      return std::nullopt;
    }
    req[key] = std::move(v);
  }
  for (auto p : path_fields(route.pattern)) req[std::string(p)] = request.param(p);
  nlohmann::json fixed = fixed_of(route);  // kept: items() refers to it
  for (auto& [k, v] : fixed.items()) req[k] = v;
  req["cmd"] = std::string(route.cmd);
  return req;
}

std::optional<ControlHttpCall> control_http_call(const nlohmann::json& request, std::string& error) {
  if (!request.is_object() || !request.contains("cmd") || !request["cmd"].is_string()) {
    error = "a control request is a JSON object with a string \"cmd\"";
    return std::nullopt;
  }
  const std::string& cmd = request["cmd"].get_ref<const std::string&>();
  bool known = false;
  for (const auto& r : kRoutes) {
    if (r.cmd.empty() || r.cmd != cmd) continue;
    known = true;
    auto params = path_fields(r.pattern);
    auto fixed = fixed_of(r);
    bool fits = true;
    std::set<std::string, std::less<>> used = {"cmd"};
    for (auto p : params) {
      auto it = request.find(std::string(p));
      if (it == request.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
        fits = false;
        break;
      }
      used.emplace(p);
    }
    for (auto& [k, v] : fixed.items()) {
      auto it = request.find(k);
      if (it == request.end() || *it != v) fits = false;
      used.insert(k);
    }
    if (!fits) continue;
    // Every other field must be one the route takes.
    std::string query, target;
    nlohmann::json body = nlohmann::json::object();
    for (auto& [k, v] : request.items()) {
      if (used.contains(k)) continue;
      const ControlField* f = nullptr;
      for (const auto& c : r.fields)
        if (c.name == k) f = &c;
      if (!f) {
        fits = false;
        break;
      }
      if (r.method == "POST") {
        body[k] = v;
        continue;
      }
      std::string text;
      if (!untyped(*f, v, text)) {
        fits = false;
        break;
      }
      query += (query.empty() ? "?" : "&") + percent_encode(k) + "=" + percent_encode(text);
    }
    if (!fits) continue;
    // The pattern with its {fields} filled in, percent-encoded.
    std::string_view pat = r.pattern;
    size_t i = 0;
    while (i < pat.size()) {
      size_t open = pat.find('{', i);
      if (open == std::string_view::npos) {
        target += pat.substr(i);
        break;
      }
      size_t close = pat.find('}', open);
      target += pat.substr(i, open - i);
      target += percent_encode(request[std::string(pat.substr(open + 1, close - open - 1))].get<std::string>());
      i = close + 1;
    }
    ControlHttpCall call{std::string(r.method), target + query, ""};
    if (r.method == "POST")
      call.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return call;
  }
  error = known ? "no route takes this '" + cmd + "' request: " +
                      request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 200)
                : "unknown command '" + cmd + "'";
  return std::nullopt;
}

int control_reply_status(const nlohmann::json& reply) {
  if (!reply.is_object()) return 500;
  auto ok = reply.find("ok");
  if (ok != reply.end() && ok->is_boolean() && ok->get<bool>()) return 200;
  auto st = reply.find("http_status");
  if (st != reply.end() && st->is_number_integer()) {
    int s = st->get<int>();
    if (s >= 400 && s <= 599) return s;
  }
  return 400;
}

void send_control_reply(HttpReply& reply, const nlohmann::json& body) {
  reply.send(control_reply_status(body), "application/json",
             body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

void add_control_routes(HttpRouter& router, ControlHandle handle, ControlTextHandlers text,
                        const std::function<bool(const ControlRoute&)>& keep) {
  struct Handlers {
    ControlHandle handle;
    ControlTextHandlers text;
  };
  auto shared = std::make_shared<Handlers>(Handlers{std::move(handle), std::move(text)});
  for (const auto& r : kRoutes) {
    if (keep && !keep(r)) continue;
    const ControlRoute* route = &r;
    router.add(std::string(r.method), std::string(r.pattern),
               [route, shared](HttpRequest& request, HttpReply reply) {
                 std::string error;
                 auto req = control_request_from_http(*route, request, error);
                 if (!req) return send_control_reply(reply, error_reply(error));
                 // Only a string cmd names a text handler; anything else
                 // goes to the handler, which checks every field's type.
                 if (auto cmd = req->find("cmd"); cmd != req->end() && cmd->is_string())
                   if (auto th = shared->text.find(cmd->get_ref<const std::string&>()); th != shared->text.end()) {
                     std::string body = th->second(*req);
                     body += '\n';
                     return reply.send(200, "application/json", std::move(body));
                   }
                 shared->handle(*req, std::move(reply));
               });
  }
}

std::string control_error_body(int status, const std::string& message, std::string& content_type) {
  content_type = "application/json";
  return error_reply(message, status == 400 ? 0 : status)
             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

}  // namespace vigil

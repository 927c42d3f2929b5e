#include "host/control/protocol.hpp"

namespace vigil {

std::optional<nlohmann::json> parse_request(const std::string& line, std::string& error) {
  if (line.size() > kMaxRequestBytes) {
    error = "request too large";
    return std::nullopt;
  }
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded()) {
    error = "request is not valid JSON";
    return std::nullopt;
  }
  if (!j.is_object()) {
    error =
        std::string("request must be a JSON object with a string \"cmd\", got ") + j.type_name();
    return std::nullopt;
  }
  return j;
}

nlohmann::json ok_reply(nlohmann::json fields) {
  if (!fields.is_object()) fields = nlohmann::json::object();
  fields["ok"] = true;
  return fields;
}

nlohmann::json error_reply(const std::string& error, int http_status) {
  nlohmann::json r = {{"ok", false}, {"error", error}};
  if (http_status) r["http_status"] = http_status;
  return r;
}

}  // namespace vigil

#include "host/api/rule_check.hpp"

#include "host/api/api_server.hpp"

namespace vigil {

RuleCheck check_rules(const RuntimeOptions& options, const std::string& path) {
  RuleCheck out;
  RuleRuntime rt(options, HostContext{});
  LoadResult res = rt.load(path);
  out.files = res.files.size();
  if (!res.ok) {
    out.errors = std::move(res.errors);
    return out;
  }
  out.watches = rt.declarations().size();
  if (nlohmann::json api = rt.api(); !api.is_null()) {
    std::string e;
    auto spec = ApiSpec::from_json(api, e);
    if (!spec) out.errors.push_back(e);
    else ApiServer::prepare(*spec, out.errors);
  }
  return out;
}

}  // namespace vigil

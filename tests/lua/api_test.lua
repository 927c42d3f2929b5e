-- vigil.api: the api { } declaration's checks and the default authorization.
local T = require "testing"

local function fresh()
  package.loaded["vigil.api"] = nil
  return require "vigil.api"
end

T.test("a TLS listener with tokens, client certificates and operators", function()
  local api = fresh()
  T.eq(#T.errors_of(function()
    api.declare { listen = "10.1.0.2:8443", cert = "/e/api.pem", key = "/e/api.key",
                  client_ca = "/e/ca.pem", tokens = "/e/tokens", operators = { "console-1" } }
  end), 0, "accepted")
  local d = api.declared()
  T.eq(d.listen, "10.1.0.2:8443", "listen")
  T.eq(d.operators[1], "console-1", "operators")
  T.contains(d.where, "api_test.lua", "where")
end)

T.test("plain HTTP only on loopback", function()
  for _, l in ipairs { "127.0.0.1:9000", "[::1]:9000", "localhost:9000" } do
    local api = fresh()
    T.eq(#T.errors_of(function() api.declare { listen = l } end), 0, l)
  end
  for _, l in ipairs { "0.0.0.0:8443", "10.1.0.2:8443", "[::]:8443", "nodeb:8443" } do
    local api = fresh()
    local errs = T.errors_of(function() api.declare { listen = l } end)
    T.eq(#errs, 1, l)
    T.contains(errs[1], "is not a loopback address: set 'cert' and 'key'", l)
  end
end)

T.test("bad declarations name the key", function()
  local cases = {
    { { listen = "8443" }, "api.listen: expected \"host:port\"" },
    { { listen = "127.0.0.1:70000" }, "port 1-65535" },
    { { listen = "127.0.0.1:1", cert = "api.pem", key = "/k" }, "api.cert: an absolute file path is required, got 'api.pem'" },
    { { listen = "127.0.0.1:1", cert = "/c" }, "'cert' and 'key' go together" },
    { { listen = "127.0.0.1:1", tokens = "/t" }, "'tokens' are accepted only over TLS" },
    { { listen = "127.0.0.1:1", client_ca = "/c" }, "'client_ca' needs 'cert' and 'key'" },
    { { cert = "/c", key = "/k" }, "'listen' is required" },
    { { listen = "127.0.0.1:1", tls = true }, "api: unknown key 'tls'" },
  }
  for i, c in ipairs(cases) do
    local api = fresh()
    local at = T.here() local errs = T.errors_of(function() api.declare(c[1]) end)
    T.eq(#errs >= 1, true, "case " .. i)
    T.contains(errs[1], at, "file:line " .. i)
    T.contains(errs[1], c[2], "case " .. i)
    T.eq(api.declared(), nil, "not declared " .. i)
  end
  local api = fresh()
  api.declare { listen = "127.0.0.1:1" }
  local errs = T.errors_of(function() api.declare { listen = "127.0.0.1:2" } end)
  T.contains(errs[1], "api: declared twice", "twice")
end)

T.test("default authorization: nothing anonymous, reads for all, actions for operators", function()
  local api = fresh()
  api.declare { listen = "127.0.0.1:1", cert = "/c", key = "/k", operators = { "ops" } }
  local anon = { kind = "anonymous", tls = true }
  local reader = { kind = "certificate", name = "console-1", tls = true }
  local ops = { kind = "token", name = "ops", tls = true }
  local ok, why = api.authorize(anon, "GET", "/v1/status")
  T.eq(ok, false, "anonymous read")
  T.eq(why, "authentication required", "why")
  T.eq(api.authorize(reader, "GET", "/v1/status"), true, "read")
  ok, why = api.authorize(reader, "POST", "/v1/watches/db/restart")
  T.eq(ok, false, "reader acts")
  T.contains(why, "'console-1' may read only", "why")
  T.eq(api.authorize(ops, "POST", "/v1/watches/db/restart"), true, "operator acts")
  -- A rule file's text is for those who may write it; the list of files is a read.
  T.eq(api.authorize(reader, "GET", "/v1/rules"), true, "reader lists the rule files")
  ok, why = api.authorize(reader, "GET", "/v1/rules/web.lua")
  T.eq(ok, false, "reader reads a rule file's text")
  T.contains(why, "may read only", "why")
  T.eq(api.authorize(ops, "GET", "/v1/rules/web.lua"), true, "operator reads it")
  -- So is a process's output.
  T.eq(api.authorize(reader, "GET", "/v1/watches/db/output"), false, "reader reads output")
  T.eq(api.authorize(ops, "GET", "/v1/watches/db/output"), true, "operator reads output")
  T.eq(api.authorize(reader, "GET", "/v1/watches/db"), true, "reader reads the watch")
end)

T.test("vigil run --api-listen declares it first: a rule file's api { } is then declared twice", function()
  local api = fresh()
  T.eq(#T.errors_of(function() api.preset { listen = "127.0.0.1:9000", operators = { "ops" } } end), 0, "preset")
  T.eq(api.declared().where, "--api-listen", "where")
  T.eq(api.declared().operators[1], "ops", "operators from the command line")
  local errs = T.errors_of(function() api.declare { listen = "127.0.0.1:9001" } end)
  T.eq(#errs, 1, "one error")
  T.contains(errs[1], "declared twice (at --api-listen)", "names the command line")
  local bad = fresh()
  errs = T.errors_of(function() bad.preset { listen = "10.0.0.1:8443" } end)
  T.contains(errs[1], "--api-listen: api: listen '10.0.0.1:8443' is not a loopback address", "checked the same")
end)

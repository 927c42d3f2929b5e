--- vigil.api: the remote API's declaration and its authorization policy.
--
--   api { listen = "10.1.0.2:8443", cert = "/etc/vigil/api.pem", key = "/etc/vigil/api.key",
--         client_ca = "/etc/vigil/ca.pem",          -- machines: mutual TLS
--         tokens = "/etc/vigil/tokens",             -- people and scripts: bearer tokens
--         operators = { "console-1", "deploy" } }   -- who may act (POST), by identity name
--
-- The host serves the API (host/api); it asks vigil.api.authorize(identity,
-- method, path) before each request on the API listener. The control socket
-- (root or vigil's own user, checked by the kernel's SO_PEERCRED) is not
-- asked: a broken rule must never lock the local operator out.
--
-- identity = { kind = "certificate" | "token" | "anonymous", name = "console-1",
--              subject = "CN=console-1,O=ops", sans = { "DNS:a" }, tls = true }
-- authorize returns true, or false and a reason for the 403 (or 401 for an
-- anonymous client). Rules may replace it:
--
--   function vigil.api.authorize(id, method, path)
--     if id.kind == "anonymous" then return false, "authentication required" end
--     return method == "GET" or path:match("^/v1/watches/web/") ~= nil
--   end
local schema = require "vigil.schema"
local errors = require "vigil.errors"
local runtime = require "vigil.runtime"

local M = { _VERSION = "1" }

local declared = nil  -- the normalized api table, once declared

-- "host:port", "[v6]:port" -> host, port | nil, err
local function split_listen(v)
  local host, port = v:match("^%[([%x:.]+)%]:(%d+)$")
  if not host then host, port = v:match("^([^:%[%]]+):(%d+)$") end
  if not host then return nil, nil end
  port = tonumber(port)
  if port < 1 or port > 65535 then return nil, nil end
  return host, port
end

local function loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

local function listen_address(v, path)
  if type(v) ~= "string" then return nil, path .. ": expected \"host:port\", got " .. type(v) end
  local host = split_listen(v)
  if not host then
    return nil, string.format("%s: expected \"host:port\" or \"[v6]:port\" with a port 1-65535, got '%s'", path, v)
  end
  return v
end

local api_schema = {
  listen = listen_address,
  cert = schema.file_path,
  key = schema.file_path,
  client_ca = schema.file_path,
  tokens = schema.file_path,
  operators = schema.list_of_strings,
  max_connections = schema.integer(1, 10000),
}

--- api { ... }: declares the API listener (at most once, while the rules load).
local function declare_at(spec, where)
  if declared then
    return errors.add(where .. ": api: declared twice (at " .. declared.where .. ")")
  end
  local s, _, errs = schema.check(spec, api_schema, "api")
  if not s then
    for _, e in ipairs(errs) do errors.add(where .. ": " .. e) end
    return
  end
  local bad = function(msg) errors.add(where .. ": api: " .. msg) end
  if not s.listen then return bad("'listen' is required (\"host:port\")") end
  if (s.cert == nil) ~= (s.key == nil) then return bad("'cert' and 'key' go together") end
  if s.client_ca and not s.cert then return bad("'client_ca' needs 'cert' and 'key' (it is TLS)") end
  if s.tokens and not s.cert then return bad("'tokens' are accepted only over TLS: set 'cert' and 'key'") end
  local host = split_listen(s.listen)
  if not s.cert and not loopback(host) then
    return bad(string.format("listen '%s' is not a loopback address: set 'cert' and 'key' (plain HTTP only on 127.0.0.1 or ::1)", s.listen))
  end
  s.where = where
  s.operators = s.operators or {}
  declared = s
end

function M.declare(spec)
  if runtime.live() then error("api: declared when rule files load", 2) end
  return declare_at(spec, runtime.where(1))
end

--- The host's: `vigil run --api-listen ...` declares the API before the
-- rule files load (so a rule file's api { } is then "declared twice").
function M.preset(spec) return declare_at(spec, "--api-listen") end

--- The declared api table (entry.api), or nil.
function M.declared() return declared end

--- The default policy: nothing for anonymous clients, reads (GET) for any
-- authenticated one, everything for the identities named in `operators`.
-- A rule file's text (GET /v1/rules/NAME, the dashboard's form) and a
-- process's output (GET /v1/watches/NAME/output) are for operators too:
-- both may hold passwords, and those who may act on a process are those
-- who need to read what it printed.
local function operators_only(path)
  return type(path) == "string" and (path:match("^/v1/rules/.") or path:match("^/v1/watches/[^/]+/output$"))
end

function M.authorize(id, method, path)
  if type(id) ~= "table" or id.kind == "anonymous" then return false, "authentication required" end
  if (method == "GET" or method == "HEAD") and not operators_only(path) then return true end
  for _, name in ipairs(declared and declared.operators or {}) do
    if name == id.name then return true end
  end
  return false, string.format("'%s' may read only (not in api.operators)", tostring(id.name))
end
M.default_authorize = M.authorize

return M

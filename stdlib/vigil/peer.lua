--- vigil.peer: other nodes' vigils, by their remote API.
--
--   peer "nodeb" { url = "https://10.1.0.2:8443", ca = "/etc/vigil/ca.pem",
--                  cert = "/etc/vigil/nodea.pem", key = "/etc/vigil/nodea.key",
--                  every = "5s", fails = 3 }
--
-- The same declaration serves the rules (remote watches, vigil.remote)
-- and the CLI's node list (`vigil --nodes nodes.lua status`: a file of
-- peer declarations). A peer is down once it has not answered for
-- fails x every.
local schema = require "vigil.schema"
local errors = require "vigil.errors"
local runtime = require "vigil.runtime"

local M = { _VERSION = "1" }

M.peers = {}  -- name -> normalized peer
local order = {}

local function url(v, path)
  if type(v) ~= "string" then return nil, path .. ": expected a URL, got " .. type(v) end
  local scheme, authority, rest = v:match("^(https?)://([^/]+)(.*)$")
  local host, port
  if authority then
    host, port = authority:match("^(%[[%x:%.]+%]):?(%d*)$")
    if not host then host, port = authority:match("^([%w%.%-]+):?(%d*)$") end
  end
  if not host then
    return nil, string.format("%s: expected https://HOST:PORT (or http:// to a loopback address), got '%s'", path, v)
  end
  if rest ~= "" and rest ~= "/" then
    return nil, string.format("%s: the URL names the node only (no path), got '%s'", path, v)
  end
  if port ~= "" and (tonumber(port) < 1 or tonumber(port) > 65535) then
    return nil, string.format("%s: port must be 1-65535, got '%s'", path, v)
  end
  local loop = host == "localhost" or host == "[::1]" or host:match("^127%.") ~= nil
  if scheme == "http" and not loop then
    return nil, string.format("%s: '%s' is plain HTTP to another machine: use https://", path, v)
  end
  return (v:gsub("/$", ""))
end

local peer_schema = {
  url = url,
  ca = schema.file_path,
  cert = schema.file_path,
  key = schema.file_path,
  pin = schema.string,        -- "sha256//BASE64": the server's public key, instead of (or with) a CA
  token_file = schema.file_path,      -- a file holding a bearer token (instead of a client certificate)
  every = schema.duration,
  fails = schema.integer(1, 1000),
  timeout = schema.duration,
}

--- peer "name" { ... }
function M.peer(name)
  local where = runtime.where(1)
  if type(name) ~= "string" or not name:match("^[%w][%w%._%-]*$") then
    errors.add(string.format("%s: peer: the name must be letters, digits, '.', '_' or '-', got %s",
      where, type(name) == "string" and "'" .. name .. "'" or type(name)))
    return function() end
  end
  return function(spec)
    if runtime.live() then error("peer: declared when rule files load", 2) end
    if M.peers[name] then
      return errors.add(string.format("%s: peer '%s' declared twice (at %s)", where, name, M.peers[name].where))
    end
    local s, _, errs = schema.check(spec, peer_schema, "peer '" .. name .. "'")
    if not s then
      for _, e in ipairs(errs) do errors.add(where .. ": " .. e) end
      return
    end
    if not s.url then return errors.add(where .. ": peer '" .. name .. "': 'url' is required") end
    if (s.cert == nil) ~= (s.key == nil) then
      return errors.add(where .. ": peer '" .. name .. "': 'cert' and 'key' go together")
    end
    s.name, s.where = name, where
    s.every = s.every or 5
    s.fails = s.fails or 3
    s.timeout = s.timeout or math.min(s.every, 10)
    M.peers[name] = s
    order[#order + 1] = name
  end
end

--- The peers in declaration order (entry.peers).
function M.list()
  local out = {}
  for i, n in ipairs(order) do out[i] = M.peers[n] end
  return out
end

return M

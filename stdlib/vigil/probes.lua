--- vigil.probes: the probe constructors of a watch's `probes` list.
--
--   watch "shop" {
--     start  = { "/usr/sbin/shop" },
--     probes = {
--       http   { url = "http://127.0.0.1:8080/health", expect = 200, body = "ok",
--                every = "5s", timeout = "2s", fails = 3 },
--       tcp    { port = 5432, every = "10s" },
--       script { command = "/usr/local/bin/check-queue", timeout = "10s" },
--       file   { path = "/var/run/shop.heartbeat", max_age = "1m" },
--       notify { ready = true, watchdog = "30s" },       -- sd_notify
--       probe  { name = "orders", check = function(done, w) ... end },
--     },
--   }
--
-- Keys every probe takes: name (in events), every (how often, default
-- 10s), timeout (default 5s), fails (failures in a row that make the
-- process hung, default 3; notify: 1), success (passes in a row that end
-- a failure, default 1), startup (no probing until the watch is ready or
-- for this long), readiness (true: only decides whether the watch is
-- ready, never restarts it).
--
-- The rules load these as globals (http, tcp, script, file, notify,
-- probe) and as vigil.probes.*. A constructor checks its keys at once and
-- names the file:line of the probe in its error.
local schema = require "vigil.schema"
local runtime = require "vigil.runtime"
local errors = require "vigil.errors"

local M = { _VERSION = "1" }

local probe_mt = { __name = "vigil.probe" }

--- is_probe(v) -> true when v was made by a constructor here.
function M.is_probe(v) return getmetatable(v) == probe_mt end

local common = {
  name = schema.doc(function(v, path)
    if type(v) ~= "string" or v == "" then return nil, path .. ": expected a non-empty string" end
    return v
  end, { type = "string" }),
  every = schema.doc(function(v, path)
    local d, err = schema.duration(v, path)
    if not d then return nil, err end
    if d < 0.01 then return nil, path .. ": at least 10ms" end
    return d
  end, { type = "duration", min = 0.01 }),
  timeout = schema.doc(function(v, path)
    local d, err = schema.duration(v, path)
    if not d then return nil, err end
    if d <= 0 then return nil, path .. ": must be more than 0" end
    return d
  end, { type = "duration" }),
  fails = schema.integer(1, 1000),
  success = schema.integer(1, 1000),
  startup = schema.duration,
  readiness = schema.boolean,
}

local function with_common(keys)
  for k, v in pairs(common) do keys[k] = keys[k] or v end
  return keys
end

-- An HTTP status or range: 200, "2xx", { 200, 204 }, { min = 200, max = 299 }.
local function status(v, path)
  local bad = string.format("%s: expected a status (200), a class (\"2xx\") or a range ({200, 299}), got %s",
    path, tostring(v))
  local function check(lo, hi)
    if not lo or not hi or lo < 100 or hi > 599 or lo > hi then return nil, bad end
    return { min = lo, max = hi }
  end
  if math.type(v) == "integer" then return check(v, v) end
  if type(v) == "string" then
    local c = v:match("^([1-5])[xX][xX]$")
    if c then return check(tonumber(c) * 100, tonumber(c) * 100 + 99) end
    local n = math.tointeger(tonumber(v))
    if n then return check(n, n) end
    return nil, bad
  end
  if type(v) == "table" then
    local lo, hi = v.min or v[1], v.max or v[2] or v[1]
    if math.type(lo) ~= "integer" or math.type(hi) ~= "integer" then return nil, bad end
    return check(lo, hi)
  end
  return nil, bad
end

local function url(v, path)
  if type(v) ~= "string" then return nil, path .. ": expected a URL" end
  local scheme, host = v:match("^(%a+)://([^/?#]*)")
  if not scheme or (scheme ~= "http" and scheme ~= "https") then
    return nil, string.format("%s: '%s' is not an http:// or https:// URL", path, v)
  end
  local h = host:gsub("^[^@]*@", "")
  local name, port = h:match("^(%[[^%]]+%])(.*)$")
  if not name then name, port = h:match("^([^:]*)(.*)$") end
  if name == "" then return nil, string.format("%s: '%s' has no host", path, v) end
  if port ~= "" then
    local p = port:match("^:(%d+)$")
    if not p or tonumber(p) < 1 or tonumber(p) > 65535 then
      return nil, string.format("%s: '%s' has a bad port '%s' (1-65535)", path, v, port:sub(2))
    end
  end
  return v
end

schema.doc(status, { type = "string", format = "status", example = "2xx" })
schema.doc(url, { type = "string", format = "url", example = "http://127.0.0.1:8080/health" })

local port = schema.integer(1, 65535)

local command = schema.command

local kinds = {
  http = with_common {
    url = url,
    method = schema.one_of("GET", "HEAD"),
    expect = status,
    status = status,
    body = schema.string,
    headers = schema.map_of_strings,
    send_headers = schema.map_of_strings,
    connect_timeout = common.timeout,
    tls_verify = schema.boolean,
    unix_socket = schema.string,
  },
  tcp = with_common {
    host = schema.string,
    port = port,
    send = schema.string,
    expect = schema.string,
  },
  script = with_common { command = command },
  file = with_common { path = schema.string, max_age = common.timeout },
  notify = with_common { ready = schema.boolean, watchdog = common.timeout },
  rule = with_common { check = schema.func },
  -- Runs in a container through the engine (container watches only).
  exec = with_common { cmd = command },
}

local required = {
  http = { "url" }, tcp = { "port" }, script = { "command" }, file = { "path", "max_age" }, rule = { "check" },
  exec = { "cmd" },
}

local function default_name(kind, s)
  if kind == "http" then return s.url end
  if kind == "tcp" then return string.format("tcp %s:%d", s.host or "127.0.0.1", s.port) end
  if kind == "script" then return "script " .. (s.command[3] or s.command[1]) end
  if kind == "file" then return "file " .. s.path end
  if kind == "notify" then return "notify" end
  if kind == "exec" then return "exec " .. (s.command[3] or s.command[1]) end
  return "check"
end

local function build(kind, label, where, spec)
  local s, _, errs = schema.check(spec, kinds[kind], label)
  if not s then
    for i = 1, #errs - 1 do errors.add(where .. ": " .. errs[i]) end
    errors.refuse(where .. ": " .. errs[#errs])
  end
  for _, k in ipairs(required[kind] or {}) do
    if s[k] == nil then errors.refuse(string.format("%s: %s: '%s' is required", where, label, k)) end
  end
  if kind == "notify" and not s.ready and not s.watchdog then
    errors.refuse(where .. ": notify: needs ready = true, a watchdog, or both")
  end
  if kind == "exec" then s.command, s.cmd = s.cmd, nil end
  if kind == "http" then
    if s.expect and s.status then errors.refuse(where .. ": http: 'expect' and 'status' say the same: use one") end
    s.status, s.expect = s.status or s.expect, nil
  end
  s.kind = kind
  s.name = s.name or default_name(kind, s)
  s.where = where
  return setmetatable(s, probe_mt)
end

--- invalid(where) -> the stand-in for a probe whose constructor refused
-- (the error is recorded): the watch holding it is not declared, and
-- says nothing more about it.
function M.invalid(where)
  return setmetatable({ invalid = true, kind = "invalid", name = "invalid", where = where }, probe_mt)
end

local function make(kind, label)
  return function(spec)
    local where, via = runtime.where(1)
    return errors.declaring_via(via, build, kind, label, where, spec) or M.invalid(where)
  end
end

M.http = make("http", "http")
M.tcp = make("tcp", "tcp")
M.script = make("script", "script")
M.file = make("file", "file")
M.notify = make("notify", "notify")
--- probe { check = function(done, w) ... end }: a check written in Lua.
-- done(true) or done(false, reason [, evidence]), now or later (e.g. from
-- a vigil.probe.http callback); no answer within `timeout` is a failure.
M.probe = make("rule", "probe")
--- exec { cmd = { "wget", "-q", "-O-", "http://127.0.0.1/health" } }: a
-- command run inside the watched container (container watches only).
M.exec = make("exec", "exec")

--- The `probes` key of a container: a list of probes, and `healthcheck =
-- true` (run the image's own HEALTHCHECK as a probe) among them.
function M.container_list(v, path)
  if type(v) ~= "table" or M.is_probe(v) or rawget(v, "healthcheck") == nil then return M.list(v, path) end
  local hc = rawget(v, "healthcheck")
  if type(hc) ~= "boolean" then return nil, path .. ".healthcheck: expected true or false" end
  local copy = {}
  for i, p in ipairs(v) do copy[i] = p end
  for k in pairs(v) do
    if k ~= "healthcheck" and (math.type(k) ~= "integer" or k < 1 or k > #v) then
      return nil, string.format("%s: expected a list of probes, found key '%s'", path, tostring(k))
    end
  end
  local list, err = M.list(copy, path)
  if not list then return nil, err end
  if hc then
    list[#list + 1] = setmetatable({ kind = "exec", name = "healthcheck", healthcheck = true,
      every = 30, timeout = 30, fails = 3 }, probe_mt)
  end
  return list
end

--- The `probes` key of a watch: a list of probes made here.
function M.list(v, path)
  if type(v) ~= "table" then return nil, path .. ": expected a list of probes" end
  if M.is_probe(v) then return nil, path .. ": expected a list of probes ({ http {...}, ... })" end
  local n = #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      return nil, string.format("%s: expected a list of probes, found key '%s'", path, tostring(k))
    end
  end
  local notify = 0
  for i, p in ipairs(v) do
    if not M.is_probe(p) then
      return nil, string.format("%s[%d]: not a probe (make it with http, tcp, script, file, notify or probe)", path, i)
    end
    if p.kind == "notify" then notify = notify + 1 end
    if p.invalid then return v end  -- reported by its constructor
  end
  if notify > 1 then return nil, path .. ": one notify probe per watch" end
  return v
end
-- A probe is made by its constructor (http { ... }): each kind's keys, and
-- those it cannot go without.
schema.doc(M.list, { type = "probes", kinds = kinds, required = required })

return M

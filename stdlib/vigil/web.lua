--- vigil.web: probes for web servers and application servers, built on the
-- vigil.probe primitives.
--
--   local web = require "vigil.web"
--   watch "shop" {
--     ...,
--     probes = {
--       web.http   { url = "http://127.0.0.1/health", expect = 200, body = "ok" },
--       web.tomcat { url = "http://127.0.0.1:8080/manager/text/list",
--                    user = "monitor", password = "secret", app = "/shop" },
--       web.apache { url = "http://127.0.0.1/server-status?auto", min_idle = 2 },
--     },
--   }
--
-- web.http is the `http` probe. web.tomcat asks Tomcat's manager (text
-- interface) whether an application is running. web.apache reads
-- mod_status and fails when fewer than `min_idle` workers are idle (every
-- worker busy: requests queue and the server looks hung from outside).
-- All three take the keys every probe takes (every, timeout, fails, ...).
local probes = require "vigil.probes"
local probe = require "vigil.probe"
local schema = require "vigil.schema"
local runtime = require "vigil.runtime"
local errors = require "vigil.errors"

local M = { _VERSION = "1" }

M.http = probes.http

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- base64(s) -> the base64 text of s (for Basic authentication).
function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local q = {}
    for k = 3, 0, -1 do
      local idx = (n >> (6 * k)) & 63
      q[#q + 1] = b64chars:sub(idx + 1, idx + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- Splits spec into the keys of the http request and the probe's own.
local probe_keys = { name = true, every = true, fails = true, success = true, startup = true, readiness = true }

local function split(spec, own, label, where)
  if type(spec) ~= "table" then errors.refuse(string.format("%s: %s: expected a table", where, label)) end
  local request, p = {}, {}
  for k, v in pairs(spec) do
    if probe_keys[k] then
      p[k] = v
    elseif own[k] ~= nil then
      local norm, err = own[k](v, label .. "." .. k)
      if norm == nil then errors.refuse(where .. ": " .. err) end
      request[k] = norm
    else
      errors.refuse(string.format("%s: %s: unknown key '%s'%s", where, label, tostring(k),
        type(k) == "string" and schema.suggest(k, own, probe_keys) or ""))
    end
  end
  return request, p
end

local function auth_headers(r)
  local h = {}
  if r.user then h.Authorization = "Basic " .. M.base64(r.user .. ":" .. (r.password or "")) end
  return h
end

local function http_failure(res)
  if res.status and res.status ~= 0 then return string.format("status %d: %s", res.status, res.reason or "") end
  return res.reason or "no answer"
end

--- web.tomcat { url, user, password, app, timeout, ... }: the application
-- at path `app` is listed as running by the manager's text interface.
local function tomcat(where, spec)
  local r, p = split(spec, {
    url = schema.string, user = schema.string, password = schema.string, app = schema.string,
    timeout = schema.duration,
  }, "web.tomcat", where)
  if not r.url then errors.refuse(where .. ": web.tomcat: 'url' is required") end
  if not r.app then errors.refuse(where .. ": web.tomcat: 'app' is required (e.g. \"/shop\")") end
  local timeout = r.timeout or 5
  p.name = p.name or ("tomcat " .. r.app)
  p.timeout = timeout + 1
  p.check = function(done)
    local _, err = probe.http({ url = r.url, timeout = timeout, send_headers = auth_headers(r) }, function(res)
      if not res.ok then return done(false, http_failure(res), res.body) end
      for line in res.body:gmatch("[^\r\n]+") do
        local path, state = line:match("^([^:]+):([^:]+):")
        if path == r.app then
          if state == "running" then return done(true) end
          return done(false, string.format("application %s is %s", r.app, state), line)
        end
      end
      done(false, string.format("application %s is not deployed", r.app), res.body)
    end)
    if err then done(false, err) end
  end
  return probes.probe(p)
end

--- web.apache { url, min_idle = 1, timeout, ... }: mod_status
-- (server-status?auto) shows at least `min_idle` idle workers.
local function apache(where, spec)
  local r, p = split(spec, {
    url = schema.string, min_idle = schema.integer(0), user = schema.string, password = schema.string,
    timeout = schema.duration,
  }, "web.apache", where)
  if not r.url then errors.refuse(where .. ": web.apache: 'url' is required") end
  local min_idle = r.min_idle or 1
  local timeout = r.timeout or 5
  p.name = p.name or "apache workers"
  p.timeout = timeout + 1
  p.check = function(done)
    local _, err = probe.http({ url = r.url, timeout = timeout, send_headers = auth_headers(r) }, function(res)
      if not res.ok then return done(false, http_failure(res), res.body) end
      local idle = tonumber(res.body:match("IdleWorkers:%s*(%d+)"))
      local busy = tonumber(res.body:match("BusyWorkers:%s*(%d+)"))
      if not idle then return done(false, "no IdleWorkers in the status page", res.body) end
      if idle < min_idle then
        return done(false, string.format("%d idle workers (%s busy), fewer than %d", idle, busy or "?", min_idle),
          res.body)
      end
      done(true)
    end)
    if err then done(false, err) end
  end
  return probes.probe(p)
end

-- The constructors record a refusal (vigil.errors) and hand back a
-- stand-in, so that the rest of the file is checked too.
function M.tomcat(spec)
  local where, via = runtime.where(1)
  return errors.declaring_via(via, tomcat, where, spec) or probes.invalid(where)
end

function M.apache(spec)
  local where, via = runtime.where(1)
  return errors.declaring_via(via, apache, where, spec) or probes.invalid(where)
end

return M

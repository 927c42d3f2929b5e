--- vigil.resources: the limits and environment of a started program
-- (issue 14): the `watch` keys limits, nice, ionice, oom_score_adjust,
-- env_file, supplementary_groups and no_new_privileges; and pidfile,
-- pidfile_timeout (a program that daemonizes). Each checker
-- gives what exec.declare takes (lua/lua_exec.cpp read_resources); the
-- host applies them in the child before exec (docs/rules.md).
local schema = require "vigil.schema"
local duration = require "vigil.duration"

local M = { _VERSION = "1" }

-- What each limit counts, as systemd's Limit*= (and `ulimit`): bytes take
-- a size ("2GB"), cpu seconds and rttime microseconds take a duration.
local kinds = {
  as = "bytes", core = "bytes", data = "bytes", fsize = "bytes", memlock = "bytes",
  msgqueue = "bytes", rss = "bytes", stack = "bytes",
  cpu = "seconds", rttime = "microseconds",
  locks = "count", nofile = "count", nproc = "count", sigpending = "count",
  nice = "nice", rtprio = "rtprio",
}
local ranges = { nice = 40, rtprio = 99 }

-- One value of a limit: a count, "unlimited" (-1 to the host).
local function limit_value(name, v, path)
  if v == "unlimited" or v == "infinity" then return -1 end
  local kind = kinds[name]
  if math.type(v) == "integer" then
    if v < 0 then return nil, string.format("%s: %d is negative", path, v) end
    if ranges[kind] and v > ranges[kind] then
      return nil, string.format("%s: %d is out of range [0, %d]", path, v, ranges[kind])
    end
    return v
  end
  if type(v) == "string" and kind == "bytes" then
    local n, err = duration.parse_size(v)
    if not n then return nil, path .. ": " .. err end
    return n
  end
  if type(v) == "string" and (kind == "seconds" or kind == "microseconds") then
    local s, err = duration.parse(v)
    if not s then return nil, path .. ": " .. err end
    return math.tointeger(math.ceil(kind == "seconds" and s or s * 1e6))
  end
  local hint = ({ bytes = "an integer, a size such as \"2GB\" or \"unlimited\"",
    seconds = "an integer number of seconds, a duration or \"unlimited\"",
    microseconds = "an integer number of microseconds, a duration or \"unlimited\"" })[kind]
    or "an integer or \"unlimited\""
  return nil, string.format("%s: expected %s, got %s", path, hint, tostring(v))
end

-- limits = { nofile = 65536, core = "unlimited", as = "2GB", stack = { "8MB", "unlimited" } }
-- A single value sets the soft and the hard limit (as systemd does);
-- { soft, hard } or { soft =, hard = } sets each.
function M.limits(v, path)
  if type(v) ~= "table" then return nil, string.format("%s: expected a table of limits", path) end
  local names = {}
  for k in pairs(v) do
    if type(k) ~= "string" then return nil, string.format("%s: expected limit names as keys (e.g. nofile = 65536)", path) end
    names[#names + 1] = k
  end
  table.sort(names)
  local out = {}
  for _, name in ipairs(names) do
    local p = path .. "." .. name
    if not kinds[name] then
      return nil, string.format("%s: unknown limit '%s'%s (limits are %s)", path, name,
        schema.suggest(name, kinds), "as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack")
    end
    local x = v[name]
    local soft, hard, err
    if type(x) == "table" then
      local s, h = x.soft, x.hard
      if s == nil and h == nil then s, h = x[1], x[2] end
      for k in pairs(x) do
        if k ~= "soft" and k ~= "hard" and k ~= 1 and k ~= 2 then
          return nil, string.format("%s: expected { soft, hard } or { soft = , hard = }, found key '%s'", p, tostring(k))
        end
      end
      if s == nil or h == nil then return nil, p .. ": needs both a soft and a hard limit" end
      soft, err = limit_value(name, s, p .. ".soft")
      if not soft then return nil, err end
      hard, err = limit_value(name, h, p .. ".hard")
      if not hard then return nil, err end
      if hard ~= -1 and (soft == -1 or soft > hard) then
        return nil, string.format("%s: the soft limit %s is above the hard limit %s", p,
          soft == -1 and "unlimited" or tostring(soft), tostring(hard))
      end
    else
      soft, err = limit_value(name, x, p)
      if not soft then return nil, err end
      hard = soft
    end
    out[#out + 1] = { resource = name, soft = soft, hard = hard }
  end
  if #out == 0 then return nil, path .. ": empty table" end
  return out
end

M.nice = schema.integer(-20, 19)
M.oom_score_adjust = function(v, path)
  if math.type(v) ~= "integer" then return nil, string.format("%s: expected an integer, got %s", path, tostring(v)) end
  if v < -1000 or v > 1000 then return nil, string.format("%s: %d is out of range [-1000, 1000]", path, v) end
  return v
end

-- ionice = "best-effort:4" | "idle" | { class = "realtime", level = 0 }
-- -> IOPRIO_PRIO_VALUE(class, level) (linux/ioprio.h).
local classes = { realtime = 1, ["best-effort"] = 2, idle = 3 }
function M.ionice(v, path)
  local class, level
  if type(v) == "string" then
    class, level = v:match("^([%a%-]+):(.*)$")
    if not class then class = v end
    if level then
      if not level:match("^%d+$") then
        return nil, string.format("%s: level '%s' is not 0..7", path, level)
      end
      level = tonumber(level)
    end
  elseif type(v) == "table" then
    for k in pairs(v) do
      if k ~= "class" and k ~= "level" then
        return nil, string.format("%s: unknown key '%s'%s", path, tostring(k),
          schema.suggest(tostring(k), { class = true, level = true }))
      end
    end
    class, level = v.class, v.level
    if level ~= nil and math.type(level) ~= "integer" then
      return nil, string.format("%s.level: expected an integer 0..7, got %s", path, tostring(level))
    end
  else
    return nil, string.format("%s: expected \"class:level\" (e.g. \"best-effort:4\") or { class =, level = }, got %s", path, type(v))
  end
  if not classes[class] then
    return nil, string.format("%s: unknown class '%s'%s (use realtime, best-effort or idle)", path,
      tostring(class), schema.suggest(tostring(class), classes))
  end
  if class == "idle" then
    if level and level ~= 0 then return nil, path .. ": the idle class has no level" end
    level = 0
  end
  level = level or 4
  if level < 0 or level > 7 then return nil, string.format("%s: level %d is out of range [0, 7]", path, level) end
  return classes[class] << 13 | level
end

-- env_file = "/etc/default/foo" (must exist) or "-/etc/default/foo"
-- (optional): absolute, as systemd's EnvironmentFile=.
function M.env_file(v, path)
  if type(v) ~= "string" then return nil, string.format("%s: expected a file path, got %s", path, type(v)) end
  if not v:match("^%-?/") then
    return nil, string.format("%s: expected an absolute path (\"/etc/default/foo\", or \"-/etc/default/foo\" when it may be missing), got %s", path, v)
  end
  return v
end

function M.supplementary_groups(v, path)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then return nil, string.format("%s: expected a list of group names", path) end
  local out = {}
  for i, g in ipairs(v) do
    if math.type(g) == "integer" and g >= 0 then g = tostring(g) end
    if type(g) ~= "string" or g == "" then
      return nil, string.format("%s[%d]: expected a group name, got %s", path, i, tostring(g))
    end
    out[i] = g
  end
  if #out == 0 or #out ~= (function() local n = 0 for _ in pairs(v) do n = n + 1 end return n end)() then
    return nil, path .. ": expected a non-empty list of group names"
  end
  return out
end

M.no_new_privileges = schema.boolean

-- pidfile = "/run/foo.pid": `start` daemonizes and writes its pid there
-- (issue 14 item 3, host/supervise/pidfile.cpp).
function M.pidfile(v, path)
  if type(v) ~= "string" then return nil, string.format("%s: expected a file path, got %s", path, type(v)) end
  if v:sub(1, 1) ~= "/" then return nil, string.format("%s: expected an absolute path, got %s", path, v) end
  if v:sub(-1) == "/" then return nil, string.format("%s: %s names a directory, not a file", path, v) end
  return v
end
function M.pidfile_timeout(v, path)
  local d, err = schema.duration(v, path)
  if not d then return nil, err end
  if d <= 0 then return nil, path .. ": must be longer than 0" end
  return d
end

--- The watch keys (all apply to a process vigil starts).
M.schema = {
  limits = M.limits,
  nice = M.nice,
  ionice = M.ionice,
  oom_score_adjust = M.oom_score_adjust,
  env_file = M.env_file,
  supplementary_groups = M.supplementary_groups,
  no_new_privileges = M.no_new_privileges,
  pidfile = M.pidfile,
  pidfile_timeout = M.pidfile_timeout,
}
M.keys = { "limits", "nice", "ionice", "oom_score_adjust", "env_file", "supplementary_groups",
  "no_new_privileges", "pidfile", "pidfile_timeout" }

--- The fields for exec.declare from a checked watch spec `s`.
function M.declare_fields(s, into)
  into.limits = s.limits
  into.nice = s.nice
  into.ioprio = s.ionice
  into.oom_score_adj = s.oom_score_adjust
  into.env_file = s.env_file
  into.supplementary_groups = s.supplementary_groups
  into.no_new_privs = s.no_new_privileges
  into.pidfile = s.pidfile
  into.pidfile_timeout = s.pidfile_timeout
  return into
end

return M

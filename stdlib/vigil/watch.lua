--- vigil.watch: the `watch` rule and the restart policy it applies.
--
--   watch "api" {
--     start   = { "/usr/bin/python3", "-m", "http.server", "8080" },
--     restart = { limit = 3, within = "10m", backoff = "1s..30s" },
--     rearm   = "1h",
--     on_exhausted = "alert",
--   }
--
-- Loading a rule only declares: the spec is checked against a closed
-- schema and handed to the host (vigil.exec.declare). The host owns the
-- process, its history and counters; this module decides what happens when
-- a process ends.
local schema = require "vigil.schema"
local policy = require "vigil.policy"
local duration = require "vigil.duration"
local exec = require "vigil.exec"
local log = require "vigil.log"
local runtime = require "vigil.runtime"

local M = { _VERSION = "1" }

-- name -> { name, where, spec, restart, rearm, on_exhausted }
local watches = {}
M.watches = watches

local signals = {
  HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, ALRM = 14, TERM = 15,
  CONT = 18, STOP = 19, TSTP = 20, WINCH = 28, PWR = 30,
}

local function signal_checker(v, path)
  if math.type(v) == "integer" and v > 0 and v < 65 then return v end
  if type(v) == "string" then
    local n = signals[v:upper():gsub("^SIG", "")]
    if n then return n end
  end
  return nil, string.format("%s: unknown signal %s (use e.g. \"TERM\", \"INT\", \"QUIT\")", path, tostring(v))
end

local function shell_command(v, path)
  if type(v) ~= "string" then return nil, string.format("%s: expected a command", path) end
  if v:match("^%s*$") then return nil, path .. ": empty command" end
  return { "/bin/sh", "-c", v }
end

local function umask_checker(v, path)
  if type(v) == "string" and v:match("^0?[0-7][0-7][0-7]$") then return tonumber(v, 8) end
  if math.type(v) == "integer" and v >= 0 and v <= 511 then return v end
  return nil, string.format("%s: expected an octal string such as \"022\", got %s", path, tostring(v))
end

local function never_restart(v, path)
  if v == false then return { limit = 0 } end
  return nil, string.format("%s: expected a table or false", path)
end

local restart_schema = {
  limit = schema.integer(0),
  within = schema.duration,
  backoff = schema.duration_range,
  delay = schema.duration,
  reset = schema.duration,
}

local stop_schema = {
  signal = signal_checker,
  timeout = schema.duration,
  command = schema.by_type({ table = schema.list_of_strings, string = shell_command },
    "a command list or a shell command string"),
}

local log_schema = {
  max_size = schema.size,
  keep = schema.integer(0, 100),
}

local function off(v, path)
  if v == false then return false end
  return nil, string.format("%s: expected a table or false", path)
end

local function action_name(v, path)
  if v == "stop" or v == "alert" then return v end
  return nil, string.format("%s: unknown action '%s' (use \"stop\", \"alert\", a command list or a function)", path, v)
end

local function stop_signal(v, path)
  local s, err = signal_checker(v, path)
  if not s then return nil, err end
  return { signal = s }
end

local watch_schema = {
  description = schema.string,
  start = schema.by_type({ string = shell_command, table = schema.list_of_strings },
    "a command list or a shell command string"),
  env = schema.map_of_strings,
  cwd = schema.string,
  user = schema.string,
  group = schema.string,
  umask = umask_checker,
  restart = schema.by_type({ boolean = never_restart, table = schema.table(restart_schema) },
    "a table or false"),
  rearm = schema.duration,
  on_exhausted = schema.by_type({ ["function"] = schema.func, table = schema.list_of_strings,
    string = action_name }, "an action name, a command list or a function"),
  stop = schema.by_type({ string = stop_signal, integer = stop_signal, table = schema.table(stop_schema) },
    "a signal name or a table"),
  log = schema.by_type({ boolean = off, table = schema.table(log_schema) }, "a table or false"),
}

-- Keys `vigil set` may change on a running watch: key -> checker and how
-- to store the normalized value.
local function fmt_duration(v) return duration.format(v) end
local function fmt_range(v) return string.format("%s..%s", duration.format(v.min), duration.format(v.max)) end

-- Keys `vigil set` may change on a running watch: key -> { checker, store,
-- format }.
local live_keys = {
  ["restart.limit"] = { schema.integer(0), function(w, v) w.restart.limit = v end, tostring },
  ["restart.within"] = { schema.duration, function(w, v) w.restart.within = v end, fmt_duration },
  ["restart.delay"] = { schema.duration, function(w, v) w.restart.delay = v end, fmt_duration },
  ["restart.reset"] = { schema.duration, function(w, v) w.restart.reset = v end, fmt_duration },
  ["restart.backoff"] = { schema.duration_range, function(w, v) w.restart.backoff = v end, fmt_range },
  ["rearm"] = { function(v, path)
    if v == "off" or v == "none" then return false end
    return schema.duration(v, path)
  end, function(w, v) w.rearm = v or nil end, function(v) return v and duration.format(v) or "off" end },
}
M.live_keys = live_keys

local default_restart = policy.normalize(nil)

local function fail(where, name, msg)
  error(string.format("%s: watch '%s': %s", where, name, msg), 0)
end

--- watch(name) { spec }: declares a watch.
function M.watch(name)
  local where = runtime.where(1)
  if runtime.live() then
    error("watch: watches are declared when rule files load (at start and reload), not from callbacks", 2)
  end
  if type(name) ~= "string" or not name:match("^[%w_@][%w_.@%-]*$") or #name > 64 then
    error(string.format("%s: watch name %s must be 1-64 letters, digits, '_', '.', '@' or '-'",
      where, type(name) == "string" and ("'" .. name .. "'") or tostring(name)), 0)
  end
  return function(spec)
    local s, err = schema.check(spec, watch_schema, "watch '" .. name .. "'")
    if not s then error(where .. ": " .. err, 0) end
    if not s.start then fail(where, name, "'start' is required (the command to run)") end
    if watches[name] then
      fail(where, name, "declared twice (first at " .. watches[name].where .. ")")
    end
    local stop = s.stop or {}
    local logcfg = s.log
    local ok, derr = exec.declare(name, {
      argv = s.start,
      env = s.env,
      cwd = s.cwd,
      user = s.user,
      group = s.group,
      umask = s.umask,
      stop_signal = stop.signal,
      stop_timeout = stop.timeout,
      stop_command = stop.command,
      capture_output = logcfg ~= false,
      log_max_bytes = logcfg and logcfg.max_size or nil,
      log_keep = logcfg and logcfg.keep or nil,
      where = where,
    })
    if not ok then fail(where, name, derr) end
    watches[name] = {
      name = name,
      where = where,
      description = s.description,
      -- Watches without their own policy share one table (memory at
      -- thousands of watches); `vigil set` copies before changing it.
      restart = s.restart and policy.normalize(s.restart) or default_restart,
      rearm = s.rearm,
      on_exhausted = s.on_exhausted,
    }
  end
end

local function run_exhausted_hook(w, ev)
  local action = w.on_exhausted
  if action == nil then return end
  local label
  if type(action) == "function" then
    label = "function"
    local ok, err = pcall(action, w, ev)
    if not ok then
      log.event("rule_error", w.name, { callback = "on_exhausted of " .. w.name, error = tostring(err) })
      return
    end
  elseif type(action) == "table" then
    label = table.concat(action, " ")
    local pid, err = exec.run(action, {
      timeout = 60,
      env = { VIGIL_WATCH = w.name, VIGIL_EVENT = "budget_exhausted",
              VIGIL_EXIT = ev.signal and ("signal " .. ev.signal) or tostring(ev.code) },
      on_exit = function(code, sig)
        if code ~= 0 then
          log.event("rule_error", w.name, {
            callback = "on_exhausted command of " .. w.name,
            error = string.format("%s %s", label, sig and ("killed by " .. sig) or ("exited " .. code)),
          })
        end
      end,
    })
    if not pid then
      log.event("rule_error", w.name, { callback = "on_exhausted of " .. w.name, error = err })
      return
    end
  elseif action == "alert" then
    label = "alert"
    log.critical(string.format("%s: restart budget exhausted; operator action needed", w.name),
      { watch = w.name })
  else
    label = action
  end
  log.event("exhausted_hook", w.name, { action = label })
end

--- The policy: called by the host when a watched process ended.
function M.on_exit(name, ev)
  local w = watches[name]
  if not w then return end
  local info = exec.info(name)
  local d = policy.decide(w.restart, info.history, runtime.now(), ev.uptime or 0)
  if d.action == "exhaust" then
    exec.exhaust(name, w.rearm)
    log.event("budget_exhausted", name, { used = d.used, limit = w.restart.limit, within = w.restart.within })
    run_exhausted_hook(w, ev)
  else
    exec.restart_later(name, d.delay)
    log.event("restart_scheduled", name, {
      restart = d.used + 1, limit = w.restart.limit, delay = d.delay, streak = d.streak,
      within = w.restart.within,
    })
  end
end

--- `vigil set NAME KEY VALUE` -> normalized text | nil, err
function M.set(name, key, value)
  local w = watches[name]
  if not w then return nil, string.format("no watch named '%s'", name) end
  local k = live_keys[key]
  if not k then
    local names = {}
    for n in pairs(live_keys) do names[#names + 1] = n end
    table.sort(names)
    return nil, string.format("'%s' cannot be changed live (keys: %s)", key, table.concat(names, ", "))
  end
  local v, err = k[1](value, key)
  if v == nil then return nil, err end
  if w.restart == default_restart then
    w.restart = {}
    for kk, vv in pairs(default_restart) do w.restart[kk] = vv end
  end
  k[2](w, v)
  return k[3](v)
end

return M

--- vigil.watch: the `watch` rule and the policies it applies.
--
--   watch "api" {                       -- a process vigil starts
--     start   = { "/usr/bin/python3", "-m", "http.server", "8080" },
--     restart = { limit = 3, within = "10m", backoff = "1s..30s" },
--     rearm   = "1h",
--     on_exhausted = "alert",
--   }
--   watch "nginx" {                     -- a process something else started
--     match = { exe = "/usr/sbin/nginx", cmdline = "master process", user = "root" },
--     restart_script = "/etc/init.d/nginx restart",
--   }
--   watch "mailfilter" {                -- same-name processes, counted
--     match = { name = "amavisd", user = "amavis" },
--     count = { min = 2, max = 500 }, on_over = "kill_newest",
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
local proc = require "vigil.proc"
local probes = require "vigil.probes"
local ladder = require "vigil.ladder"
local errors = require "vigil.errors"
local timer = require "vigil.timer"
local resources = require "vigil.resources"
local remote_watch = require "vigil.remote_watch"

local M = { _VERSION = "1" }

-- name -> { name, where, spec, restart, rearm, on_exhausted }
local watches = {}
M.watches = watches

-- The host's names (host/core/strings.cpp), Linux numbers.
local signals = {
  HUP = 1, INT = 2, QUIT = 3, ILL = 4, TRAP = 5, ABRT = 6, BUS = 7, FPE = 8, KILL = 9,
  USR1 = 10, SEGV = 11, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15, CHLD = 17, CONT = 18,
  STOP = 19, TSTP = 20, TTIN = 21, TTOU = 22, URG = 23, XCPU = 24, XFSZ = 25, VTALRM = 26,
  PROF = 27, WINCH = 28, IO = 29, PWR = 30, SYS = 31,
}

local function signal_checker(v, path)
  if math.type(v) == "integer" and v > 0 and v < 65 then return v end
  if type(v) == "string" then
    local n = signals[v:upper():gsub("^SIG", "")]
    if n then return n end
  end
  return nil, string.format("%s: unknown signal %s (use e.g. \"TERM\", \"INT\", \"QUIT\")", path, tostring(v))
end
schema.doc(signal_checker, { type = "string", format = "signal", example = "TERM" })

local function umask_checker(v, path)
  if type(v) == "string" and v:match("^0?[0-7][0-7][0-7]$") then return tonumber(v, 8) end
  if math.type(v) == "integer" and v >= 0 and v <= 511 then return v end
  return nil, string.format("%s: expected an octal string such as \"022\", got %s", path, tostring(v))
end

schema.doc(umask_checker, { type = "string", format = "octal", example = "022" })

local function never_restart(v, path)
  if v == false then return { limit = 0 } end
  return nil, string.format("%s: expected a table or false", path)
end

-- A watch's `restart`: its budget, and which exits it restarts at all.
local restart_schema = { on = schema.one_of(table.unpack(policy.restart_on)) }
for k, v in pairs(ladder.restart_schema) do restart_schema[k] = v end

-- success_exit = { 0, 3, "TERM" }: exit codes and signals that are a success.
local function success_exit(v, path)
  if type(v) ~= "table" then v = { v } end
  if #v == 0 then return nil, path .. ": expected exit codes (0..255) or signal names, e.g. { 0, 3, \"TERM\" }" end
  local set = {}
  for i, x in ipairs(v) do
    local p = string.format("%s[%d]", path, i)
    if math.type(x) == "integer" then
      if x < 0 or x > 255 then return nil, string.format("%s: exit code %d is not in 0..255", p, x) end
      set[x] = true
    else
      local n, err = signal_checker(x, p)
      if not n then return nil, err end
      for name, num in pairs(signals) do if num == n then set[name] = true end end
    end
  end
  return set
end

schema.doc(never_restart, { type = "boolean", only = false })
schema.doc(success_exit, { type = "list", of = "exit code or signal", example = "0, 3, TERM" })

local stop_schema = {
  signal = signal_checker,
  timeout = schema.duration,
  command = schema.command,
}

local log_schema = {
  max_size = schema.size,
  keep = schema.integer(0, 100),
}

local function off(v, path)
  if v == false then return false end
  return nil, string.format("%s: expected a table or false", path)
end

schema.doc(off, { type = "boolean", only = false })

local function stop_signal(v, path)
  local s, err = signal_checker(v, path)
  if not s then return nil, err end
  return { signal = s }
end

-- match: which running process(es) the watch is about.
local function user_key(v, path)
  if type(v) == "string" and v ~= "" then return v end
  if math.type(v) == "integer" and v >= 0 then return tostring(v) end
  return nil, string.format("%s: expected a user name or uid, got %s", path, tostring(v))
end

local function parent_key(v, path)
  if type(v) == "string" and v:match("^[%w_@][%w_.@%-]*$") then return v end
  if math.type(v) == "integer" and v > 0 then return v end
  return nil, string.format("%s: expected another watch's name or a pid, got %s", path, tostring(v))
end

local function nonempty(v, path)
  if type(v) ~= "string" then return nil, string.format("%s: expected a string, got %s", path, type(v)) end
  if v == "" then return nil, path .. ": empty string" end
  return v
end

schema.doc(user_key, { type = "string", format = "user", example = "www-data" })
schema.doc(parent_key, { type = "string", format = "watch name or pid" })
schema.doc(nonempty, { type = "string", nonempty = true })

local match_schema = {
  name = nonempty,
  exe = schema.doc(function(v, path)
    local s, err = nonempty(v, path)
    if not s then return nil, err end
    if s:sub(1, 1) ~= "/" then return nil, path .. ": expected an absolute path, got " .. s end
    return s
  end, { type = "path", example = "/usr/sbin/nginx" }),
  cmdline = nonempty,
  cmdline_re = nonempty,
  user = user_key,
  uid = schema.integer(0),
  parent = parent_key,
  ppid = schema.integer(1),
  cgroup = nonempty,
  kernel = schema.boolean,
  select = schema.one_of("oldest", "newest", "all"),
}

local count_schema = { min = schema.integer(0), max = schema.integer(0), hold = schema.duration }

local script_schema = {
  command = schema.command,
  timeout = schema.duration,
  find_within = schema.duration,
}

local function script_table(v, path)
  if #v > 0 then return { command = schema.list_of_strings(v, path) } end
  local s, err = schema.check(v, script_schema, path)
  if not s then return nil, err end
  if not s.command then return nil, path .. ": 'command' is required" end
  return s
end

local duration_or_off = schema.by_type({ boolean = off, string = schema.duration, number = schema.duration },
  "a duration or false")

-- A percentage: 90, "90%", or a fraction below 1 (0.9).
local function percent(v, path)
  local n = type(v) == "string" and tonumber((v:gsub("%%$", ""))) or (type(v) == "number" and v)
  if not n or n <= 0 then return nil, string.format("%s: expected a percentage such as 90 or \"90%%\", got %s", path, tostring(v)) end
  if n < 1 and type(v) == "number" then n = n * 100 end
  return n
end

local cpu_schema = { percent = percent, ["for"] = schema.duration }

local checks_schema = {
  every = schema.duration,
  zombie = duration_or_off,
  stopped = duration_or_off,
  blocked = duration_or_off,
  -- Hangs and exhaustion seen from /proc alone.
  cpu = schema.by_type({ number = function(v, p) local n, e = percent(v, p) return n and { percent = n }, e end,
    string = function(v, p) local n, e = percent(v, p) return n and { percent = n }, e end,
    table = schema.table(cpu_schema), boolean = off }, "a percentage or { percent =, for = }"),
  no_progress = duration_or_off,
  fds = function(v, path)
    local n, err = percent(v, path)
    if not n then return nil, err end
    if n > 100 then return nil, path .. ": more than 100%" end
    return n / 100
  end,
  close_wait = schema.integer(1),
  threads = schema.integer(1),
  rss = schema.size,
  rss_growth = schema.size,
}

local function named(names, also)
  return function(v, path)
    for _, n in ipairs(names) do if v == n then return v end end
    return nil, string.format("%s: unknown action '%s' (use %s%s)", path, tostring(v),
      table.concat(names, ", "), also)
  end
end

local function action(names)
  return schema.by_type({ ["function"] = schema.func, table = schema.list_of_strings,
    string = named(names, ", a command list or a function") },
    "an action name, a command list or a function")
end

-- dump: evidence captured when the watch fails.
local triggers = { exit = true, hung = true, count = true, state = true }
local dump_schema = {
  on = function(v, path)
    if type(v) == "string" then v = { v } end
    if type(v) == "table" and next(v) == nil then return {} end  -- only the ladder's dump step
    local list, err = schema.list_of_strings(v, path)
    if not list then return nil, err end
    local set = {}
    for i, t in ipairs(list) do
      if not triggers[t] then
        return nil, string.format("%s[%d]: unknown trigger '%s' (use exit, hung, count, state)", path, i, t)
      end
      set[t] = true
    end
    return set
  end,
  core = schema.boolean,
  environ = schema.boolean,
  keep = schema.integer(1, 1000),
  max_size = schema.size,
  lines = schema.integer(0, 100000),
  timeout = schema.duration,
  extra = schema.func,
}
local all_triggers = { exit = true, hung = true, count = true, state = true }
local function dump_checker(v, path)
  if v == true then return { on = all_triggers } end
  if v == false then return false end
  local d, err = schema.check(v, dump_schema, path)
  if not d then return nil, err end
  d.on = d.on or all_triggers
  return d
end

local watch_schema = {
  description = schema.string,
  start = schema.command,
  env = schema.map_of_strings,
  cwd = schema.string,
  user = schema.string,
  group = schema.string,
  umask = umask_checker,
  restart = schema.by_type({ boolean = never_restart, table = schema.table(restart_schema) },
    "a table or false"),
  success_exit = success_exit,
  oneshot = schema.boolean,
  autostart = schema.boolean,
  rearm = schema.duration,
  on_exhausted = ladder.hook_checker,
  escalate = ladder.checker,
  requires = schema.doc(function(v, path)
    if type(v) == "string" then v = { v } end
    local list, err = schema.list_of_strings(v, path)
    if not list then return nil, err end
    for i, n in ipairs(list) do
      if not n:match("^[%w_@][%w_.@%-]*$") then return nil, string.format("%s[%d]: '%s' is not a watch or group name", path, i, n) end
    end
    return list
  end, { type = "list", of = "name" }),
  settle = schema.duration,
  stop = schema.by_type({ string = stop_signal, integer = stop_signal, table = schema.table(stop_schema) },
    "a signal name or a table"),
  log = schema.by_type({ boolean = off, table = schema.table(log_schema) }, "a table or false"),
  match = schema.table(match_schema),
  restart_script = schema.by_type({ string = function(v, path) return { command = schema.shell(v, path) } end,
    table = script_table }, "a command list, a shell command string or a table"),
  count = schema.table(count_schema),
  stop_on_remove = schema.boolean,
  kill = schema.one_of("tree", "process"),
  on_over = action({ "alert", "kill_newest" }),
  on_under = action({ "alert", "restart" }),
  checks = schema.by_type({ boolean = off, table = schema.table(checks_schema) }, "a table or false"),
  on_state = action({ "alert", "restart", "continue" }),
  probes = probes.list,
  on_hung = action({ "restart", "alert" }),
  dump = schema.by_type({ boolean = dump_checker, table = dump_checker }, "true, false or a table"),
  -- "observe": watch and alert, never act (a watch `vigil discover` proposed).
  mode = schema.one_of("act", "observe"),
}

-- Limits and environment of a started program (vigil.resources).
for k, c in pairs(resources.schema) do watch_schema[k] = c end
-- The closed schema, for vigil.schema.describe (the dashboard's form).
M.schema = watch_schema

-- Keys that only make sense for a process vigil starts.
local start_only = { "env", "cwd", "user", "group", "umask", "log" }
for _, k in ipairs(resources.keys) do start_only[#start_only + 1] = k end

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
  ["count.min"] = { schema.integer(0), function(w, v)
    if not w.count then error("'" .. w.name .. "' has no count", 0) end
    if w.count.max and v > w.count.max then error("count.min " .. v .. " is above count.max " .. w.count.max, 0) end
    w.count.min = v
    exec.set_count(w.name, w.count.min, w.count.max or -1)
  end, tostring },
  ["count.max"] = { schema.integer(0), function(w, v)
    if not w.count then error("'" .. w.name .. "' has no count", 0) end
    if v < (w.count.min or 0) then error("count.max " .. v .. " is below count.min " .. (w.count.min or 0), 0) end
    w.count.max = v
    exec.set_count(w.name, w.count.min or 0, w.count.max)
  end, tostring },
}
M.live_keys = live_keys
-- Where each live key's value is kept in a watch's (or group's) table:
-- { subtable or nil, field }, for the declared value `--default` restores.
local live_fields = {
  ["restart.limit"] = { "restart", "limit" }, ["restart.within"] = { "restart", "within" },
  ["restart.delay"] = { "restart", "delay" }, ["restart.reset"] = { "restart", "reset" },
  ["restart.backoff"] = { "restart", "backoff" }, ["rearm"] = { nil, "rearm" },
  ["count.min"] = { "count", "min" }, ["count.max"] = { "count", "max" },
}

local default_restart = policy.normalize(nil)

-- Watches with equal budgets share one normalized table: a thousand
-- watches declaring the same `restart` hold one table, not a thousand
-- (issue 13, memory). `vigil set` copies a shared one before it changes
-- it (set_live). A state lives one load, so the cache does too.
local shared_budgets = { [default_restart] = true }
local budget_cache = {}
local budget_keys = { limit = true, within = true, delay = true, reset = true, backoff = true }
local function budget_table(budget)
  if not budget then return default_restart end
  local t = policy.normalize(budget)
  for k in pairs(t) do if not budget_keys[k] then return t end end
  local b = t.backoff
  local key = string.format("%.17g %.17g %.17g %.17g %.17g %.17g",
    t.limit, t.within, t.delay, t.reset, b.min, b.max)
  local hit = budget_cache[key]
  if hit then return hit end
  budget_cache[key], shared_budgets[t] = t, true
  return t
end

local function fail(where, name, msg)
  errors.refuse(string.format("%s: watch '%s': %s", where, name, msg))
end

-- Refuses with every error of a schema check (the rule shows them all).
local function refuse_all(where, errs)
  for i = 1, #errs - 1 do errors.add(where .. ": " .. errs[i]) end
  errors.refuse(where .. ": " .. errs[#errs])
end

--- watch(name) { spec }: declares a watch.
function M.watch(name)
  local where, via = runtime.where(1)
  if runtime.live() then
    error("watch: watches are declared when rule files load (at start and reload), not from callbacks", 2)
  end
  return errors.named("watch", where, via, name, M.declare)
end

--- declare(where, name, spec): checks and declares a watch; refuses
-- (errors.refuse) what is wrong with it.
function M.declare(where, name, spec)
  -- `on`: a watch of another node's watch (vigil.remote_watch).
  if type(spec) == "table" and rawget(spec, "on") ~= nil then
    return remote_watch.declare(where, name, spec, watch_schema)
  end
  do
    local s, _, errs = schema.check(spec, watch_schema, "watch '" .. name .. "'")
    if not s then refuse_all(where, errs) end
    -- A probe whose constructor refused was reported there.
    for _, p in ipairs(s.probes or {}) do if p.invalid then return end end
    if not s.start and not s.match then
      fail(where, name, "needs 'start' (a command to run) or 'match' (a running process to watch)")
    end
    local observe = s.mode == "observe"
    if observe and not s.match then
      fail(where, name, "mode = \"observe\" watches a process something else runs: it needs a 'match'")
    end
    if watches[name] then
      fail(where, name, "declared twice (first at " .. watches[name].where .. ")")
    end
    if s.start and s.restart_script then
      fail(where, name, "'start' and 'restart_script' both say how to start it: use one")
    end
    if s.kill and s.start then
      fail(where, name, "'kill' is for adopted processes (a 'match'): what vigil starts is signalled with its whole process group")
    end
    if not s.start then
      for _, k in ipairs(start_only) do
        if s[k] ~= nil then
          fail(where, name, string.format("'%s' applies to a process vigil starts; this watch has no 'start'%s",
            k, k == "user" and " (to match by user, use match.user)" or ""))
        end
      end
    end
    if s.supplementary_groups and not s.user then
      fail(where, name, "'supplementary_groups' are added to a 'user''s own groups: set 'user'")
    end
    if s.pidfile_timeout and not s.pidfile then fail(where, name, "'pidfile_timeout' needs 'pidfile'") end
    if s.count then
      if not s.match then fail(where, name, "'count' needs a 'match' (which processes to count)") end
      if s.count.max and s.count.min and s.count.max < s.count.min then
        fail(where, name, string.format("count.max %d is below count.min %d", s.count.max, s.count.min))
      end
    end
    if s.stop_on_remove ~= nil and not s.match then
      fail(where, name, "'stop_on_remove' applies to a watch with a 'match' (a watch without one always stops what it started when it is removed)")
    end
    if s.on_over and not (s.count and s.count.max) then
      fail(where, name, "'on_over' needs count.max")
    end
    if s.on_under and not (s.count or (s.match and s.match.select == "all")) then
      fail(where, name, "'on_under' needs a 'count' (or match.select = \"all\")")
    end
    if s.on_under == "restart" and not (s.start or s.restart_script) then
      fail(where, name, "on_under = \"restart\" needs 'start' or 'restart_script'")
    end
    -- Which exits are restarted: restart.on (a oneshot: "never" unless
    -- it says otherwise), kept apart from the budget.
    local budget, restart_on = s.restart, s.restart and s.restart.on
    if restart_on then
      budget = {}
      for k, v in pairs(s.restart) do if k ~= "on" then budget[k] = v end end
      if next(budget) == nil then budget = nil end
    end
    if s.oneshot then
      if not s.start then fail(where, name, "'oneshot' needs 'start' (the job vigil runs to completion)") end
      if restart_on == "always" then
        fail(where, name, "a oneshot runs to completion: restart.on = \"always\" would run it again forever (\"failure\" retries a failed run)")
      end
      restart_on = restart_on or "never"
    end
    local one_process = not (s.count or (s.match and s.match.select == "all"))
    for _, k in ipairs({ "success_exit", "oneshot", "autostart" }) do
      if s[k] ~= nil and not one_process then
        fail(where, name, string.format("'%s' applies to one process; this watch counts several (count or match.select = \"all\")", k))
      end
    end
    if restart_on and not one_process then
      fail(where, name, "restart.on applies to one process; this watch counts several (count or match.select = \"all\")")
    end
    if s.autostart ~= nil and not (s.start or s.restart_script) then
      fail(where, name, "'autostart' applies to a watch vigil starts ('start' or 'restart_script'); this one only finds its process")
    end
    local match = s.match
    if match then
      match = {}
      for k, v in pairs(s.match) do match[k] = v end
      if type(match.parent) == "number" then match.ppid, match.parent = match.parent, nil end
    end
    local checks = s.checks
    if checks then
      checks = {}
      for k, v in pairs(s.checks) do checks[k] = v == false and 0 or v end
      if type(checks.cpu) == "table" then
        checks.cpu_percent, checks.cpu_for = checks.cpu.percent, checks.cpu["for"]
      end
      checks.cpu = nil
    end
    local probe_specs, probe_checks
    if s.probes and #s.probes > 0 then
      if s.count or (s.match and s.match.select == "all") then
        fail(where, name, "'probes' watch one process; this watch counts several (count or match.select = \"all\")")
      end
      probe_specs, probe_checks = {}, {}
      for i, p in ipairs(s.probes) do
        if p.kind == "exec" then
          fail(where, name, "an exec probe runs a command inside a container: use it in a 'container' declaration")
        end
        if p.kind == "notify" and not (s.start or s.restart_script) then
          fail(where, name, "a notify probe needs 'start' or 'restart_script' (vigil hands NOTIFY_SOCKET to what it starts)")
        end
        local copy = {}
        for k, v in pairs(p) do if k ~= "check" and k ~= "where" then copy[k] = v end end
        probe_specs[i] = copy
        if p.check then probe_checks[i] = p.check end
      end
    end
    if s.on_hung and not probe_specs then fail(where, name, "'on_hung' needs 'probes'") end
    -- State checks sample one process too (the set's members come and go
    -- by the thousand): refused, like probes, rather than never run.
    if s.count or (s.match and s.match.select == "all") then
      for _, k in ipairs({ "checks", "on_state" }) do
        if s[k] then
          fail(where, name, string.format("'%s' watch%s one process; this watch counts several (count or match.select = \"all\")",
            k, k == "checks" and "" or "es"))
        end
      end
    end
    local stop = s.stop or {}
    local logcfg = s.log
    local script = s.restart_script
    local ok, derr = exec.declare(name, resources.declare_fields(s, {
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
      match = match,
      restart_script = script and script.command,
      script_timeout = script and script.timeout,
      find_within = script and script.find_within,
      stop_on_remove = s.stop_on_remove,
      kill = s.kill,
      count = s.count,
      checks = checks,
      probes = probe_specs,
      autostart = s.autostart,
      oneshot = s.oneshot,
      observe = observe or nil,
      where = where,
    }))
    if not ok then fail(where, name, derr) end
    -- Only the fields a watch has: a constructor naming a dozen keys sizes
    -- the table for all of them, nil or not (memory at thousands of watches).
    local w = {
      name = name,
      where = where,
      -- Watches with equal budgets (or none) share one table.
      restart = budget_table(budget),
    }
    w.restart_on = restart_on
    w.success_exit = s.success_exit
    w.oneshot = s.oneshot
    w.description = s.description
    w.rearm = s.rearm
    w.on_exhausted = s.on_exhausted
    w.ladder = s.escalate
    if s.dump then w.dump = s.dump end
    w.requires = s.requires
    w.settle = s.settle
    if budget or s.escalate or s.on_exhausted or s.rearm then w.own_policy = true end
    if s.escalate then
      for i, step in ipairs(s.escalate) do
        if step.action == "restart_group" then
          w.needs_group = string.format("escalate[%d]", i)
        end
      end
    end
    -- Only a watch that cannot start its process says so: one field
    -- fewer in the common table (a table of four fields takes half the
    -- room of one of five: memory at thousands of watches).
    if not (s.start or s.restart_script) or observe then w.cannot_start = true end
    if observe then w.observe = true end
    w.parent = match and match.parent
    w.count = s.count
    w.on_over = s.on_over
    w.on_under = s.on_under
    w.on_state = s.on_state
    w.on_hung = s.on_hung
    if probe_checks and next(probe_checks) then w.probe_checks = probe_checks end
    watches[name] = w
  end
end

-- container "NAME" { ... }: a container of a Docker API engine, watched
-- like a process (its budget, ladder, groups and probes are a watch's).
local container_match_schema = {
  name = nonempty,
  id = function(v, path)
    if type(v) ~= "string" or not v:match("^%x+$") or #v < 12 then
      return nil, path .. ": expected a container id (at least 12 hex digits)"
    end
    return v
  end,
  image = nonempty,
  label = schema.map_of_strings,
  compose_project = nonempty,
  service = nonempty,
}
local container_schema = {
  description = schema.string,
  match = schema.table(container_match_schema),
  restart = watch_schema.restart,
  rearm = schema.duration,
  on_exhausted = ladder.hook_checker,
  escalate = ladder.checker,
  requires = watch_schema.requires,
  settle = schema.duration,
  autostart = schema.boolean,
  stop = schema.by_type({ table = schema.table({ timeout = schema.duration }), number = schema.duration,
    string = schema.duration }, "a table { timeout = ... } or a duration"),
  take_over = schema.boolean,
  engine_grace = schema.duration,
  probes = probes.container_list,
  healthcheck = schema.boolean,
  on_hung = watch_schema.on_hung,
  -- Same-image counts: the running containers the match selects.
  count = schema.table(count_schema),
  on_over = action({ "alert", "stop_newest" }),
  on_under = action({ "alert", "start" }),
  create = schema.table({ image = nonempty, cmd = schema.list_of_strings, label = schema.map_of_strings }),
}

--- container(name) { spec }: declares a container watch.
function M.container(name)
  local where, via = runtime.where(1)
  if runtime.live() then
    error("container: containers are declared when rule files load (at start and reload), not from callbacks", 2)
  end
  return errors.named("container", where, via, name, M.declare_container)
end

function M.declare_container(where, name, spec)
  local s, _, errs = schema.check(spec, container_schema, "container '" .. name .. "'")
  if not s then refuse_all(where, errs) end
  for _, p in ipairs(s.probes or {}) do if p.invalid then return end end
  local function cfail(msg) errors.refuse(string.format("%s: container '%s': %s", where, name, msg)) end
  if watches[name] then cfail("declared twice (first at " .. watches[name].where .. ")") end
  if not s.match or next(s.match) == nil then
    cfail("needs 'match' (name, id, image, label, compose_project/service: which container)")
  end
  if s.match.service and not s.match.compose_project then
    cfail("match.service is a compose service: it needs match.compose_project")
  end
  local list = s.probes or {}
  if s.healthcheck then
    list[#list + 1] = { kind = "exec", name = "healthcheck", healthcheck = true, every = 30, timeout = 30, fails = 3 }
  end
  local probe_specs, probe_checks
  if #list > 0 then
    probe_specs, probe_checks = {}, {}
    for i, p in ipairs(list) do
      if p.kind == "notify" then cfail("a notify probe needs a process vigil starts; use exec or http") end
      local copy = {}
      for k, v in pairs(p) do if k ~= "check" and k ~= "where" then copy[k] = v end end
      probe_specs[i] = copy
      if p.check then probe_checks[i] = p.check end
    end
  end
  if s.on_hung and not probe_specs then cfail("'on_hung' needs 'probes'") end
  if s.count then
    if s.count.max and s.count.min and s.count.max < s.count.min then
      cfail(string.format("count.max %d is below count.min %d", s.count.max, s.count.min))
    end
    if s.match.name or s.match.id then
      cfail("count counts the containers of an image, labels or a compose service; a match by name or id selects one")
    end
    if probe_specs then cfail("probes and healthcheck apply to one container; this watch counts several (count)") end
    if s.take_over then cfail("take_over applies to one container; this watch counts several (count)") end
    if s.create and not s.create.image then cfail("create needs 'image' (what new containers run)") end
  else
    for _, k in ipairs({ "on_over", "on_under", "create" }) do
      if s[k] ~= nil then cfail("'" .. k .. "' needs a 'count' (how many containers of the match may run)") end
    end
  end
  if s.on_over and not (s.count and s.count.max) then cfail("'on_over' needs count.max") end
  local on_under = s.on_under
  if s.count and on_under == nil then on_under = s.create and "start" or "alert" end
  local budget = s.restart
  if budget and budget.on then cfail("restart.on applies to processes vigil runs to an end; a container is restarted on any death") end
  local stop = type(s.stop) == "table" and s.stop.timeout or (type(s.stop) == "number" and s.stop) or nil
  local ok, derr = exec.declare(name, {
    container = {
      match = s.match,
      take_over = s.take_over,
      stop_timeout = stop,
      engine_grace = s.engine_grace,
      count = s.count and { min = s.count.min or 0, max = s.count.max, hold = s.count.hold },
      fill = on_under == "start",
      create = s.create,
    },
    probes = probe_specs,
    autostart = s.autostart,
    where = where,
  })
  if not ok then cfail(derr) end
  local w = {
    name = name,
    where = where,
    restart = budget_table(budget),
    container = true,
  }
  w.description = s.description
  w.rearm = s.rearm
  w.on_exhausted = s.on_exhausted
  w.ladder = s.escalate
  w.requires = s.requires
  w.settle = s.settle
  w.on_hung = s.on_hung
  if s.count then
    w.count, w.on_over, w.on_under = s.count, s.on_over, on_under
  end
  if budget or s.escalate or s.on_exhausted or s.rearm then w.own_policy = true end
  if s.escalate then
    for i, step in ipairs(s.escalate) do
      if step.action == "restart_group" then w.needs_group = string.format("escalate[%d]", i) end
    end
  end
  if probe_checks and next(probe_checks) then w.probe_checks = probe_checks end
  watches[name] = w
end

-- The engine's address: `docker = { socket = "/run/podman/podman.sock" }`
-- (a global the rules set) or `docker { socket = ... }` (a call, which
-- names its file:line in errors). Without one, DOCKER_HOST or the default.
local docker_schema = { socket = nonempty }
local docker_decl

function M.docker(spec)
  local where = runtime.where(1)
  local d, _, errs = schema.check(spec, docker_schema, "docker")
  if not d then refuse_all(where, errs) end
  if docker_decl then
    errors.refuse(string.format("%s: docker: declared twice (first at %s)", where, docker_decl.where))
  end
  docker_decl = { socket = d.socket, where = where }
end

--- What the host makes an engine from, or nil: no container and no docker block.
function M.docker_config()
  local any = docker_decl ~= nil
  for _, w in pairs(watches) do if w.container then any = true break end end
  if not any then return nil end
  return { socket = docker_decl and docker_decl.socket or "" }
end

-- The assignment form, read once every file has run.
local function read_docker_global()
  local g = rawget(_G, "docker")
  if type(g) ~= "table" then return end
  local d, _, errs = schema.check(g, docker_schema, "docker")
  if not d then
    for _, e in ipairs(errs) do errors.add("rules: " .. e) end
    return
  end
  if docker_decl then
    errors.add("rules: docker: set as a table and declared at " .. docker_decl.where .. ": use one")
    return
  end
  docker_decl = { socket = d.socket, where = "rules" }
end

--- Cross-checks once every rule file is loaded: a match's parent names a
-- watch that exists.
function M.finish()
  read_docker_global()
  for name, w in pairs(watches) do
    if w.parent == name then
      errors.add(string.format("%s: watch '%s': match.parent: a watch cannot be its own parent", w.where, name))
    elseif w.parent and not watches[w.parent] then
      errors.add(string.format("%s: watch '%s': match.parent: no watch named '%s'%s", w.where, name, w.parent,
        schema.suggest(w.parent, watches)))
    end
  end
end

-- Runs a command for a hook with the context in its environment.
local function run_hook(w, label, cmd, env)
  env.VIGIL_WATCH = w.name
  local pid, err = exec.run(cmd, {
    timeout = 60,
    env = env,
    on_exit = function(code, sig)
      if code ~= 0 then
        log.event("rule_error", w.name, {
          callback = label .. " command of " .. w.name,
          error = string.format("%s %s", table.concat(cmd, " "), sig and ("killed by " .. sig) or ("exited " .. code)),
        })
      end
    end,
  })
  if not pid then log.event("rule_error", w.name, { callback = label .. " of " .. w.name, error = err }) end
  return pid
end

local function call_hook(w, label, fn, ev)
  local ok, err = pcall(fn, w, ev)
  if not ok then log.event("rule_error", w.name, { callback = label .. " of " .. w.name, error = tostring(err) }) end
  return ok
end

--- Takes an evidence dump of w for `trigger` (exit, hung, count, state)
-- when its `dump` asks for one; `force`: the ladder's dump step (always).
function M.dump(w, trigger, ev, force)
  local d = w.dump
  if not force and not (d and d.on[trigger]) then return end
  d = d or {}
  local opts = { core = d.core and trigger ~= "exit", environ = d.environ, keep = d.keep,
    max_size = d.max_size, lines = d.lines, timeout = d.timeout }
  if d.extra then
    local ok, items = pcall(d.extra, w, ev)
    if not ok then
      log.event("rule_error", w.name, { callback = "dump.extra of " .. w.name, error = tostring(items) })
    elseif type(items) == "table" then
      opts.extra = {}
      for i, it in ipairs(items) do
        local cmd = it.command
        if type(cmd) == "string" then cmd = schema.shell(cmd, "command") end
        opts.extra[i] = { name = it.name, file = it.file, command = cmd }
      end
    end
  end
  local ok, dir, err = pcall(exec.dump, w.name, { trigger = trigger, event = ev }, opts)
  if not ok then
    log.event("rule_error", w.name, { callback = "dump of " .. w.name, error = tostring(dir) })
    return nil
  end
  return dir, err
end

--- The standing order for a running process (see ladder.armable).
function M.armable(name)
  local w = watches[name]
  if not w or w.observe or (w.dump and w.dump.on.exit) then return false end
  return ladder.armable(w)
end

local class_text = {
  success = "a successful exit", failure = "a failed exit", signal = "a death by a signal",
  hang = "an end vigil forced (a hang or a bad state)",
}

-- An exit restart.on does not restart: the watch is done.
local function done(w, class, ev)
  local why
  if w.oneshot and class == "success" then
    why = "the oneshot ran to completion"
  else
    why = string.format("restart.on = \"%s\" does not restart %s", w.restart_on, class_text[class])
  end
  if class ~= "success" then M.dump(w, "exit", ev) end
  exec.finish(w.name, class == "success", why)
  pcall(exec.explain, w.name, { rule = w.where, event = ev.error or (ev.signal and ("killed by " .. ev.signal))
    or ("exited " .. tostring(ev.code)), watch = w.name, action = "done", why = why })
end

--- An observed watch's rule asked for an action: said (VGL0210), not done.
function M.observed(w, act, why)
  local what = type(act) == "function" and "run its hook" or type(act) == "table" and ("run " .. table.concat(act, " ")) or tostring(act)
  log.event("observed_action", w.name, { action = what, why = why })
end

--- The policy: called by the host when a watched process ended (or a
-- restart of it failed).
function M.on_exit(name, ev)
  local w = watches[name]
  if not w then return end
  if w.observe then
    -- Observed: a death is an event; the process is waited for by its match.
    log.event("observed_exit", name, { pid = ev.pid, how = ev.error or (ev.signal and ("killed by " .. ev.signal))
      or ("exited " .. tostring(ev.code)) })
    exec.lose(name)
    return
  end
  if w.cannot_start then
    -- Nothing vigil can start: wait for it to come back by itself.
    exec.lose(name)
    return
  end
  if w.restart_on and w.restart_on ~= "always" then
    local class = policy.exit_class(ev, w.success_exit)
    if not policy.restarts(w.restart_on, class) then return done(w, class, ev) end
  end
  M.dump(w, "exit", ev)
  ladder.failure(w, ev)
end

-- Kills by "kill_newest" are reported one per interval: the first as
-- VGL0128, the rest of the interval as one VGL0170 with their number (a
-- fork loop cut down as it forks is one line, not thousands).
M.kill_report_every = 10

local function report_kill(w, pid, ev)
  local r = w.kill_report
  if r then
    r.n, r.pid, r.max = r.n + 1, pid, ev.max
    return
  end
  log.event("count_killed", w.name, { pid = pid, count = ev.count, max = ev.max })
  r = { n = 0 }
  w.kill_report = r
  local every = M.kill_report_every
  timer.after(every, function()
    if w.kill_report == r then w.kill_report = nil end
    if r.n > 0 then
      log.event("count_kills", w.name, { killed = r.n, pid = r.pid, max = r.max, interval = every })
    end
  end)
end

--- A counted watch is outside its limits (ev: count, min, max, bounds =
-- "over" | "under" | "within", crossed, newest = { {pid, start_time}, ...}
-- when over).
function M.on_count(name, ev)
  local w = watches[name]
  if not w then return end
  if ev.bounds == "within" then
    w.killed = nil
    return
  end
  if ev.crossed then M.dump(w, "count", ev) end
  local act
  if ev.bounds == "over" then
    act = w.on_over or "alert"
  else
    act = w.on_under or (w.cannot_start and "alert" or "restart")
  end
  if act == "alert" then return end  -- the host logged VGL0125/VGL0126
  if w.observe then return M.observed(w, act, ev.bounds .. " its count") end
  if type(act) == "function" then return call_hook(w, "on_" .. ev.bounds, act, ev) end
  if act == "kill_newest" then
    w.killed = w.killed or {}
    for _, p in ipairs(ev.newest or {}) do
      if not w.killed[p.pid] then
        w.killed[p.pid] = true
        if proc.kill(p.pid, p.start_time, "TERM") then report_kill(w, p.pid, ev) end
      end
    end
    return
  end
  if act == "stop_newest" then
    -- A counted container watch: its newest containers, each once per episode.
    w.killed = w.killed or {}
    for _, c in ipairs(ev.newest or {}) do
      if not w.killed[c.id] then
        w.killed[c.id] = true
        exec.stop_container(name, c.id)
      end
    end
    return
  end
  if act == "start" then act = "restart" end  -- a container set's fill, under its budget
  if act == "restart" and (ev.crossed or ev.again) then
    return M.on_exit(name, { error = string.format("%d %s, under the minimum of %d", ev.count,
      w.container and "containers" or "processes", ev.min), uptime = 0 })
  end
  -- A command runs once per episode (VGL0125/VGL0126), not at every flip.
  if act == "restart" or not ev.crossed then return end
  run_hook(w, "on_" .. ev.bounds, act, { VIGIL_EVENT = "count_" .. ev.bounds,
    VIGIL_COUNT = tostring(ev.count), VIGIL_MIN = tostring(ev.min), VIGIL_MAX = tostring(ev.max or "") })
end

--- A watched process has been in a bad state too long (ev: pid, state =
-- "stopped" | "blocked" | "zombie", for, threshold).
function M.on_state(name, ev)
  local w = watches[name]
  if not w then return end
  M.dump(w, "state", ev)
  local act = w.on_state or "alert"
  if act == "alert" then return end  -- the host logged VGL0129..VGL0131
  if w.observe then return M.observed(w, act, ev.state) end
  local label
  if type(act) == "function" then
    call_hook(w, "on_state", act, ev)
    label = "function"
  elseif type(act) == "table" then
    run_hook(w, "on_state", act, { VIGIL_EVENT = "state_" .. ev.state, VIGIL_PID = tostring(ev.pid) })
    label = table.concat(act, " ")
  elseif ev.state == "zombie" then
    return  -- it is dead already and was recovered at its death
  elseif act == "restart" then
    exec.kill(name, "TERM", string.format("%s for %ss", ev.state, math.floor(ev["for"])))
    label = "restart"
  elseif act == "continue" then
    if ev.state ~= "stopped" then return end
    exec.kill(name, "CONT", "stopped for " .. math.floor(ev["for"]) .. "s")
    label = "continue"
  end
  log.event("state_action", name, { pid = ev.pid, state = ev.state, action = label })
end

--- A liveness probe failed `fails` times in a row (ev: pid, probe, kind,
-- fails, threshold, reason, evidence, status). By default the process is
-- killed (TERM, KILL after the stop timeout) and its death goes through
-- the restart policy like any other.
function M.on_hung(name, ev)
  local w = watches[name]
  if not w then return end
  M.dump(w, "hung", ev)
  local act = w.on_hung or "restart"
  if act == "alert" then return end  -- the host logged VGL0142
  if w.observe then return M.observed(w, act, "hung") end
  local label
  if type(act) == "function" then
    call_hook(w, "on_hung", act, ev)
    label = "function"
  elseif type(act) == "table" then
    run_hook(w, "on_hung", act, { VIGIL_EVENT = "process_hung", VIGIL_PID = tostring(ev.pid),
      VIGIL_PROBE = ev.probe, VIGIL_REASON = ev.reason })
    label = table.concat(act, " ")
  else
    exec.kill(name, "TERM", string.format("hung: probe %s failed %d times: %s", ev.probe, ev.fails, ev.reason))
    label = "restart"
  end
  log.event("hung_action", name, { pid = ev.pid, probe = ev.probe, action = label })
end

--- Runs the check of a `probe { check = fn }` (index in the watch's probe
-- list); its answer goes back with the token.
function M.run_probe(name, index, token)
  local w = watches[name]
  local check = w and w.probe_checks and w.probe_checks[index]
  if not check then
    exec.probe_answer(name, index, token, false, "no check function (the rules changed)")
    return
  end
  local answered = false
  local function done(ok, reason, evidence)
    if answered then return end
    answered = true
    exec.probe_answer(name, index, token, ok and true or false,
      reason ~= nil and tostring(reason) or nil, evidence ~= nil and tostring(evidence) or nil)
  end
  local ok, err = pcall(check, done, w)
  if not ok then
    log.event("rule_error", name, { callback = "probe check of " .. name, error = tostring(err) })
    done(false, "the check raised an error: " .. tostring(err))
  end
end

-- The keys a group's member takes from its group (set them on the group).
local group_keys = { rearm = true }
for k in pairs(live_keys) do
  if k:match("^restart%.") then group_keys[k] = true end
end

--- Sets a live key on `owner`, a watch or a group (its table from
-- vigil.group) -> normalized text | nil, err.
function M.set_live(owner, key, value)
  local k = live_keys[key]
  if not k then
    local names = {}
    for n in pairs(live_keys) do
      if owner.kind ~= "group" or group_keys[n] then names[#names + 1] = n end
    end
    table.sort(names)
    return nil, string.format("'%s' cannot be changed live (keys: %s)", key, table.concat(names, ", "))
  end
  if owner.kind == "group" and not group_keys[key] then
    return nil, string.format("'%s' is a group: '%s' belongs to its watches", owner.name, key)
  end
  if owner.kind ~= "group" and owner.group and group_keys[key] then
    return nil, string.format("'%s' is a member of group '%s', whose budget decides its restarts: set %s on the group (vigil set %s %s %s)",
      owner.name, owner.group, key, owner.group, key, value)
  end
  local v, err = k[1](value, key)
  if v == nil then return nil, err end
  if shared_budgets[owner.restart] then
    local copy = {}
    for kk, vv in pairs(owner.restart) do copy[kk] = vv end
    owner.restart = copy
  end
  -- The declared value, the first time the key is set in this state:
  -- what `vigil set NAME KEY --default` brings back.
  local f = live_fields[key]
  owner.declared = owner.declared or {}
  if owner.declared[key] == nil then
    local t = f[1] and owner[f[1]] or owner
    owner.declared[key] = { value = t and t[f[2]] }
  end
  local ok, serr = pcall(k[2], owner, v)
  if not ok then return nil, tostring(serr) end
  return k[3](v)
end

--- Brings a live key of `owner` back to its declared value (`vigil set
-- NAME KEY --default`) -> the value's text | nil, err.
function M.reset_live(owner, key)
  local k = live_keys[key]
  if not k then return M.set_live(owner, key, "") end  -- the same refusal, with the keys
  if owner.kind == "group" and not group_keys[key] then
    return nil, string.format("'%s' is a group: '%s' belongs to its watches", owner.name, key)
  end
  if owner.kind ~= "group" and owner.group and group_keys[key] then
    return nil, string.format("'%s' is a member of group '%s', whose budget decides its restarts: %s is the group's",
      owner.name, owner.group, key)
  end
  local f = live_fields[key]
  local saved = owner.declared and owner.declared[key]
  local t = f[1] and owner[f[1]] or owner
  if f[1] == "count" and not t then return nil, "'" .. owner.name .. "' has no count" end
  if saved then
    t[f[2]] = saved.value
    owner.declared[key] = nil
    if f[1] == "count" then exec.set_count(owner.name, t.min or 0, t.max or -1) end
  end
  local v = t and t[f[2]]
  if v == nil then
    if key == "rearm" then return "off" end
    if key == "count.max" then return "none" end
  end
  return k[3](v)
end

--- `vigil set NAME KEY VALUE` -> normalized text | nil, err
function M.set(name, key, value)
  local w = watches[name]
  if not w then return nil, string.format("no watch or group named '%s'", name) end
  return M.set_live(w, key, value)
end

--- `vigil set NAME KEY --default` -> the declared value's text | nil, err
function M.reset(name, key)
  local w = watches[name]
  if not w then return nil, string.format("no watch or group named '%s'", name) end
  return M.reset_live(w, key)
end

return M

--- vigil.discover: the policy of `vigil discover`. The host scans /proc a
-- few times over a window (host/proc/discover_scan.cpp) and hands every
-- process identity it saw to M.run; this module decides which of them are
-- steady-state services worth a watch, how they group, how each would be
-- recovered, and writes the rule text a person reviews.
--
-- Tunable by rules: require "vigil.discover" and change M.weights,
-- M.threshold, M.supervisors or M.shells before the scan's answer is made
-- (a rule file given to `vigil discover --rules FILE`, or the daemon's
-- rule files).
--
-- The daemon runs it on a schedule when the rules declare
--   discover { every = "1h", window = "10m", scans = 5 }
-- (M.declare), with the processes it already watches in input.watched and
-- the previous run's proposals in input.previous; M.run then also answers
-- what is new and what vanished (M.diff), which the host reports as events.
local M = { _VERSION = "2" }

-- Points for (and against) a process being a service.
M.weights = {
  age = 10,          -- it lived through the whole window
  init_parent = 20,  -- its parent is PID 1
  supervisor_parent = 20,  -- its parent is a known supervisor (M.supervisors)
  daemonized = 20,   -- a session leader without a terminal
  listening = 20,    -- it listens on a socket
  unit = 20,         -- it runs in a *.service unit
  tty = -40,         -- it has a controlling terminal
  session = -30,     -- it runs in an interactive session (session-N.scope)
  shell_parent = -30,  -- its parent is a shell
  zombie = -100,
}
M.threshold = 30

M.supervisors = { systemd = true, init = true, supervisord = true, runsv = true, ["s6-supervise"] = true,
  tini = true, ["dumb-init"] = true, ["containerd-shim"] = true, ["containerd-shim-runc-v2"] = true,
  monit = true, upstart = true, ["openrc-run"] = true }
M.shells = { sh = true, bash = true, dash = true, zsh = true, ksh = true, fish = true, csh = true,
  tcsh = true, ash = true, busybox = true }
-- Interpreters: the name comes from the script they run, not from them.
-- Environment variables whose value is not copied into a proposal (a
-- rule file is read by more people than the process's environment): a
-- name containing one of these (case-insensitive) is written with its
-- value replaced.
M.secret_names = { "pass", "secret", "token", "key", "credential", "auth", "cookie", "session", "private" }

local function secret_name(name)
  local n = name:lower()
  for _, part in ipairs(M.secret_names) do
    if n:find(part, 1, true) then return true end
  end
  return false
end

-- The observed environment with secret-looking values replaced.
local function redacted(environ)
  if not environ then return nil end
  local out = {}
  for _, kv in ipairs(environ) do
    local k = kv:match("^([^=]*)=")
    out[#out + 1] = (k and secret_name(k)) and (k .. "=(redacted: set it yourself)") or kv
  end
  return out
end

M.interpreters = { python = true, python3 = true, perl = true, ruby = true, node = true, java = true,
  sh = true, bash = true, dash = true, php = true, lua = true, ["lua5.4"] = true }

local function basename(p) return (p:match("([^/]+)$") or p) end

-- A token with its digits hidden: instance numbers, pids and ports vary
-- between instances of one program and must not split the group.
local function norm(tok) return (tok:gsub("%d+", "#")) end

local function interp_name(exe)
  local b = basename(exe)
  return M.interpreters[b] or M.interpreters[(b:gsub("[%d.]+$", ""))]
end

-- A name for the rule: the program's (or its script's) base name.
local function program_name(p)
  local argv = p.argv or {}
  if interp_name(p.exe or "") then
    for i = 2, #argv do
      local a = argv[i]
      if a:sub(1, 1) ~= "-" then return (basename(a):gsub("%.%w+$", "")) end
      if a == "-c" or a == "-m" then
        if a == "-m" and argv[i + 1] then return argv[i + 1] end
        break
      end
    end
  end
  if p.exe and p.exe ~= "" then return basename(p.exe) end
  return p.comm
end

local function clean_name(s)
  s = tostring(s):lower():gsub("[^%w_.@-]+", "-"):gsub("^[^%w_@]+", ""):gsub("%-+$", "")
  if s == "" then s = "proc" end
  return s
end

--- score(p, ctx) -> points, reasons: how much p looks like a service.
function M.score(p, ctx)
  local w, pts, why = M.weights, 0, {}
  local function add(key, cond)
    if cond then pts = pts + (w[key] or 0); why[#why + 1] = key end
  end
  local parent = ctx.by_pid[p.ppid]
  local pcomm = parent and parent.comm or ""
  add("age", p.first == 1 and p.last == ctx.scans)
  add("init_parent", p.ppid == 1)
  add("supervisor_parent", p.ppid ~= 1 and M.supervisors[pcomm] == true)
  add("daemonized", p.session == p.pid and p.tty == 0)
  add("listening", #(p.listening or {}) > 0)
  add("unit", (p.unit or "") ~= "")
  add("tty", p.tty ~= 0)
  add("session", (p.scope or "") ~= "")
  add("shell_parent", M.shells[pcomm] == true or M.shells[basename(parent and parent.exe or "")] == true)
  add("zombie", p.state == "Z")
  return pts, why
end

-- The group key: (exe, uid, normalized argv).
local function group_key(p)
  local t = {}
  for i, a in ipairs(p.argv or {}) do t[i] = norm(a) end
  return (p.exe or "") .. "\0" .. tostring(p.uid) .. "\0" .. table.concat(t, "\0")
end

-- Index of the one argv token that differs between the roots (same
-- length argv), or nil.
local function differing_token(roots)
  local n = #roots[1].argv
  for _, r in ipairs(roots) do if #r.argv ~= n then return nil end end
  local at
  for i = 1, n do
    local v = roots[1].argv[i]
    for _, r in ipairs(roots) do
      if r.argv[i] ~= v then
        if at and at ~= i then return nil end
        at = i
      end
    end
  end
  return at
end

--- recovery(c, ctx): how the candidate would be brought back.
function M.recovery(c, ctx)
  local p = c.process
  if ctx.systemd and (p.unit or "") ~= "" then
    return { method = "systemctl", command = "systemctl restart " .. p.unit, unit = p.unit }
  end
  local exe = p.exe or ""
  -- What names the program in a script: its executable, or for an
  -- interpreter the script it runs (every python program shares the exe).
  local needle = exe
  if interp_name(exe) then
    needle = nil
    for i = 2, #(p.argv or {}) do
      if p.argv[i]:sub(1, 1) == "/" then needle = p.argv[i]; break end
    end
  end
  for _, s in ipairs(ctx.init_scripts or {}) do
    if needle and needle ~= "" and s.text:find(needle, 1, true) then
      return { method = "init_script", command = s.path .. " restart", script = s.path }
    end
  end
  if p.argv and #p.argv > 0 and exe ~= "" then
    return { method = "start", argv = p.argv, cwd = p.cwd, user = p.uid, environ = redacted(p.environ), nofile = p.nofile }
  end
  return { method = "alert" }
end

-- What rules may set in this module, as data: the daemon carries these
-- from its live rules to the state the policy runs in (functions a rule
-- replaces, such as M.score, are `vigil discover --rules` only).
local tunable = { weights = true, threshold = true, supervisors = true, shells = true,
  interpreters = true, secret_names = true }

--- tuning() -> the tunable tables as the rules left them (entry.discover_tuning).
function M.tuning()
  local t = {}
  for k in pairs(tunable) do t[k] = M[k] end
  return t
end

--- run(input) -> { candidates = {...}, rejected = n, text = rule file }
-- input: { scans, window, every, self, systemd, init_scripts,
--   processes = { {pid, start_time, first, last, seen, ...}, ... },
--   and from the daemon: watched = { pid, ... }, previous = { summary, ... },
--   tuning = M.tuning() of its live rules }
function M.run(input)
  -- The daemon runs the policy in a state of its own (off its event
  -- loop) and hands it the live rules' tuning (M.tuning).
  for k, v in pairs(input.tuning or {}) do
    if tunable[k] then M[k] = v end
  end
  local procs = input.processes or {}
  local ctx = { scans = input.scans, by_pid = {}, systemd = input.systemd, init_scripts = input.init_scripts }
  local latest = {}  -- pid -> the identity seen last (for parents)
  for _, p in ipairs(procs) do
    local cur = latest[p.pid]
    if not cur or p.last >= cur.last then latest[p.pid] = p end
  end
  ctx.by_pid = latest
  -- Vigil itself (this command, a running daemon) and everything under
  -- it: what a daemon supervises is watched already.
  -- The processes a running daemon watches (adopted or started) and
  -- their descendants (an adopted master's workers) are its already.
  local watched = {}
  for _, pid in ipairs(input.watched or {}) do watched[pid] = true end
  local function under_self(p)
    local seen = 0
    while p and seen < 64 do
      if p.pid == input.self or watched[p.pid] or basename(p.exe or "") == "vigil" then return true end
      p = latest[p.ppid]
      seen = seen + 1
    end
    return false
  end
  -- Group by key; a group is steady when some identity survived the window
  -- and a restart is an identity that ended while another of the key began.
  local groups, order = {}, {}
  for _, p in ipairs(procs) do
    if not under_self(p) and p.pid ~= 2 and p.ppid ~= 2 then
      local k = group_key(p)
      local g = groups[k]
      if not g then g = { key = k, members = {} }; groups[k] = g; order[#order + 1] = k end
      g.members[#g.members + 1] = p
    end
  end
  local candidates, rejected = {}, 0
  for _, k in ipairs(order) do
    local g = groups[k]
    local alive, ids = {}, {}
    for _, p in ipairs(g.members) do
      ids[p.pid .. ":" .. p.start_time] = p
      if p.last == ctx.scans then alive[#alive + 1] = p end
    end
    -- Roots: members whose parent is not in the group (a pre-fork
    -- server's master; its workers are its children).
    local alive_pids = {}
    for _, p in ipairs(alive) do alive_pids[p.pid] = true end
    local roots, workers = {}, {}
    for _, p in ipairs(alive) do
      if alive_pids[p.ppid] then workers[p.ppid] = (workers[p.ppid] or 0) + 1
      else roots[#roots + 1] = p end
    end
    table.sort(roots, function(a, b) return a.pid < b.pid end)
    -- Each root decides alone; a root that appeared during the window
    -- counts as the restart of one that ended.
    local ended = {}
    for _, p in ipairs(g.members) do
      if p.last < ctx.scans and not alive_pids[p.ppid] then ended[#ended + 1] = p end
    end
    local instances = {}
    for _, r in ipairs(roots) do
      local pts, why = M.score(r, ctx)
      local survived = r.first == 1
      local restarted = false
      if not survived and #ended > 0 and r.first > 1 then
        -- Scored as the one it replaced would be: the window is its group's.
        table.remove(ended, 1)
        restarted, survived = true, true
        pts = pts + M.weights.age
        why[#why + 1] = "age (restarted)"
      end
      if survived and pts >= M.threshold then
        instances[#instances + 1] = { process = r, score = pts, reasons = why,
          restarts = restarted and 1 or 0, workers = workers[r.pid] or 0 }
      else
        rejected = rejected + 1
      end
    end
    local token = #instances > 1 and differing_token((function()
      local t = {}
      for i, c in ipairs(instances) do t[i] = c.process end
      return t
    end)()) or nil
    for _, c in ipairs(instances) do
      local p = c.process
      c.name = clean_name(program_name(p))
      if token then
        c.instance = p.argv[token]
        c.name = c.name .. "-" .. clean_name(c.instance)
        local prev = p.argv[token - 1]
        c.match_cmdline = (prev and prev:sub(1, 1) == "-") and (prev .. " " .. c.instance) or c.instance
      elseif #instances > 1 then
        c.same_as = #instances  -- identical instances: one counted watch
      end
      c.recovery = M.recovery(c, ctx)
      c.pids = { p.pid }
      c.listening = p.listening
      candidates[#candidates + 1] = c
      if c.same_as then
        -- One counted watch: every instance and every worker of theirs.
        local n, w = 0, 0
        for _, i in ipairs(instances) do n, w = n + 1, w + i.workers end
        c.count, c.instances, c.workers = n + w, n, w
        break
      end
    end
  end
  -- Candidates of one executable in different groups (argv that differ
  -- in more than one token): each is matched by a token of its argv that
  -- no other of them has.
  local by_exe = {}
  for _, c in ipairs(candidates) do
    local k = (c.process.exe or "") .. "\0" .. tostring(c.process.uid)
    by_exe[k] = by_exe[k] or {}
    table.insert(by_exe[k], c)
  end
  for _, list in pairs(by_exe) do
    if #list > 1 then
      for _, c in ipairs(list) do
        if not c.match_cmdline then
          local argv = c.process.argv or {}
          for i = #argv, 2, -1 do
            local unique = #argv[i] >= 3
            for _, o in ipairs(list) do
              if o ~= c and unique then
                for _, t in ipairs(o.process.argv or {}) do
                  if t:find(argv[i], 1, true) then unique = false; break end
                end
              end
            end
            if unique then c.match_cmdline = argv[i]; break end
          end
        end
      end
    end
  end
  -- Unique names.
  local used = {}
  for _, c in ipairs(candidates) do
    local n, i = c.name, 2
    while used[n] do n = c.name .. "-" .. i; i = i + 1 end
    used[n] = true
    c.name = n
  end
  table.sort(candidates, function(a, b) return a.name < b.name end)
  local out = { candidates = candidates, rejected = rejected, text = M.rule_text(candidates, input) }
  out.summaries = {}
  for i, c in ipairs(candidates) do out.summaries[i] = M.summary(c) end
  if input.previous then out.new, out.vanished = M.diff(input.previous, out.summaries) end
  return out
end

--- key(c) -> what identifies a proposal from one run to the next: what
-- its watch would match (exe, user, the distinguishing argument), not
-- its pid (a service restarted between two runs is the same proposal)
-- nor its name (a duplicate's -2 depends on the others).
function M.key(c)
  local p = c.process
  return table.concat({ p.exe or "", tostring(math.tointeger(p.uid) or p.uid),
    c.match_cmdline or "", c.count and "count" or "" }, "\0")
end

--- summary(c) -> the short form of a proposal the daemon keeps between
-- runs and puts in its events: { key, name, exe, pid, score, recovery, command }.
function M.summary(c)
  local r = c.recovery or {}
  return { key = M.key(c), name = c.name, exe = c.process.exe or "", pid = c.process.pid,
    score = c.score, recovery = r.method or "alert", command = r.command }
end

--- diff(previous, current) -> new, vanished: the summaries of `current`
-- whose key `previous` did not have, and those of `previous` that
-- `current` lacks (both in name order).
function M.diff(previous, current)
  local before, now = {}, {}
  for _, s in ipairs(previous or {}) do before[s.key] = s end
  for _, s in ipairs(current or {}) do now[s.key] = s end
  local new, vanished = {}, {}
  for _, s in ipairs(current or {}) do if not before[s.key] then new[#new + 1] = s end end
  for _, s in ipairs(previous or {}) do if not now[s.key] then vanished[#vanished + 1] = s end end
  local by_name = function(a, b) return a.name < b.name end
  table.sort(new, by_name)
  table.sort(vanished, by_name)
  return new, vanished
end

-- The daemon's schedule ---------------------------------------------------

-- The shortest values that make sense: a window must hold its scans (one
-- scan of a busy machine takes a second or two of CPU), and discoveries
-- do not overlap.
M.limits = { every = 2, window = 1, gap = 0.1, scans = { 3, 1000 } }

local declared = nil

--- discover { every = "1h", window = "10m", scans = 5 }: the daemon runs
-- a discovery every `every`, its `scans` scans spread over `window`
-- (default: 10m, or half of `every` when that is shorter; 5 scans).
-- At most once per load; errors name file:line and the key.
function M.declare(spec)
  local runtime = require "vigil.runtime"
  local schema = require "vigil.schema"
  local errors = require "vigil.errors"
  if runtime.live() then error("discover: declared when rule files load", 2) end
  local where = runtime.where(1)
  if declared then
    return errors.add(where .. ": discover: declared twice (at " .. declared.where .. ")")
  end
  local s, _, errs = schema.check(spec, {
    every = schema.duration,
    window = schema.duration,
    scans = schema.integer(M.limits.scans[1], M.limits.scans[2]),
  }, "discover")
  if not s then
    for _, e in ipairs(errs) do errors.add(where .. ": " .. e) end
    return
  end
  local function bad(msg) errors.add(where .. ": discover." .. msg) end
  if not s.every then return bad("every: required (how often the daemon discovers, e.g. \"1h\")") end
  if s.every < M.limits.every then
    return bad(string.format("every: %gs is too short: at least %gs (a discovery scans /proc several times)",
      s.every, M.limits.every))
  end
  s.window = s.window or math.min(600, s.every / 2)
  if s.window < M.limits.window then
    return bad(string.format("window: %gs is too short: at least %gs", s.window, M.limits.window))
  end
  if s.window > s.every then
    return bad(string.format("window: %gs is longer than every (%gs): one discovery runs at a time",
      s.window, s.every))
  end
  s.scans = s.scans or 5
  if s.window / (s.scans - 1) < M.limits.gap then
    return bad(string.format("scans: %d scans over %gs are less than %gs apart: fewer scans or a longer window",
      s.scans, s.window, M.limits.gap))
  end
  s.where = where
  declared = s
end

--- The declared schedule { every, window, scans, where } (entry.discover), or nil.
function M.declared() return declared end

-- A Lua string literal on one line: %q writes a newline as a backslash
-- and a real newline, which would end a commented-out line early and turn
-- the rest of a process's argv or environment into code.
local function lua_string(s) return (string.format("%q", s):gsub("\\\n", "\\n")) end

-- Text from a process (its argv) made safe for a comment: every control
-- character (a newline, a carriage return: both end a Lua comment) shown
-- as an escape.
local function comment_text(s)
  return (s:gsub("[%c\\]", function(c)
    if c == "\\" then return "\\\\" end
    return string.format("\\%d", c:byte())
  end))
end

local function lua_list(t)
  local out = {}
  for i, v in ipairs(t) do out[i] = lua_string(v) end
  return "{ " .. table.concat(out, ", ") .. " }"
end

--- rule_text(candidates, input): a commented rule file; every watch in
-- mode = "observe" until an operator promotes it.
function M.rule_text(candidates, input)
  local L = {}
  local function add(s) L[#L + 1] = s end
  add("-- Proposed by `vigil discover` (" .. tostring(input.scans) .. " scans over "
    .. tostring(input.window) .. "s). Review every watch before you rely on it:")
  add("-- each starts in mode = \"observe\" (vigil counts, probes and alerts but never")
  add("-- starts, stops or kills); delete that line to let vigil act.")
  for _, c in ipairs(candidates) do
    local p = c.process
    add("")
    local ports = {}
    for _, s in ipairs(p.listening or {}) do ports[#ports + 1] = s.port and (s.proto .. ":" .. s.port) or ("unix:" .. s.path) end
    add(string.format("-- pid %d, uid %d, score %d (%s)%s", p.pid, p.uid, c.score, table.concat(c.reasons, ", "),
      #ports > 0 and (", listening " .. comment_text(table.concat(ports, " "))) or ""))
    add("-- argv: " .. comment_text(table.concat(p.argv or {}, " ")))
    if c.restarts > 0 then add(string.format("-- restarted %d time(s) during the window", c.restarts)) end
    add(string.format("watch %s {", lua_string(c.name)))
    add("  mode = \"observe\",")
    local m = { "exe = " .. lua_string(p.exe), "user = " .. tostring(math.tointeger(p.uid) or p.uid) }
    if c.match_cmdline then m[#m + 1] = "cmdline = " .. lua_string(c.match_cmdline) end
    add("  match = { " .. table.concat(m, ", ") .. " },")
    local n = c.count or (c.workers > 0 and (c.workers + 1)) or nil
    if n then
      local what
      if c.instances then
        what = string.format("%d identical instances%s", c.instances,
          c.workers > 0 and string.format(" and %d workers of theirs", c.workers) or "")
      else
        what = string.format("the master and its %d worker%s", c.workers, c.workers == 1 and "" or "s")
      end
      add("  -- " .. what)
      add(string.format("  count = { min = %d },", n))
    end
    local r = c.recovery
    if r.method == "systemctl" or r.method == "init_script" then
      add(string.format("  restart_script = %s,", lua_string(r.command)))
    elseif r.method == "start" then
      add("  -- No unit or init script starts it. To let vigil start it as it was seen")
      add("  -- (and drop the match above), uncomment:")
      add("  -- start = " .. lua_list(p.argv) .. ",")
      if r.cwd and r.cwd ~= "" then add("  -- cwd = " .. lua_string(r.cwd) .. ",") end
      add(string.format("  -- user = %s,", lua_string(tostring(math.tointeger(r.user) or r.user))))
      if r.nofile and r.nofile > 0 then add(string.format("  -- limits = { nofile = %d },", r.nofile)) end
      if r.environ and #r.environ > 0 then
        local e = {}
        for _, kv in ipairs(r.environ) do
          local k, v = kv:match("^([%w_]+)=(.*)$")
          if k and #e < 40 then e[#e + 1] = string.format("%s = %s", k, lua_string(v)) end
        end
        add("  -- env = { " .. table.concat(e, ", ") .. " },")
      end
    else
      add("  -- no way to start it was found: alerts only")
    end
    add("}")
  end
  return table.concat(L, "\n") .. "\n"
end

return M

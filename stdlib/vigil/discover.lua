--- vigil.discover: the policy of `vigil discover`. The host scans /proc a
-- few times over a window (host/proc/discover_scan.cpp) and hands every
-- process identity it saw to M.run; this module decides which of them are
-- steady-state services worth a watch, how they group, how each would be
-- recovered, and writes the rule text a person reviews.
--
-- Tunable by rules: require "vigil.discover" and change M.weights,
-- M.threshold, M.supervisors or M.shells before the scan's answer is made
-- (a rule file given to `vigil discover --rules FILE`).
local M = { _VERSION = "1" }

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

--- run(input) -> { candidates = {...}, rejected = n, text = rule file }
-- input: { scans, window, every, self, systemd, init_scripts,
--   processes = { {pid, start_time, first, last, seen, ...}, ... } }
function M.run(input)
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
  local function under_self(p)
    local seen = 0
    while p and seen < 64 do
      if p.pid == input.self or basename(p.exe or "") == "vigil" then return true end
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
  return { candidates = candidates, rejected = rejected, text = M.rule_text(candidates, input) }
end

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

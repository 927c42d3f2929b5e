--- vigil.ladder: what happens when a watched process fails, as data.
--
--   escalate = {
--     { "restart", limit = 3, within = "5m" },   -- the watch (and what its group's strategy names)
--     { "restart_group", limit = 1, within = "1h" },
--     "failover",                                -- hand over to the cluster: the final give-up
--   }
--
-- Each failure walks the ladder from the top. A restart step with budget
-- left restarts and ends the walk; with its budget used up, the walk goes
-- on. "alert", a command ({ command = "..." }) or a function (returning
-- true when it recovered) run and the walk goes on. "failover" and
-- "reboot" end it. Reaching the end, or a final step, is the give-up: the
-- watch (or group) is exhausted, its on_exhausted hook runs once, and
-- `rearm` re-arms the whole ladder after a cool-down. A group that gives
-- up inside another group is a failure of that member for the outer
-- group: only the outermost give-up is final.
--
-- Budgets and step uses live in the host (exec.step, exec.info), so they
-- survive reloads; every decision is explained (exec.explain) for
-- `vigil explain`.
local schema = require "vigil.schema"
local policy = require "vigil.policy"
local exec = require "vigil.exec"
local log = require "vigil.log"
local runtime = require "vigil.runtime"
local duration = require "vigil.duration"
local cluster = require "vigil.cluster"
local errors = require "vigil.errors"

local M = { _VERSION = "1" }

M.default = { { action = "restart" } }

local final = { failover = true, reboot = true }
local names = { restart = true, restart_group = true, failover = true, reboot = true, alert = true, dump = true }

--- The keys of a restart budget (a watch's or group's `restart`, a
-- ladder step's own).
M.restart_schema = {
  limit = schema.integer(0),
  within = schema.duration,
  backoff = schema.duration_range,
  delay = schema.duration,
  reset = schema.duration,
}
local budget_schema = { schema.string }
for k, v in pairs(M.restart_schema) do budget_schema[k] = v end

local command = schema.command

local function step_checker(v, path)
  if type(v) == "function" then return { action = "function", fn = v } end
  if type(v) == "string" then
    if not names[v] then
      return nil, string.format("%s: unknown step '%s' (use restart, restart_group, dump, alert, failover, reboot, { command = ... } or a function)", path, v)
    end
    return { action = v }
  end
  if type(v) ~= "table" then return nil, string.format("%s: expected a step name, a table or a function", path) end
  if v.command ~= nil and v[1] == nil then
    local cmd, err = command(v.command, path .. ".command")
    if not cmd then return nil, err end
    for k in pairs(v) do
      if k ~= "command" and k ~= "timeout" then return nil, string.format("%s: unknown key '%s' in a command step", path, tostring(k)) end
    end
    local timeout
    if v.timeout ~= nil then
      local terr
      timeout, terr = schema.duration(v.timeout, path .. ".timeout")
      if not timeout then return nil, terr end
    end
    return { action = "command", command = cmd, timeout = timeout }
  end
  local action = v[1]
  if not names[action] then
    return nil, string.format("%s: expected { \"restart\" | \"restart_group\" | ..., limit = ..., within = ... }, got %s", path, tostring(action))
  end
  if final[action] or action == "alert" or action == "dump" then
    local cmd
    for k in pairs(v) do
      if k ~= 1 and k ~= "command" then return nil, string.format("%s: unknown key '%s' for step '%s'", path, tostring(k), action) end
    end
    if v.command ~= nil then
      local err
      cmd, err = command(v.command, path .. ".command")
      if not cmd then return nil, err end
    end
    return { action = action, command = cmd }
  end
  local b, err = schema.check(v, budget_schema, path)
  if not b then return nil, err end
  b[1] = nil
  return { action = action, budget = next(b) and b or nil }
end

--- Checker for `escalate`.
function M.checker(v, path)
  if type(v) ~= "table" or #v == 0 then return nil, path .. ": expected a list of steps" end
  local out = {}
  for i, s in ipairs(v) do
    local step, err = step_checker(s, string.format("%s[%d]", path, i))
    if not step then return nil, err end
    if i > 1 and final[out[i - 1].action] then
      return nil, string.format("%s[%d]: never reached: '%s' before it ends the ladder", path, i, out[i - 1].action)
    end
    out[i] = step
  end
  return out
end

--- Checker for `on_exhausted`: an action name, a command list or a function.
function M.hook_checker(v, path)
  if type(v) == "function" or (type(v) == "table" and #v > 0) then
    if type(v) == "table" then return schema.list_of_strings(v, path) end
    return v
  end
  if v == "stop" or v == "alert" or v == "failover" or v == "reboot" then return v end
  return nil, string.format("%s: unknown action '%s' (use \"alert\", \"failover\", \"reboot\", a command list or a function)", path, tostring(v))
end

local function rule_error(owner, label, err)
  log.event("rule_error", owner.name, { callback = label .. " of " .. owner.name, error = tostring(err) })
end

-- The context a hook or command sees.
local function context_env(owner, cause, ev, event)
  return {
    VIGIL_WATCH = cause.name,
    VIGIL_GROUP = owner.kind == "group" and owner.name or "",
    VIGIL_EVENT = event,
    VIGIL_EXIT = ev.signal and ("signal " .. ev.signal) or tostring(ev.code or ev.error or ""),
  }
end

local function run_command(owner, label, cmd, env, timeout)
  local pid, err = exec.run(cmd, {
    timeout = timeout or 60,
    env = env,
    on_exit = function(code, sig)
      if code ~= 0 then
        rule_error(owner, label .. " command", string.format("%s %s", table.concat(cmd, " "),
          sig and ("killed by " .. sig) or ("exited " .. code)))
      end
    end,
  })
  if not pid then rule_error(owner, label, err) end
  return pid
end

local function reason_of(cause, ev)
  if ev.reason then return ev.reason end
  if ev.error then return cause.name .. ": " .. ev.error end
  if ev.signal then return cause.name .. " killed by " .. ev.signal end
  return string.format("%s exited %s", cause.name, tostring(ev.code))
end

-- Runs a non-restart step; returns "next" (go on), "recovered" or "final".
local function run_step(step, i, owner, cause, ev)
  local a = step.action
  local reason = reason_of(cause, ev)
  if a == "dump" then
    -- Evidence before whatever comes next (the watch's own `dump` options).
    local watch = require "vigil.watch"
    local dir = watch.dump(cause, "exit", ev, true)
    log.event("escalation_step", owner.name, { step = i, action = "dump", detail = dir or "dump failed" })
    return "next"
  elseif a == "alert" then
    log.critical(string.format("%s: %s; operator action needed", owner.name, reason), { watch = cause.name, step = i })
    return "next"
  elseif a == "command" then
    run_command(owner, "escalate step " .. i, step.command, context_env(owner, cause, ev, "escalate"), step.timeout)
    log.event("escalation_step", owner.name, { step = i, action = "command", detail = table.concat(step.command, " ") })
    return "next"
  elseif a == "function" then
    local ok, res = pcall(step.fn, ev, { owner = owner.name, watch = cause.name, step = i })
    if not ok then
      rule_error(owner, "escalate step " .. i, res)
      return "next"
    end
    log.event("escalation_step", owner.name, { step = i, action = "function", detail = res and "recovered" or "went on" })
    return res and "recovered" or "next"
  elseif a == "failover" then
    cluster.failover(owner.name, reason, step.command)
    return "final"
  elseif a == "reboot" then
    cluster.reboot(owner.name, reason, step.command)
    return "final"
  end
  return "next"
end

local function budget_of(step, owner)
  return step.budget and policy.normalize(step.budget) or owner.restart
end

local function explain(owner, t)
  t.rule = owner.where
  if owner.kind == "group" then t.strategy = owner.strategy end
  pcall(exec.explain, owner.name, t)
end

local function run_exhausted_hook(owner, cause, ev)
  local action = owner.on_exhausted
  if action == nil then return end
  local label
  if type(action) == "function" then
    label = "function"
    local ok, err = pcall(action, owner, ev)
    if not ok then return rule_error(owner, "on_exhausted", err) end
  elseif type(action) == "table" then
    label = table.concat(action, " ")
    local env = context_env(owner, cause, ev, owner.kind == "group" and "group_exhausted" or "budget_exhausted")
    if not run_command(owner, "on_exhausted", action, env) then return end
  elseif action == "alert" then
    label = "alert"
    log.critical(string.format("%s: restart budget exhausted; operator action needed", owner.name), { watch = cause.name })
  elseif action == "failover" then
    label = "failover"
    cluster.failover(owner.name, "restart budget exhausted: " .. reason_of(cause, ev))
  elseif action == "reboot" then
    label = "reboot"
    cluster.reboot(owner.name, "restart budget exhausted: " .. reason_of(cause, ev))
  else
    label = action
  end
  log.event("exhausted_hook", owner.name, { action = label })
end

local walk

-- The end of the ladder: exhaust, or hand the failure to the outer group.
local function give_up(owner, cause, ev, why, was_final)
  local group = require "vigil.group"
  if owner.kind == "group" and owner.parent and not was_final then
    local parent = group.groups[owner.parent]
    log.event("escalation_step", owner.name, { step = #(owner.ladder or M.default) + 1, action = "escalate",
      detail = "group '" .. owner.name .. "' gave up; group '" .. parent.name .. "' decides" })
    return walk(parent, cause, owner.name, ev)
  end
  if owner.kind == "group" then
    exec.exhaust_group(owner.name, owner.rearm, cause.name)
    log.event("group_exhausted", owner.name, { used = why.used or 0, within = why.within or 0, cause = cause.name })
  else
    exec.exhaust(cause.name, owner.rearm)
    log.event("budget_exhausted", cause.name, { used = why.used or 0, limit = why.limit or 0, within = why.within or 0 })
  end
  explain(owner, { event = reason_of(cause, ev), watch = cause.name, action = "give up",
    step = why.step, why = why.text, rearm = owner.rearm and duration.format(owner.rearm) or "off" })
  run_exhausted_hook(owner, cause, ev)
end

-- Walks owner's ladder for a failure of `member` (cause: the watch whose
-- process ended).
walk = function(owner, cause, member, ev)
  local group = require "vigil.group"
  local now = runtime.now()
  local why = { text = "the ladder ended" }
  local info = owner.kind == "group" and exec.group_info(owner.name) or exec.ledger(cause.name)
  local steps = owner.ladder or M.default
  for i, step in ipairs(steps) do
    local a = step.action
    if a == "restart" or a == "restart_group" then
      local rp = budget_of(step, owner)
      local key = i .. ":" .. a
      -- A watch's own "restart" counts its restart history (the one
      -- `vigil set restart.limit` tunes); other steps count their uses.
      local history = (owner.kind ~= "group" and a == "restart" and not step.budget) and info.history
        or (info.steps and info.steps[key]) or {}
      local d = policy.decide(rp, history, now, ev.uptime or 0)
      if d.action == "restart" then
        local names
        if a == "restart_group" then
          names = group.units_of(owner.name)
        else
          names = group.restart_set(owner.kind == "group" and owner.name or nil, member)
        end
        if history ~= info.history then exec.step(owner.kind == "group" and owner.name or cause.name, key, ev.uptime or 0) end
        local reason = reason_of(cause, ev)
        if owner.kind ~= "group" and #names == 1 then
          exec.restart_later(cause.name, d.delay)
        else
          -- Members that die at the same moment are reported one by one:
          -- a short window lets the later ones join this restart.
          exec.restart_set(cause.name, names, d.delay + (owner.coalesce or 0), owner.kind == "group" and owner.name or nil, reason)
        end
        log.event("restart_scheduled", cause.name, {
          restart = d.used + 1, limit = rp.limit, delay = d.delay, streak = d.streak, within = rp.within,
        })
        explain(owner, { event = reason, watch = cause.name, step = i, action = a,
          restarts = names, delay = d.delay,
          budget = { used = d.used + 1, limit = rp.limit, left = rp.limit - d.used - 1, within = duration.format(rp.within) } })
        return
      end
      why = { text = string.format("step %d (%s): %d of %d restarts used within %s", i, a, d.used, rp.limit, duration.format(rp.within)),
        used = d.used, limit = rp.limit, within = rp.within, step = i }
      if #steps > 1 then
        log.event("escalation_step", owner.name, { step = i, action = a, detail = "budget used up; next step" })
      end
    else
      local r = run_step(step, i, owner, cause, ev)
      if r == "recovered" then
        explain(owner, { event = reason_of(cause, ev), watch = cause.name, step = i, action = a })
        return
      end
      if r == "final" then
        why.text, why.step = "step " .. i .. " (" .. a .. ") ends the ladder", i
        return give_up(owner, cause, ev, why, true)
      end
    end
  end
  return give_up(owner, cause, ev, why, false)
end

--- The standing order for w's running process (entry.arm): true when
-- walk will answer its next exit, whatever the exit, with a restart at
-- once of w alone. Then the host starts the replacement the moment the
-- process ends and asks afterwards (issue 13). Only a sure yes: the
-- first step restarts w with its own history, no delay is due for any
-- uptime (a quick death after a quick one backs off), and budget is
-- left (uses only leave the window as time passes).
function M.armable(w)
  local group = require "vigil.group"
  if w.group or w.cannot_start then return false end
  if w.restart_on and w.restart_on ~= "always" then return false end  -- it depends on the exit
  local step = (w.ladder or M.default)[1]
  if not step or step.action ~= "restart" or step.budget then return false end
  local rp = w.restart
  if not rp or rp.limit <= 0 or rp.delay > 0 then return false end
  if group.required(w.name) then return false end  -- restart_set(nil, w.name) is w alone
  -- The restarts in the window (policy.used's count) and the newest
  -- run, without a table per start.
  local used, last = exec.recent(w.name, runtime.now() - rp.within)
  if not used or (last and last < rp.reset) then return false end
  return used < rp.limit
end

--- A watched process failed (it ended, or a restart of it failed):
-- `w` is the watch, `ev` the exit event.
function M.failure(w, ev)
  local group = require "vigil.group"
  if w.group then return walk(group.groups[w.group], w, w.name, ev) end
  return walk(w, w, w.name, ev)
end

return M

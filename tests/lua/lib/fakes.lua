--- fakes: a fake host (vigil.exec, vigil.runtime's clock, vigil.log,
-- vigil.cluster) for the stdlib's policy modules, recording what they
-- ask for. Unit logic only: the e2e tests drive the real host.
local real_runtime = require "vigil.runtime"

local M = {}

--- host() -> fakes table for T.load/T.fresh, and the recorder:
--   rec.calls    list of { op, ... } in order
--   rec.declared name -> spec handed to exec.declare
--   rec.info     name -> { history = {}, steps = {} } (what exec.info returns)
--   rec.now      the clock runtime.now() returns (set it)
function M.host()
  local rec = { calls = {}, declared = {}, groups = {}, orders = {}, info = {}, ginfo = {}, events = {}, now = 1000 }
  local function info_of(t, name)
    t[name] = t[name] or { history = {}, steps = {} }
    return t[name]
  end
  local function call(...) rec.calls[#rec.calls + 1] = table.pack(...) end
  rec.last_uptime = 0
  local exec = {
    declare = function(name, spec) rec.declared[name] = spec return true end,
    declare_group = function(name, spec) rec.groups[name] = spec return true end,
    order = function(name, deps, settle, group) rec.orders[name] = { deps = deps, settle = settle, group = group } end,
    info = function(name) return info_of(rec.info, name) end,
    ledger = function(name) return info_of(rec.info, name) end,
    recent = function(name, since)
      local h = info_of(rec.info, name).history
      local n = 0
      for _, r in ipairs(h) do if r.at > since then n = n + 1 end end
      return n, h[#h] and h[#h].uptime
    end,
    group_info = function(name) return info_of(rec.ginfo, name) end,
    step = function(owner, key, uptime)
      local i = rec.ginfo[owner] or info_of(rec.info, owner)
      i.steps[key] = i.steps[key] or {}
      table.insert(i.steps[key], { at = rec.now, uptime = uptime })
      call("step", owner, key)
    end,
    restart_later = function(name, delay)
      table.insert(info_of(rec.info, name).history, { at = rec.now, uptime = rec.last_uptime })
      call("restart", name, delay)
    end,
    restart_set = function(cause, names, delay, group, reason)
      table.insert(info_of(rec.info, cause).history, { at = rec.now, uptime = rec.last_uptime })
      call("restart_set", cause, table.concat(names, ","), delay, group)
    end,
    exhaust = function(name, rearm) call("exhaust", name, rearm) end,
    exhaust_group = function(name, rearm, cause) call("exhaust_group", name, rearm, cause) end,
    explain = function(name, t) rec.explained = t end,
    run = function(cmd, opts)
      rec.run_opts = opts
      call("run", table.concat(cmd, " "))
      return 4242
    end,
    kill = function(name, sig, why) call("kill", name, sig) return true end,
    stop_container = function(name, id) call("stop_container", name, id) return true end,
    lose = function(name) call("lose", name) end,
    finish = function(name, ok, why) call("finish", name, ok, why) end,
    dump = function(name) call("dump", name) return "/dump/" .. name end,
    set_count = function() end,
    probe_answer = function(name, i, token, ok, reason) call("answer", name, i, ok, reason) end,
  }
  local runtime = setmetatable({ now = function() return rec.now end }, { __index = real_runtime })
  local log = {
    event = function(name, watch, fields) rec.events[#rec.events + 1] = { name = name, watch = watch, fields = fields } end,
    critical = function(msg) rec.events[#rec.events + 1] = { name = "critical", message = msg } end,
    is_event = function() return true end,
  }
  local cluster = {
    failover = function(owner, reason, cmd) call("failover", owner) end,
    reboot = function(owner, reason, cmd) call("reboot", owner) end,
    configure = function() end,
  }
  return { ["vigil.exec"] = exec, ["vigil.runtime"] = runtime, ["vigil.log"] = log, ["vigil.cluster"] = cluster }, rec
end

--- ops(rec, op) -> list of the calls named op, each as "a b c" text.
function M.ops(rec, op)
  local out = {}
  for _, c in ipairs(rec.calls) do
    if c[1] == op then
      local parts = {}
      for i = 2, c.n do
        parts[#parts + 1] = type(c[i]) == "number" and string.format("%g", c[i]) or tostring(c[i])
      end
      out[#out + 1] = table.concat(parts, " ")
    end
  end
  return out
end

--- names(rec, name) -> the events logged with that name.
function M.events(rec, name)
  local out = {}
  for _, e in ipairs(rec.events) do if e.name == name then out[#out + 1] = e end end
  return out
end

return M

--- mylib: rule helpers shared by every rule file in this directory.
-- Rule files load it with `require "mylib"`: vigil puts the rules
-- directory's lib/ on the require path, ahead of its own stdlib.
local M = { _VERSION = "1" }

--- M.alert(w, ev): an on_exhausted function. It logs one critical line
-- that names the watch and how its last process ended.
function M.alert(w, ev)
  local how = ev.signal and ("signal " .. ev.signal) or ("exit " .. tostring(ev.code))
  vigil.log.critical(string.format("%s: gave up after %s; page the on-call", w.name, how),
    { watch = w.name, team = "payments" })
end

--- M.pool(prefix, count, template): declares the watches PREFIX-1 ..
-- PREFIX-COUNT from one template. Each copy gets WORKER_ID and WORKER_NAME
-- added to its environment and, unless the template has one, M.alert as
-- its on_exhausted action.
function M.pool(prefix, count, template)
  for i = 1, count do
    local name = prefix .. "-" .. i
    local spec = {}
    for k, v in pairs(template) do spec[k] = v end
    local env = {}
    for k, v in pairs(template.env or {}) do env[k] = v end
    env.WORKER_ID = tostring(i)
    env.WORKER_NAME = name
    spec.env = env
    spec.description = spec.description or (prefix .. " worker " .. i)
    spec.on_exhausted = spec.on_exhausted or M.alert
    watch(name)(spec)  -- `watch` is the global the rule language defines
  end
end

return M

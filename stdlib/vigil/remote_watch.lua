--- vigil.remote_watch: watches of other nodes' watches, and acting on them.
--
--   peer "nodeb" { url = "https://10.1.0.2:8443", ca = "...", cert = "...", key = "..." }
--   watch "db@nodeb" { on = "nodeb", name = "db",
--     on_down = function(ev) vigil.log.warning("VGL0900", ev) end }
--   watch "app" { start = { ... }, requires = "db@nodeb" }   -- starts once db runs there
--   vigil.remote("nodeb"):restart("db")                      -- the node decides (its authorize)
--
-- A remote watch's process is its node's business: the node starts,
-- restarts and budgets it. Here it has a state (the node's, or `unknown`
-- while the node does not answer), a readiness that gates what requires
-- it, and hooks. The host keeps the link (host/remote/): the state
-- changes and the node's events about the watch arrive as local events
-- (remote_state VGL0242, remote_event VGL0243), and this module runs the
-- hooks on them.
local schema = require "vigil.schema"
local errors = require "vigil.errors"
local runtime = require "vigil.runtime"
local log = require "vigil.log"
local host = require "vigil.remote"

local M = { _VERSION = "1" }

M.watches = {}  -- local name -> { name, where, on, remote, hooks... }

local function remote_name(v, path)
  if type(v) == "string" and v:match("^[%w_@][%w_.@%-]*$") and #v <= 64 then return v end
  return nil, string.format("%s: expected the watch's name on its node (letters, digits, '_', '.', '@', '-'), got %s",
    path, type(v) == "string" and ("'" .. v .. "'") or type(v))
end

local remote_schema = {
  on = schema.string,
  name = remote_name,
  description = schema.string,
  on_up = schema.func,
  on_down = schema.func,
  on_state = schema.func,
  on_event = schema.func,
}

-- Why a key of a local watch is refused on a remote one.
local belongs_to_node = {
  start = "its node starts it", match = "its node finds its process", restart_script = "its node restarts it",
  restart = "its node's rules budget its restarts", rearm = "its node's rules budget its restarts",
  escalate = "its node's rules decide its recovery", on_exhausted = "its node's rules decide its recovery",
  probes = "its node probes it (its readiness here is the node's `ready`)",
  checks = "its node checks its process", on_hung = "its node probes it", dump = "its node holds its process",
  requires = "its node orders its start",
}

local keys_text = "on, name, description, on_up, on_down, on_state, on_event"

--- Declares the remote watch `name` (watch.declare hands over a spec
-- with `on`); refuses (errors.refuse) what is wrong with it.
function M.declare(where, name, spec, local_keys)
  local function fail(msg) errors.refuse(string.format("%s: watch '%s': %s", where, name, msg)) end
  local plain = {}
  for k, v in pairs(spec) do
    if remote_schema[k] then
      plain[k] = v
    elseif type(k) == "string" and local_keys[k] then
      fail(string.format("'%s' does not apply to a remote watch (%s); a remote watch takes %s", k,
        belongs_to_node[k] or "its process runs on its node", keys_text))
    else
      plain[k] = v  -- the schema names it
    end
  end
  local s, _, errs = schema.check(plain, remote_schema, "watch '" .. name .. "'")
  if not s then
    for i = 1, #errs - 1 do errors.add(where .. ": " .. errs[i]) end
    errors.refuse(where .. ": " .. errs[#errs] .. " (a remote watch takes " .. keys_text .. ")")
  end
  if M.watches[name] then fail("declared twice (first at " .. M.watches[name].where .. ")") end
  local remote = s.name or name:match("^(.-)@") or name
  if remote == "" then fail("name: the part before '@' is empty; set name = \"WATCH\" (its name on " .. s.on .. ")") end
  M.watches[name] = {
    name = name, where = where, kind = "remote", on = s.on, remote = remote,
    description = s.description,
    on_up = s.on_up, on_down = s.on_down, on_state = s.on_state, on_event = s.on_event,
  }
  if s.on_up or s.on_down or s.on_state or s.on_event then runtime.want_events() end
end

--- Cross-checks once every file is loaded: `on` names a declared peer;
-- a local watch does not have the same name.
function M.finish(peers, local_watches)
  local names = {}
  for n in pairs(M.watches) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local w = M.watches[n]
    if not peers[w.on] then
      errors.add(string.format("%s: watch '%s': on: no peer named '%s'%s (declare it: peer \"%s\" { url = ... })",
        w.where, n, w.on, schema.suggest(w.on, peers), w.on))
    end
    if local_watches[n] then
      errors.add(string.format("%s: watch '%s': a local watch has the same name (at %s)", w.where, n, local_watches[n].where))
    end
  end
end

--- For the host (entry.remotes): { name, on, remote, where } in name order.
function M.list()
  local out = {}
  for n, w in pairs(M.watches) do out[#out + 1] = { name = n, on = w.on, remote = w.remote, where = w.where } end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local function call(w, label, fn, ev)
  if not fn then return end
  local ok, err = pcall(fn, ev, w)
  if not ok then log.event("rule_error", w.name, { callback = label .. " of " .. w.name, error = tostring(err) }) end
end

--- A host event: runs the hooks of the remote watch it is about.
--   remote_state: on_state; on_up when it became ready; on_down when it
--                 stopped being ready (its node stopped it, it died
--                 there, or the node does not answer: state "unknown")
--   remote_event: on_event (the node's event: ev.remote_id, ev.remote_event,
--                 ev.message, ev.fields)
function M.on_event(ev)
  local w = ev.watch and M.watches[ev.watch]
  if not w then return end
  if ev.event == "remote_state" then
    call(w, "on_state", w.on_state, ev)
    if ev.ready and not ev.was_ready then call(w, "on_up", w.on_up, ev) end
    if ev.was_ready and not ev.ready then call(w, "on_down", w.on_down, ev) end
  elseif ev.event == "remote_event" then
    call(w, "on_event", w.on_event, ev)
  end
end

-- vigil.remote(node): a handle whose methods act on the node's watches.
local verbs = { "start", "stop", "restart", "pause", "resume" }
local handle_mt = { __index = {} }
for _, verb in ipairs(verbs) do
  --- handle:VERB(watch) -> true | nil, err: asked of the node, which
  -- decides; the result is an event (VGL0244 done, VGL0245 failed).
  -- `watch` is the name on the node ("db"), or a remote watch's local
  -- name ("db@nodeb").
  handle_mt.__index[verb] = function(self, watch)
    if getmetatable(self) ~= handle_mt then
      error(string.format("vigil.remote(...):%s: call it with ':' (vigil.remote(\"node\"):%s(\"watch\"))", verb, verb), 2)
    end
    if not runtime.live() then
      error(string.format("vigil.remote(\"%s\"):%s: acts on another node: call it from a callback (vigil.on, a hook), not while rules load", self.node, verb), 2)
    end
    if type(watch) ~= "string" or watch == "" then
      error(string.format("vigil.remote(\"%s\"):%s: expected a watch name, got %s", self.node, verb, type(watch)), 2)
    end
    local w = M.watches[watch]
    if w and w.on == self.node then watch = w.remote end
    return host.act(self.node, verb, watch)
  end
end

function M.remote(node)
  if type(node) ~= "string" then error("vigil.remote: expected a peer name, got " .. type(node), 2) end
  return setmetatable({ node = node }, handle_mt)
end

return M

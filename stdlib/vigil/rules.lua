--- vigil.rules: the prelude of every rule state. It defines the rule
-- language (the `watch` global and the `vigil` table) and returns the one
-- entry table through which the host calls the rules:
--   exit(name, ev)        a watched process ended; decide
--   arm(name)             after a restart, or at an exit: is the exit surely
--                         answered by a restart at once? (the standing order)
--   set(name, key, value) `vigil set`; -> normalized | nil, err
--   reset(name, key)      `vigil set NAME KEY --default`; -> declared | nil, err
--   budget(name)          the restart budget that decides for a watch or
--                         group now -> { owner, used, left, limit, within } | nil
--   count(name, ev)       a counted watch is outside its limits
--   state(name, ev)       a watched process is stopped, blocked or a zombie
--   hung(name, ev)        a liveness probe failed `fails` times in a row
--   probe(name, i, token) run the check of a Lua probe; answer with
--                         exec.probe_answer
--   event(ev)             a host event, for vigil.on subscribers
--   finish()              all rule files loaded; cross-checks
--   api()                 the declared `api { }` table, or nil
--   discover()            the declared `discover { }` schedule, or nil
--   discover_tuning()     what the rules set in vigil.discover (weights, ...)
--   peers()               the declared peers, in order
--   remotes()             the declared remote watches (watch "x@node" { on = ... })
--   authorize(id, m, p)   may this identity make this API request? -> ok, why
--   errors()              the errors declarations recorded since the last
--                         call (vigil.errors), after each file and finish
local watch = require "vigil.watch"
local group = require "vigil.group"
local cluster = require "vigil.cluster"
local log = require "vigil.log"
local runtime = require "vigil.runtime"
local errors = require "vigil.errors"
local policy = require "vigil.policy"
local exec = require "vigil.exec"
local remote_watch = require "vigil.remote_watch"
local peer = require "vigil.peer"

local subscribers = {}  -- event name or "*" -> list of { fn, where }

-- Short names for the events rules most often want.
local aliases = {
  exit = "process_exited",
  start = "process_started",
  restart = "restart_scheduled",
  exhausted = "budget_exhausted",
  stopped = "stopped",
}

vigil = {
  version = "1",
  log = log,
  timer = require "vigil.timer",
  exec = require "vigil.exec",
  proc = require "vigil.proc",
  probe = require "vigil.probe",
  probes = require "vigil.probes",
  duration = require "vigil.duration",
  watches = watch.watches,
  groups = group.groups,
  cluster = cluster,
  api = require "vigil.api",
  peers = peer.peers,
  -- vigil.remote("nodeb"):restart("db"): acts on a peer's watches.
  remote = remote_watch.remote,
  remote_watches = remote_watch.watches,
}

--- vigil.on(event, fn): fn(ev) runs for each host event of that name
-- (a catalog name such as "process_exited", an alias: exit, start, restart,
-- exhausted, stopped, or "*" for all). ev holds the event's fields plus
-- id, event, watch, severity, message, time.
function vigil.on(name, fn)
  local where = runtime.where(1)
  if type(name) ~= "string" then return errors.add(where .. ": vigil.on: event name must be a string") end
  if type(fn) ~= "function" then return errors.add(where .. ": vigil.on: handler must be a function") end
  local key = aliases[name] or name
  if key ~= "*" and not log.is_event(key) then
    return errors.add(string.format("%s: vigil.on: unknown event '%s' (a catalog name from docs/messages.md, or exit, start, restart, exhausted, stopped, *)", where, name))
  end
  subscribers[key] = subscribers[key] or {}
  table.insert(subscribers[key], { fn = fn, where = runtime.where(1) })
  runtime.want_events()
end

_G.watch = watch.watch
_G.container = watch.container
_G.docker = watch.docker
_G.group = group.group
_G.cluster = cluster.configure
_G.api = vigil.api.declare
_G.peer = peer.peer
-- Loaded when the rules use it: the daemon's memory does not carry the
-- discovery policy for rules that never discover (issue 13).
_G.discover = function(...) return require("vigil.discover").declare(...) end
-- Probe constructors for a watch's `probes` list.
for _, k in ipairs({ "http", "tcp", "script", "file", "notify", "probe", "exec" }) do
  _G[k] = vigil.probes[k]
end

local entry = {}

function entry.exit(name, ev) watch.on_exit(name, ev) end

function entry.arm(name) return watch.armable(name) end

function entry.set(name, key, value)
  local g = group.groups[name]
  if g then return watch.set_live(g, key, value) end
  return watch.set(name, key, value)
end

function entry.reset(name, key)
  local g = group.groups[name]
  if g then return watch.reset_live(g, key) end
  return watch.reset(name, key)
end

-- A watch in a group restarts on its group's budget (ladder.failure).
function entry.budget(name)
  local g = group.groups[name]
  local w = not g and watch.watches[name]
  local owner = g or (w and (w.group and group.groups[w.group] or w))
  if not owner then return nil end
  local info = owner.kind == "group" and exec.group_info(owner.name) or exec.ledger(owner.name)
  local rp = policy.normalize(owner.restart)
  local used = policy.used(rp, info and info.history or {}, runtime.now())
  return { owner = owner.name, used = used, limit = rp.limit,
    left = math.max(0, rp.limit - used), within = rp.within }
end

function entry.count(name, ev) watch.on_count(name, ev) end

function entry.state(name, ev) watch.on_state(name, ev) end

function entry.hung(name, ev) watch.on_hung(name, ev) end

function entry.probe(name, index, token) watch.run_probe(name, index, token) end

-- The container engine the rules need ({ socket = "" or a path }), or nil.
function entry.docker() return watch.docker_config() end

function entry.finish()
  watch.finish()
  remote_watch.finish(peer.peers, watch.watches)
  if errors.any() then return end
  group.finish(watch.watches, remote_watch.watches)
  if errors.any() then return end
  cluster.finish(group.groups, watch.watches)
end

entry.errors = errors.take

-- The declared peers, in order (the host's remote nodes; the CLI's --nodes).
function entry.peers() return peer.list() end

-- The remote watches ({ name, on, remote, where }), for the host's links.
entry.remotes = remote_watch.list

-- A rule kind's closed schema as data ("watch", "group"), for the API's
-- GET /v1/schema/KIND: the dashboard's form is made from it. nil for an
-- unknown kind.
function entry.schema(kind)
  local s = ({ watch = watch.schema, group = group.schema })[kind]
  return s and require("vigil.schema").describe(s) or nil
end

-- The declared api table, for the host's listener.
function entry.api() return vigil.api.declared() end
function entry.preset_api(spec) return vigil.api.preset(spec) end

-- The declared discover { } schedule, for the host's periodic discovery.
function entry.discover()
  local d = package.loaded["vigil.discover"]
  return d and d.declared() or nil
end
-- What the rules set in vigil.discover (weights, threshold, ...), for the
-- state the daemon's discovery runs its policy in.
function entry.discover_tuning() return require("vigil.discover").tuning() end

-- A request on the API listener: may `id` do it? -> allowed, reason. A
-- hook that fails or answers something else than a boolean denies.
function entry.authorize(id, method, path)
  local ok, allowed, why = pcall(vigil.api.authorize, id, method, path)
  if not ok then return false, "vigil.api.authorize failed: " .. tostring(allowed) end
  if allowed == true then return true end
  if allowed ~= false and allowed ~= nil then
    return false, "vigil.api.authorize returned " .. type(allowed) .. ", not a boolean"
  end
  return false, type(why) == "string" and why or "not authorized"
end

local function deliver(list, ev)
  if not list then return end
  for _, s in ipairs(list) do
    local ok, err = pcall(s.fn, ev)
    if not ok then
      log.event("rule_error", ev.watch or "", { callback = "handler at " .. s.where, error = tostring(err) })
    end
  end
end

function entry.event(ev)
  remote_watch.on_event(ev)
  cluster.on_event(ev)
  deliver(subscribers[ev.event], ev)
  deliver(subscribers["*"], ev)
end

return entry

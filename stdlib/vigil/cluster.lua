--- vigil.cluster: which groups run on which node, and what "failover" does.
--
--   cluster { adapter = "etcd", endpoints = { "http://10.1.0.1:2379", ... }, node = "nodea", ttl = "4s" }
--   group "orders" { "db", "app", "web", clustered = true, on_exhausted = "failover" }
--
-- A clustered group runs only on the node that holds it; elsewhere it is
-- loaded, checked and shown as `standby`. Who holds it is the adapter's
-- (the host's, host/cluster/):
--   etcd        an election per group; the winner runs it
--   pacemaker   Pacemaker places it (the ocf:vigil:group agent's start/stop)
--   command     this node holds it; the failover command tells the cluster
--               software (CLUSTERPRO, Serviceguard, ...) to move it
--   keepalived  this node holds it; its health goes to track_file (0 ok,
--               1 gave up), keepalived moves the address
-- The block of before adapters, cluster { failover = "..." }, is the
-- command adapter.
--
-- For rule authors:
--   vigil.cluster.holder(group) -> node | nil
--   vigil.cluster.nodes()       -> { { node = ..., holds = { ... } }, ... }
--   vigil.cluster.info(group)   -> { role, holder, lease_left, failed_on } | nil
--   vigil.cluster.on("takeover" | "lost" | "fenced" | "released" | "notice", fn)
--   vigil.cluster.failover(group, reason [, to_node]) -> true | nil, err
local schema = require "vigil.schema"
local errors = require "vigil.errors"
local runtime = require "vigil.runtime"
local log = require "vigil.log"
local duration = require "vigil.duration"
local host = require "vigil.cluster_host"

local M = { _VERSION = "1" }

local adapters = { etcd = true, pacemaker = true, command = true, keepalived = true }
M.adapters = adapters

-- The adapters that hold a group by themselves: a failover there hands
-- over a clustered group, and only one.
local electing = { etcd = true, pacemaker = true }

-- Which keys belong to which adapter (any adapter: the others).
local only_for = {
  endpoints = "etcd", ttl = "etcd", self_fence_after = "etcd", avoid_for = "etcd", prefix = "etcd",
  ca = "etcd", cert = "etcd", key = "etcd", resource = "pacemaker", track_file = "keepalived",
}

--- An etcd client URL: http(s)://host:port, host a name, an IPv4 address
-- or [IPv6].
local function endpoint(v, path)
  if type(v) ~= "string" then return nil, string.format("%s: expected a URL string, got %s", path, type(v)) end
  local scheme, rest = v:match("^(https?)://(.+)$")
  if not scheme then
    return nil, string.format("%s: '%s' is not an etcd client URL (http://HOST:PORT or https://HOST:PORT)", path, v)
  end
  rest = rest:gsub("/$", "")
  local hostpart, port = rest:match("^(%[[%x:.]+%]):(%d+)$")
  if not hostpart then hostpart, port = rest:match("^([%w.%-]+):(%d+)$") end
  if not hostpart then
    return nil, string.format("%s: '%s': expected HOST:PORT after %s:// (a name, an IPv4 address or [IPv6], and a port)", path, v, scheme)
  end
  local n = tonumber(port)
  if n < 1 or n > 65535 then return nil, string.format("%s: '%s': port %s is out of range (1-65535)", path, v, port) end
  return v
end

local function endpoints(v, path)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then return nil, path .. ": expected a list of etcd client URLs" end
  local out = {}
  for i, e in ipairs(v) do
    local ok, err = endpoint(e, string.format("%s[%d]", path, i))
    if not ok then return nil, err end
    out[i] = ok
  end
  return out
end

local function node_name(v, path)
  if type(v) == "string" and v:match("^[%w_][%w_.%-]*$") and #v <= 64 then return v end
  return nil, string.format("%s: expected a node name (letters, digits, '_', '.', '-'), got %s", path,
    type(v) == "string" and ("'" .. v .. "'") or type(v))
end

local cluster_schema = {
  adapter = schema.string,
  node = node_name,
  endpoints = endpoints,
  ttl = schema.duration,
  self_fence_after = schema.duration,
  avoid_for = schema.duration,
  prefix = schema.string,
  ca = schema.file_path,
  cert = schema.file_path,
  key = schema.file_path,
  resource = schema.string,
  track_file = schema.string,
  failover = schema.command,
  failover_timeout = schema.duration,
  reboot = schema.command,
}

local declared  -- the checked block, or nil

--- cluster { ... }: declares how this node takes part in a cluster (the
-- global `cluster`). Checked here; the host makes the adapter.
function M.configure(spec)
  local where = runtime.where(1)
  if runtime.live() then error("cluster: configured when rule files load", 2) end
  local s, _, errs = schema.check(spec, cluster_schema, "cluster")
  if not s then
    for _, e in ipairs(errs) do errors.add(where .. ": " .. e) end
    return
  end
  local function bad(fmt, ...) errors.add(string.format("%s: cluster: " .. fmt, where, ...)) end
  if declared then return bad("declared twice (first at %s)", declared.where) end
  local adapter = s.adapter
  if adapter == nil and s.failover then adapter = "command" end
  if adapter ~= nil and not adapters[adapter] then
    return bad("unknown adapter '%s'%s (use etcd, pacemaker, command or keepalived)", tostring(adapter),
      schema.suggest(adapter, adapters))
  end
  local found = false
  for k, a in pairs(only_for) do
    if s[k] ~= nil and adapter ~= a then
      found = true
      bad("'%s' is for the %s adapter (this block's adapter is %s)", k, a, adapter and ("'" .. adapter .. "'") or "none")
    end
  end
  if found then return end
  if adapter == "etcd" then
    if not s.endpoints then return bad("the etcd adapter needs endpoints = { \"http://HOST:2379\", ... }") end
    local ttl = s.ttl or 4
    s.ttl, s.self_fence_after = ttl, s.self_fence_after or ttl / 2
    if (s.cert == nil) ~= (s.key == nil) then return bad("cert and key go together (a client certificate and its key)") end
  elseif adapter == "keepalived" then
    if not s.track_file then return bad("the keepalived adapter needs track_file = \"/run/vigil/%%g.track\" (the file keepalived's track_file reads)") end
    if s.track_file:sub(1, 1) ~= "/" then return bad("track_file: expected an absolute path, got '%s'", s.track_file) end
  end
  s.adapter = adapter
  -- The adapter's own word on its settings: etcd's fencing budget (a
  -- holder that cannot renew must have stopped the group, bounded,
  -- before its lease can run out and another node win).
  local err = host.check(s)
  if err then return errors.add(string.format("%s: %s", where, err)) end
  s.where = where
  declared = s
  host.configure(s)
end

--- The checked block (nil: none), for the cross-checks.
function M.declared() return declared end

-- Whether a policy (on_exhausted, a ladder) fails over without a command
-- of its own (that is: through the adapter).
local function fails_over(owner)
  if owner.on_exhausted == "failover" then return true end
  for _, step in ipairs(owner.ladder or {}) do
    if step.action == "failover" and not step.command then return true end
  end
  return false
end

--- Cross-checks once every file is loaded (groups and watches known).
function M.finish(groups, watches)
  local names = {}
  for n in pairs(groups) do names[#names + 1] = n end
  table.sort(names)
  local adapter = declared and declared.adapter
  for _, n in ipairs(names) do
    local g = groups[n]
    if g.clustered and not adapter then
      errors.add(string.format("%s: group '%s': clustered = true needs a cluster { adapter = ... } block (this node has none)", g.where, n))
    end
    local p = g.parent
    while g.clustered and p do
      if groups[p].clustered then
        errors.add(string.format("%s: group '%s': it is inside group '%s', which is clustered already: declare clustered on one of them", g.where, n, p))
        break
      end
      p = groups[p].parent
    end
    if electing[adapter] and not g.clustered and not g.parent and fails_over(g) then
      errors.add(string.format("%s: group '%s': 'failover' hands a group over through the %s adapter: only a clustered group can be (add clustered = true)", g.where, n, adapter))
    end
  end
  if electing[adapter] then
    local wnames = {}
    for n in pairs(watches) do wnames[#wnames + 1] = n end
    table.sort(wnames)
    for _, n in ipairs(wnames) do
      local w = watches[n]
      if not w.group and fails_over(w) then
        errors.add(string.format("%s: watch '%s': 'failover' hands a group over through the %s adapter: put the watch in a clustered group", w.where, n, adapter))
      end
    end
  end
end

--- The policy of a failover (the ladder's step, on_exhausted, a rule):
-- the group is stopped completely here, then handed over. `command`: a
-- step's own command instead of the adapter.
function M.failover(owner, reason, command, to_node)
  if type(command) == "string" and to_node == nil then command, to_node = nil, command end
  local adapter = declared and declared.adapter
  local group = require "vigil.group"
  if electing[adapter] and not command then
    local g = group.groups[owner]
    if not g or not g.clustered then
      local err = string.format("'%s' is not a clustered group: the %s adapter hands over only clustered groups", tostring(owner), adapter)
      log.event("failover_failed", owner, { error = err })
      return nil, err
    end
  end
  return host.failover(owner, reason or "asked by a rule", command, to_node)
end

M.reboot = host.reboot

--- The node that holds `group` now (nil: none, unknown, or no adapter).
function M.holder(group)
  local i = host.info(group)
  return i and i.holder or nil
end

function M.info(group) return host.info(group) end
function M.nodes() return host.nodes() end
function M.node() return host.node() end
function M.adapter() return host.adapter() end

-- vigil.cluster.on: the adapter's news, as the host logged it.
local kinds = {
  takeover = "cluster_takeover", lost = "cluster_lost", fenced = "cluster_fenced",
  released = "cluster_released", notice = "cluster_notice",
}
local handlers = {}  -- event name -> list of { fn, where }

function M.on(kind, fn)
  local where = runtime.where(1)
  local ev = kinds[kind]
  if not ev then
    return errors.add(string.format("%s: vigil.cluster.on: unknown kind '%s'%s (takeover, lost, fenced, released, notice)",
      where, tostring(kind), type(kind) == "string" and schema.suggest(kind, kinds) or ""))
  end
  if type(fn) ~= "function" then return errors.add(where .. ": vigil.cluster.on: handler must be a function") end
  handlers[ev] = handlers[ev] or {}
  table.insert(handlers[ev], { fn = fn, where = where })
  runtime.want_events()
end

--- A host event (rules.lua hands every one): the handlers of its kind get
-- it, ev.group naming the group.
function M.on_event(ev)
  local list = handlers[ev.event]
  if not list then return end
  ev.group = ev.watch
  for _, h in ipairs(list) do
    local ok, err = pcall(h.fn, ev)
    if not ok then
      log.event("rule_error", ev.watch or "", { callback = "vigil.cluster.on handler at " .. h.where, error = tostring(err) })
    end
  end
end

return M

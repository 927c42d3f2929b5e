--- vigil.group: groups of watches that depend on each other.
--
--   group "orders" {
--     strategy = "rest_for_one",                 -- one_for_one | one_for_all | rest_for_one
--     restart  = { limit = 5, within = "10m" },  -- the group's budget
--     "db", "app", "web",                        -- start order = dependency order
--     on_exhausted = "failover",                 -- runs once when the group gives up
--     clustered = true,                          -- runs only on the node that holds it (vigil.cluster)
--   }
--
-- Members are watches or other groups. Each member starts once the one
-- before it is ready; a watch's `requires = { ... }` adds dependencies
-- of its own (a graph instead of a chain). The host keeps the order
-- (exec.order, exec.restart_set); this module declares the groups, checks
-- them (unknown names, members of two groups, cycles) and answers which
-- watches a failure restarts.
local schema = require "vigil.schema"
local exec = require "vigil.exec"
local runtime = require "vigil.runtime"
local policy = require "vigil.policy"
local ladder = require "vigil.ladder"
local errors = require "vigil.errors"

local M = { _VERSION = "1" }

-- name -> { name, where, strategy, members, restart, rearm, ladder,
-- on_exhausted, settle, parent, units }
local groups = {}
M.groups = groups

local function member_name(v, path)
  if type(v) == "string" and v:match("^[%w_@][%w_.@%-]*$") then return v end
  return nil, string.format("%s: expected a watch or group name, got %s", path, tostring(v))
end

schema.doc(member_name, { type = "string", format = "watch or group name" })

local group_schema = {
  member_name,
  description = schema.string,
  strategy = schema.one_of("one_for_one", "one_for_all", "rest_for_one"),
  restart = schema.table(ladder.restart_schema),
  rearm = schema.duration,
  settle = schema.duration,
  coalesce = schema.duration,
  escalate = ladder.checker,
  on_exhausted = ladder.hook_checker,
  clustered = schema.boolean,
}

-- The closed schema, for vigil.schema.describe (the dashboard's form).
M.schema = group_schema

--- group(name) { members..., keys }: declares a group.
function M.group(name)
  local where, via = runtime.where(1)
  if runtime.live() then
    error("group: groups are declared when rule files load (at start and reload), not from callbacks", 2)
  end
  return errors.named("group", where, via, name, M.declare)
end

--- declare(where, name, spec): checks and declares a group; refuses
-- (errors.refuse) what is wrong with it.
function M.declare(where, name, spec)
  do
    local s, _, errs = schema.check(spec, group_schema, "group '" .. name .. "'")
    if not s then
      for i = 1, #errs - 1 do errors.add(where .. ": " .. errs[i]) end
      errors.refuse(where .. ": " .. errs[#errs])
    end
    local function fail(fmt, ...) errors.refuse(string.format("%s: group '%s': " .. fmt, where, name, ...)) end
    if groups[name] then fail("declared twice (first at %s)", groups[name].where) end
    if #s == 0 then fail("no members (list watch or group names)") end
    local seen = {}
    for i, m in ipairs(s) do
      if seen[m] then fail("'%s' is listed twice", m) end
      if m == name then fail("a group cannot contain itself") end
      seen[m] = i
    end
    local members = {}
    for i, m in ipairs(s) do members[i] = m end
    groups[name] = {
      name = name,
      kind = "group",
      where = where,
      description = s.description,
      strategy = s.strategy or "one_for_one",
      members = members,
      restart = policy.normalize(s.restart),
      rearm = s.rearm,
      settle = s.settle,
      coalesce = s.coalesce or 0.05,
      ladder = s.escalate or ladder.default,
      on_exhausted = s.on_exhausted,
      clustered = s.clustered or false,
    }
  end
end

local function suggest(name, watches) return schema.suggest(name, watches, groups) end

--- The watches a group holds, in start order (nested groups expanded).
local function units_of(name, out)
  out = out or {}
  local g = groups[name]
  if not g then
    out[#out + 1] = name
    return out
  end
  for _, m in ipairs(g.members) do units_of(m, out) end
  return out
end
M.units_of = units_of

-- Explicit `requires` dependents: watch -> watches that require it.
local requirers = {}

--- Cross-checks once every file is loaded, then declares the groups and
-- every watch's dependencies to the host.
local function names_of(t)
  local names = {}
  for n in pairs(t) do names[#names + 1] = n end
  table.sort(names)
  return names
end

function M.finish(watches, remotes)
  remotes = remotes or {}
  -- Each phase records every error it finds (in name order); the next
  -- phase needs the one before to be sound, so it runs only without.
  local found = false
  local function bad(fmt, ...)
    found = true
    errors.add(string.format(fmt, ...))
  end
  -- Membership: names exist, each belongs to one group, no group nests in itself.
  for _, gname in ipairs(names_of(groups)) do
    local g = groups[gname]
    if watches[gname] then
      bad("%s: group '%s': a watch has the same name (at %s)", g.where, gname, watches[gname].where)
    end
    for _, m in ipairs(g.members) do
      local owner = watches[m] or groups[m]
      if remotes[m] then
        bad("%s: group '%s': '%s' is a remote watch: its node orders it; name it in the 'requires' of the members that need it", g.where, gname, m)
      elseif not owner then
        bad("%s: group '%s': no watch or group named '%s'%s", g.where, gname, m, suggest(m, watches))
      elseif owner.group then
        bad("%s: group '%s': '%s' is already a member of group '%s'", g.where, gname, m, owner.group)
      else
        owner.group = gname
      end
    end
  end
  if found then return end
  for _, name in ipairs(names_of(watches)) do
    local w = watches[name]
    if w.group and w.own_policy then
      bad("%s: watch '%s': a member of group '%s' follows the group's 'restart', 'escalate', 'on_exhausted' and 'rearm': set them on the group (%s)",
        w.where, name, w.group, groups[w.group].where)
    end
    if w.needs_group and not w.group then
      bad("%s: watch '%s': %s: 'restart_group' needs the watch to be in a group", w.where, name, w.needs_group)
    end
    for _, r in ipairs(w.requires or {}) do
      if r == name then
        bad("%s: watch '%s': requires: a watch cannot require itself", w.where, name)
      elseif not watches[r] and not groups[r] and not remotes[r] then
        bad("%s: watch '%s': requires: no watch or group named '%s'%s", w.where, name, r, suggest(r, watches))
      end
    end
  end
  for _, gname in ipairs(names_of(groups)) do
    local g = groups[gname]
    local seen, p = { [gname] = true }, g.group
    while p do
      if seen[p] then
        bad("%s: group '%s': groups contain each other (%s)", g.where, gname, p)
        break
      end
      seen[p] = true
      p = groups[p].group
    end
  end
  if found then return end
  for gname, g in pairs(groups) do
    g.parent = g.group
    g.units = units_of(gname)
  end

  -- Dependencies: the member before in a group, and `requires`.
  local after = {}
  local function add(w, deps)
    after[w] = after[w] or {}
    for _, d in ipairs(deps) do
      if d ~= w then after[w][#after[w] + 1] = d end
    end
  end
  for _, g in pairs(groups) do
    for i = 2, #g.members do
      local prev = units_of(g.members[i - 1])
      for _, w in ipairs(units_of(g.members[i])) do add(w, prev) end
    end
  end
  for name, w in pairs(watches) do
    for _, r in ipairs(w.requires or {}) do
      local deps = units_of(r)
      add(name, deps)
      for _, d in ipairs(deps) do
        requirers[d] = requirers[d] or {}
        table.insert(requirers[d], name)
      end
    end
  end
  -- Cycles: a depth-first walk; the path names the loop.
  local state, path = {}, {}
  local function visit(n)
    if state[n] == "done" then return end
    if state[n] == "active" then
      local from
      for i, p in ipairs(path) do if p == n then from = i end end
      local loop = {}
      for i = from, #path do loop[#loop + 1] = path[i] end
      loop[#loop + 1] = n
      local w = watches[path[#path]]
      errors.refuse(string.format("%s: watch '%s': dependency cycle: %s", w.where, path[#path], table.concat(loop, " -> ")))
    end
    state[n] = "active"
    path[#path + 1] = n
    local deps = after[n] or {}
    table.sort(deps)
    for _, d in ipairs(deps) do visit(d) end
    path[#path] = nil
    state[n] = "done"
  end
  local names = {}
  for n in pairs(watches) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    if errors.declaring(function() visit(n) return true end) == nil then return end
  end

  -- The host: groups, then each watch's order.
  for gname, g in pairs(groups) do
    local ok, err = exec.declare_group(gname, {
      where = g.where, strategy = g.strategy, parent = g.parent, description = g.description,
      members = g.members, units = g.units, clustered = g.clustered,
    })
    if not ok then return errors.add(g.where .. ": " .. err) end
  end
  for name, w in pairs(watches) do
    local settle = w.settle
    local p = w.group
    while settle == nil and p do
      settle = groups[p].settle
      p = groups[p].group
    end
    local deps, uniq = {}, {}
    for _, d in ipairs(after[name] or {}) do
      if not uniq[d] then uniq[d] = true deps[#deps + 1] = d end
    end
    if #deps > 0 or settle or w.group then exec.order(name, deps, settle or 0, w.group) end
  end
end

--- The watches that depend on `name` through `requires`, transitively.
local function add_requirers(name, set, list)
  for _, r in ipairs(requirers[name] or {}) do
    if not set[r] then
      set[r] = true
      list[#list + 1] = r
      add_requirers(r, set, list)
    end
  end
end

--- Whether any watch requires `name` (a failure of it then restarts
-- them too). No table is made: the standing order asks at every restart.
function M.required(name)
  local r = requirers[name]
  return r ~= nil and #r > 0
end

--- The watches a failure of `member` (a direct member of group `gname`,
-- or a watch in no group when gname is nil) restarts: the members the
-- strategy names, and everything that requires them.
function M.restart_set(gname, member)
  local picked = {}
  local g = gname and groups[gname]
  if not g then
    picked = { member }
  elseif g.strategy == "one_for_all" then
    picked = g.members
  elseif g.strategy == "rest_for_one" then
    local from
    for i, m in ipairs(g.members) do if m == member then from = i end end
    for i = from or 1, #g.members do picked[#picked + 1] = g.members[i] end
  else
    picked = { member }
  end
  local set, list = {}, {}
  for _, m in ipairs(picked) do
    for _, w in ipairs(units_of(m)) do
      if not set[w] then set[w] = true list[#list + 1] = w end
    end
  end
  for i = 1, #list do add_requirers(list[i], set, list) end
  return list
end

return M

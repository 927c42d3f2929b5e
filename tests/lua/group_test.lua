-- vigil.group: the strategies' restart sets, nesting, requires, and the
-- cross-checks (unknown names, two groups, cycles) with file:line.
local T = require "testing"
local fakes = require "fakes"

local function fresh()
  local f, rec = fakes.host()
  local W, G = T.fresh(f)
  return W, G, rec
end

-- Declares watches named in `names` (each a process vigil starts).
local function watches(W, names)
  for _, n in ipairs(names) do W.watch(n) { start = "x" } end
end

local function finish(W, G)
  local errs = T.errors_of(function() G.finish(W.watches) end)
  if #errs > 0 then error("finish: " .. table.concat(errs, " | "), 2) end
end

T.test("one_for_one restarts the member alone", function()
  local W, G = fresh()
  watches(W, { "db", "app", "web" })
  G.group "g" { strategy = "one_for_one", "db", "app", "web" }
  finish(W, G)
  T.eq(T.list(G.restart_set("g", "app")), "app", "one")
  T.eq(T.list(G.restart_set(nil, "app")), "app", "outside a group")
end)

T.test("one_for_all restarts every member, in start order", function()
  local W, G = fresh()
  watches(W, { "db", "app", "web" })
  G.group "g" { strategy = "one_for_all", "db", "app", "web" }
  finish(W, G)
  T.eq(T.list(G.restart_set("g", "web")), "db,app,web", "all")
  T.eq(T.list(G.restart_set("g", "db")), "db,app,web", "all")
end)

T.test("rest_for_one restarts the member and those after it", function()
  local W, G = fresh()
  watches(W, { "db", "app", "web" })
  G.group "g" { strategy = "rest_for_one", "db", "app", "web" }
  finish(W, G)
  T.eq(T.list(G.restart_set("g", "db")), "db,app,web", "from the first")
  T.eq(T.list(G.restart_set("g", "app")), "app,web", "from the middle")
  T.eq(T.list(G.restart_set("g", "web")), "web", "the last")
end)

T.test("the default strategy is one_for_one; defaults are filled in", function()
  local W, G = fresh()
  watches(W, { "a", "b" })
  G.group "g" { "a", "b" }
  finish(W, G)
  local g = G.groups.g
  T.eq(g.strategy, "one_for_one", "strategy")
  T.eq(g.coalesce, 0.05, "coalesce window")
  T.eq(g.restart.limit, 5, "budget")
  T.eq(T.list(G.restart_set("g", "b")), "b", "one")
end)

T.test("nested groups: a member group expands to its watches", function()
  local W, G, rec = fresh()
  watches(W, { "db", "cache", "app", "web" })
  G.group "data" { strategy = "one_for_all", "db", "cache" }
  G.group "site" { strategy = "rest_for_one", "data", "app", "web" }
  finish(W, G)
  T.eq(T.list(G.units_of("site")), "db,cache,app,web", "units")
  T.eq(T.list(G.restart_set("site", "data")), "db,cache,app,web", "the data group and what follows")
  T.eq(T.list(G.restart_set("site", "app")), "app,web", "rest")
  T.eq(T.list(G.restart_set("data", "cache")), "db,cache", "inner one_for_all")
  T.eq(G.groups.data.parent, "site", "parent")
  T.eq(rec.groups.data.parent, "site", "declared with its parent")
  -- Start order: each member after the one before it.
  T.eq(T.sorted(rec.orders.app.deps), "cache,db", "app after the data group")
  T.eq(T.list(rec.orders.web.deps), "app", "web after app")
end)

T.test("requires adds dependents to the restart set, transitively", function()
  local W, G, rec = fresh()
  W.watch "db" { start = "x" }
  W.watch "api" { start = "x", requires = "db" }
  W.watch "worker" { start = "x", requires = { "api" } }
  W.watch "other" { start = "x" }
  finish(W, G)
  T.eq(T.list(G.restart_set(nil, "db")), "db,api,worker", "dependents follow")
  T.eq(T.list(G.restart_set(nil, "api")), "api,worker", "one level down")
  T.eq(T.list(G.restart_set(nil, "other")), "other", "unrelated")
  T.eq(T.list(rec.orders.api.deps), "db", "api starts after db")
end)

T.test("requires of a group depends on all its watches", function()
  local W, G, rec = fresh()
  watches(W, { "db", "cache" })
  W.watch "api" { start = "x", requires = "data" }
  G.group "data" { "db", "cache" }
  finish(W, G)
  T.eq(T.sorted(rec.orders.api.deps), "cache,db", "deps")
  T.eq(T.list(G.restart_set("data", "db")), "db,api", "a failure in the group restarts api")
end)

T.test("settle is inherited from the group", function()
  local W, G, rec = fresh()
  W.watch "a" { start = "x" }
  W.watch "b" { start = "x", settle = "3s" }
  G.group "g" { settle = "2s", "a", "b" }
  finish(W, G)
  T.eq(rec.orders.a.settle, 2, "inherited")
  T.eq(rec.orders.b.settle, 3, "own")
end)

T.test("dependency cycles are named", function()
  local W, G = fresh()
  W.watch "a" { start = "x", requires = "b" }
  W.watch "b" { start = "x", requires = "c" }
  W.watch "c" { start = "x", requires = "a" }
  local errs = T.errors_of(function() G.finish(W.watches) end)
  T.eq(#errs, 1, table.concat(errs, " | "))
  T.contains(errs[1], "dependency cycle: a -> b -> c -> a", "the loop")
  T.contains(errs[1], "group_test.lua:", "file:line")
end)

T.test("cross-checks report every error with file:line", function()
  local W, G = fresh()
  watches(W, { "db", "app" })
  local l1 = T.here() G.group "g1" { "db", "ap" }
  local l2 = T.here() G.group "g2" { "db" }
  local errs = T.errors_of(function() G.finish(W.watches) end)
  T.eq(#errs, 2, table.concat(errs, " | "))
  T.contains(errs[1], l1 .. ": group 'g1': no watch or group named 'ap' (did you mean 'app'?)", "unknown")
  T.contains(errs[2], l2 .. ": group 'g2': 'db' is already a member of group 'g1'", "two groups")
end)

T.test("groups that contain each other", function()
  local W, G = fresh()
  watches(W, { "a" })
  G.group "x" { "a", "y" }
  G.group "y" { "x" }
  local errs = T.errors_of(function() G.finish(W.watches) end)
  T.ok(#errs >= 1, "refused")
  T.contains(errs[1], "groups contain each other", "nesting loop")
end)

T.test("members with their own policy, restart_group outside a group, bad requires", function()
  local W, G = fresh()
  W.watch "own" { start = "x", restart = { limit = 1 } }
  W.watch "lone" { start = "x", escalate = { { "restart_group" } } }
  W.watch "req" { start = "x", requires = { "nobody", "req" } }
  G.group "g" { "own" }
  local errs = T.errors_of(function() G.finish(W.watches) end)
  T.eq(#errs, 4, table.concat(errs, " | "))
  T.contains(errs[1], "watch 'lone': escalate[1]: 'restart_group' needs the watch to be in a group", "1")
  T.contains(errs[2], "watch 'own': a member of group 'g' follows the group's 'restart'", "2")
  T.contains(errs[3], "watch 'req': requires: no watch or group named 'nobody'", "3")
  T.contains(errs[4], "watch 'req': requires: a watch cannot require itself", "4")
end)

T.test("the group schema's refusals", function()
  local W, G = fresh()
  local cases = {
    { { "a", strategy = "all_for_one" }, "group 'g'.strategy: expected one of one_for_one, one_for_all, rest_for_one" },
    { { "a", stratgy = "one_for_all" }, "group 'g': unknown key 'stratgy' (did you mean 'strategy'?)" },
    { {}, "group 'g': no members" },
    { { "a", "a" }, "group 'g': 'a' is listed twice" },
    { { "g" }, "group 'g': a group cannot contain itself" },
    { { "bad name!" }, "group 'g'[1]: expected a watch or group name" },
    { { "a", restart = { within = 2 ^ 63 } }, "group 'g'.restart.within: duration" },
    { { "a", coalesce = "99999999999d" }, "group 'g'.coalesce: duration \"99999999999d\" is longer" },
    { { "a", settle = 1 / 0 }, "group 'g'.settle: duration must be a finite number" },
    { { "a", rearm = -1 }, "group 'g'.rearm: duration must be >= 0" },
    { { "a", on_exhausted = "explode" }, "group 'g'.on_exhausted: unknown action 'explode'" },
  }
  for i, c in ipairs(cases) do
    local at = T.here() local err = T.refused(function() G.group "g" (c[1]) end, c[2], "case " .. i)
    T.contains(err, at .. ": ", "case " .. i .. " file:line")
  end
  T.refused(function() G.group "bad name!" { "a" } end, "group name 'bad name!'")
  local first = T.here() G.group "once" { "a" }
  T.refused(function() G.group "once" { "a" } end, "group 'once': declared twice (first at " .. first .. ")")
end)

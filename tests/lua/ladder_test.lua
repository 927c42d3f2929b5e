-- vigil.ladder: the escalation steps, their budgets, the give-up and its
-- hook, re-arm, and a group's give-up inside another group. The host is
-- a fake that records what the ladder asks for (lib/fakes.lua).
local T = require "testing"
local fakes = require "fakes"

local function fresh()
  local f, rec = fakes.host()
  local W, G, L = T.fresh(f)
  return W, G, L, rec
end

-- A quick failure of the watch `name` at rec.now (seconds later).
local function fail(W, L, rec, name, later, uptime)
  rec.now = rec.now + (later or 1)
  rec.last_uptime = uptime or 100
  L.failure(W.watches[name], { code = 1, uptime = uptime or 100 })
end

T.test("the default ladder restarts until the budget is used, then gives up", function()
  local W, G, L, rec = fresh()
  W.watch "w" { start = "x", restart = { limit = 2, within = "1m" }, rearm = "10m", on_exhausted = "alert" }
  G.finish(W.watches)
  fail(W, L, rec, "w")
  fail(W, L, rec, "w")
  T.eq(#fakes.ops(rec, "restart"), 2, "two restarts")
  fail(W, L, rec, "w")
  T.eq(T.list(fakes.ops(rec, "exhaust")), "w 600", "exhausted with its re-arm")
  T.eq(#fakes.events(rec, "budget_exhausted"), 1, "logged")
  T.eq(#fakes.events(rec, "critical"), 1, "the alert hook ran once")
  T.eq(rec.explained.action, "give up", "explained")
  T.eq(rec.explained.rearm, "10m", "re-arm explained")
end)

T.test("restarts out of the window no longer count (re-armed budget)", function()
  local W, G, L, rec = fresh()
  W.watch "w" { start = "x", restart = { limit = 1, within = "1m" } }
  G.finish(W.watches)
  fail(W, L, rec, "w")
  fail(W, L, rec, "w", 61)
  T.eq(#fakes.ops(rec, "restart"), 2, "the first left the window")
  T.eq(#fakes.ops(rec, "exhaust"), 0, "not exhausted")
end)

T.test("quick failures back off", function()
  local W, G, L, rec = fresh()
  W.watch "w" { start = "x", restart = { limit = 10, within = "1h", backoff = "2s..5s" } }
  G.finish(W.watches)
  for _ = 1, 5 do fail(W, L, rec, "w", 1, 0.1) end
  T.eq(T.list(fakes.ops(rec, "restart")), "w 0,w 2,w 4,w 5,w 5", "0, then 2s doubling to the 5s cap")
end)

T.test("steps in order: restart, alert, a restart with its own budget, failover", function()
  local W, G, L, rec = fresh()
  W.watch "w" { start = "x", escalate = {
    { "restart", limit = 1, within = "1h" },
    "alert",
    { command = "/bin/true --note" },
    { "restart", limit = 1, within = "1h" },
    "failover",
  } }
  G.finish(W.watches)
  fail(W, L, rec, "w")
  T.eq(#fakes.ops(rec, "restart"), 1, "step 1 restarts")
  T.eq(T.list(fakes.ops(rec, "step")), "w 1:restart", "step 1 counts its use")
  fail(W, L, rec, "w")
  T.eq(#fakes.events(rec, "critical"), 1, "step 2 alerts")
  T.eq(T.list(fakes.ops(rec, "run")), "/bin/sh -c /bin/true --note", "step 3 runs its command")
  T.eq(#fakes.ops(rec, "restart"), 2, "step 4 restarts")
  fail(W, L, rec, "w")
  T.eq(T.list(fakes.ops(rec, "failover")), "w", "step 5 fails over")
  T.eq(T.list(fakes.ops(rec, "exhaust")), "w nil", "and that is the give-up (no re-arm)")
end)

T.test("a function step that recovers ends the walk", function()
  local W, G, L, rec = fresh()
  local seen
  W.watch "w" { start = "x", escalate = {
    { "restart", limit = 0 },
    function(ev, ctx) seen = ctx return true end,
    "failover",
  } }
  G.finish(W.watches)
  fail(W, L, rec, "w")
  T.eq(seen.watch, "w", "the step saw its context")
  T.eq(seen.step, 2, "step index")
  T.eq(#fakes.ops(rec, "failover"), 0, "not reached")
  T.eq(#fakes.ops(rec, "exhaust"), 0, "not exhausted")
end)

T.test("a function step that raises goes on and is reported", function()
  local W, G, L, rec = fresh()
  W.watch "w" { start = "x", escalate = { { "restart", limit = 0 }, function() error("boom") end } }
  G.finish(W.watches)
  fail(W, L, rec, "w")
  T.eq(#fakes.events(rec, "rule_error"), 1, "rule_error")
  T.eq(#fakes.ops(rec, "exhaust"), 1, "then the ladder ends")
end)

T.test("a group restarts by its strategy and gives up as a group", function()
  local W, G, L, rec = fresh()
  W.watch "db" { start = "x" }
  W.watch "app" { start = "x" }
  G.group "g" { strategy = "rest_for_one", restart = { limit = 1, within = "1h" }, rearm = "5m", "db", "app" }
  G.finish(W.watches)
  rec.ginfo.g = { history = {}, steps = {} }
  fail(W, L, rec, "db")
  T.eq(T.list(fakes.ops(rec, "restart_set")), "db db,app 0.05 g", "rest_for_one with the coalesce window")
  fail(W, L, rec, "app")
  T.eq(T.list(fakes.ops(rec, "exhaust_group")), "g 300 app", "the group gave up, re-armed after 5m")
end)

T.test("an inner group's give-up is a failure for the outer group", function()
  local W, G, L, rec = fresh()
  W.watch "db" { start = "x" }
  W.watch "web" { start = "x" }
  G.group "inner" { restart = { limit = 0 }, "db" }
  G.group "outer" { strategy = "one_for_all", restart = { limit = 1, within = "1h" }, "inner", "web" }
  G.finish(W.watches)
  rec.ginfo.inner = { history = {}, steps = {} }
  rec.ginfo.outer = { history = {}, steps = {} }
  fail(W, L, rec, "db")
  T.eq(#fakes.ops(rec, "exhaust_group"), 0, "the inner give-up is not final")
  T.eq(T.list(fakes.ops(rec, "restart_set")), "db db,web 0.05 outer", "the outer group restarts all")
  fail(W, L, rec, "db")
  T.eq(T.list(fakes.ops(rec, "exhaust_group")), "outer nil db", "only the outermost give-up is final")
end)

T.test("restart_group restarts the whole group", function()
  local W, G, L, rec = fresh()
  W.watch "a" { start = "x" }
  W.watch "b" { start = "x" }
  G.group "g" { escalate = { { "restart", limit = 0 }, { "restart_group", limit = 1, within = "1h" } }, "a", "b" }
  G.finish(W.watches)
  rec.ginfo.g = { history = {}, steps = {} }
  fail(W, L, rec, "b")
  T.eq(T.list(fakes.ops(rec, "restart_set")), "b a,b 0.05 g", "every unit of the group")
end)

-- docs/rules.md, on_exhausted: what a command hook gets.
T.test("an on_exhausted command runs with the context in its environment", function()
  local W, G, L, rec = fresh()
  W.watch "w" { start = "x", restart = { limit = 0 }, on_exhausted = { "/usr/local/bin/page", "down" } }
  G.finish(W.watches)
  fail(W, L, rec, "w")
  T.eq(T.list(fakes.ops(rec, "run")), "/usr/local/bin/page down", "ran")
  local env = rec.run_opts.env
  T.eq(env.VIGIL_WATCH, "w", "VIGIL_WATCH")
  T.eq(env.VIGIL_GROUP, "", "VIGIL_GROUP")
  T.eq(env.VIGIL_EVENT, "budget_exhausted", "VIGIL_EVENT")
  T.eq(env.VIGIL_EXIT, "1", "VIGIL_EXIT")
  T.eq(rec.run_opts.timeout, 60, "a 60 s timeout")
  -- A failed hook is reported.
  rec.run_opts.on_exit(3, nil)
  T.eq(#fakes.events(rec, "rule_error"), 1, "a non-zero exit is a rule_error (VGL0005)")
end)

T.test("step refusals name the step", function()
  local W = fresh()
  local cases = {
    { { 42 }, "escalate[1]: expected a step name, a table or a function" },
    { { { "alert", limit = 1 } }, "escalate[1]: unknown key 'limit' for step 'alert'" },
    { { { "jump" } }, "escalate[1]: expected { \"restart\" | \"restart_group\" | ..., limit = ..., within = ... }, got jump" },
    { { { command = "true", extra = 1 } }, "escalate[1]: unknown key 'extra' in a command step" },
    { { { command = 5 } }, "escalate[1].command: expected a command list or a shell command string" },
    { { "reboot", "alert" }, "escalate[2]: never reached: 'reboot' before it ends the ladder" },
    { { { "restart", limit = "many" } }, "escalate[1].limit: expected an integer" },
    { { { "restart", delay = 2 ^ 63 } }, "escalate[1].delay: duration" },
    { { { "restart", reset = "99999999999d" } }, "escalate[1].reset: duration \"99999999999d\" is longer" },
    { { { command = "true", timeout = 1 / 0 } }, "escalate[1].timeout: duration must be a finite number" },
  }
  for i, c in ipairs(cases) do
    T.refused(function() W.watch "w" { start = "x", escalate = c[1] } end, c[2], "case " .. i)
  end
end)

-- The standing order (armable): a yes must be what the walk then does
-- for the next exit, quick or not: a restart of the watch alone, at once.
T.test("the standing order says yes only when the next exit is surely a restart at once", function()
  local cases = {
    { name = "defaults", spec = { start = "x" }, want = true },
    { name = "budget left", spec = { start = "x", restart = { limit = 3, within = "1h" } }, fails = 2, want = true },
    { name = "budget used", spec = { start = "x", restart = { limit = 2, within = "1h" } }, fails = 2, want = false },
    { name = "a delay", spec = { start = "x", restart = { delay = "1s" } }, want = false },
    { name = "after a quick death", spec = { start = "x", restart = { backoff = "2s..5s" } }, quick = 1, want = false },
    { name = "after a long run", spec = { start = "x", restart = { backoff = "2s..5s" } }, fails = 1, want = true },
    { name = "never restarted", spec = { start = "x", restart = false }, want = false },
    { name = "an alert first", spec = { start = "x", escalate = { "alert", "restart" } }, want = false },
    { name = "a step budget", spec = { start = "x", escalate = { { "restart", limit = 5 } } }, want = false },
    { name = "nothing to start", spec = { match = { name = "x" } }, want = false },
    { name = "in a group", spec = { start = "x" }, group = true, want = false },
    { name = "required by another", spec = { start = "x" }, dependent = true, want = false },
    { name = "restart.on always", spec = { start = "x", restart = { on = "always" } }, want = true },
    { name = "restart.on failure", spec = { start = "x", restart = { on = "failure" } }, want = false },
    { name = "restart.on abnormal", spec = { start = "x", restart = { on = "abnormal" } }, want = false },
    { name = "a oneshot", spec = { start = "x", oneshot = true, restart = { on = "failure" } }, want = false },
  }
  for _, c in ipairs(cases) do
    for _, uptime in ipairs({ 0.1, 100 }) do
      local W, G, L, rec = fresh()
      W.watch "w" (c.spec)
      if c.group then
        W.watch "v" { start = "y" }
        G.group "g" { strategy = "one_for_all", "w", "v" }
      end
      if c.dependent then W.watch "v" { start = "y", requires = "w" } end
      G.finish(W.watches)
      for _ = 1, c.fails or 0 do fail(W, L, rec, "w") end
      for _ = 1, c.quick or 0 do fail(W, L, rec, "w", 1, 0.1) end
      local yes = L.armable(W.watches.w)
      T.eq(yes, c.want, c.name)
      if yes then
        local before = #fakes.ops(rec, "restart")
        fail(W, L, rec, "w", 1, uptime)
        local r = fakes.ops(rec, "restart")
        T.eq(#r, before + 1, c.name .. ": restarted (uptime " .. uptime .. ")")
        T.eq(r[#r], "w 0", c.name .. ": at once (uptime " .. uptime .. ")")
        T.eq(#fakes.ops(rec, "restart_set"), 0, c.name .. ": alone")
      end
    end
  end
end)

-- vigil.watch: the schema's refusals (file:line, key, value,
-- did-you-mean), what is handed to the host, `vigil set`, and that a
-- file goes on past a bad declaration so every error is shown.
local T = require "testing"
local fakes = require "fakes"

local function fresh()
  local f, rec = fakes.host()
  local W = T.fresh(f)
  return W, rec
end

-- Each case: a spec and a part of the one error it must give.
local refusals = {
  { { start = 42 }, "watch 'w'.start: expected a command list or a shell command string, got number" },
  { { start = {} }, "watch 'w'.start: empty list" },
  { { start = "  " }, "watch 'w'.start: empty command" },
  { { start = "x", strat = 1 }, "unknown key 'strat' (did you mean 'start'?)" },
  { { start = "x", restart = { limt = 3 } }, "watch 'w'.restart: unknown key 'limt' (did you mean 'limit'?)" },
  { { start = "x", restart = { limit = -1 } }, "watch 'w'.restart.limit: -1 is out of range" },
  { { start = "x", restart = { limit = 1.5 } }, "watch 'w'.restart.limit: expected an integer" },
  { { start = "x", restart = { within = "10 minutes" } }, "watch 'w'.restart.within: bad duration \"10 minutes\"" },
  { { start = "x", restart = "yes" }, "watch 'w'.restart: expected a table or false, got string" },
  { { start = "x", restart = true }, "watch 'w'.restart: expected a table or false" },
  { { start = "x", rearm = "soon" }, "watch 'w'.rearm: bad duration" },
  { { start = "x", stop = "SIGFOO" }, "watch 'w'.stop: unknown signal SIGFOO" },
  { { start = "x", stop = { signal = 99 } }, "watch 'w'.stop.signal: unknown signal 99" },
  { { start = "x", umask = "999" }, "watch 'w'.umask: expected an octal string" },
  { { start = "x", env = { 1, 2 } }, "watch 'w'.env: keys must be names" },
  { { start = "x", env = { A = {} } }, "watch 'w'.env.A: expected a string, got table" },
  { { start = "x", log = { keep = 101 } }, "watch 'w'.log.keep: 101 is out of range" },
  { { start = "x", log = { max_size = "lots" } }, "watch 'w'.log.max_size: bad size \"lots\"" },
  { { start = "x", on_exhausted = "explode" }, "watch 'w'.on_exhausted: unknown action 'explode'" },
  { { start = "x", requires = { "bad name!" } }, "watch 'w'.requires[1]: 'bad name!' is not a watch or group name" },
  { { start = "x", description = 5 }, "watch 'w'.description: expected a string, got number" },
  { { start = "x", dump = { on = "crash" } }, "watch 'w'.dump.on[1]: unknown trigger 'crash'" },
  { { start = "x", dump = "yes" }, "watch 'w'.dump: expected true, false or a table, got string" },
  { { start = "x", probes = { 1 } }, "watch 'w'.probes[1]: not a probe" },
  { { start = "x", probes = tcp { port = 1 } }, "watch 'w'.probes: expected a list of probes" },
  { { start = "x", on_hung = "alert" }, "'on_hung' needs 'probes'" },
  { { start = "x", escalate = {} }, "watch 'w'.escalate: expected a list of steps" },
  { { start = "x", escalate = { "explode" } }, "watch 'w'.escalate[1]: unknown step 'explode'" },
  { { start = "x", escalate = { "failover", "alert" } }, "watch 'w'.escalate[2]: never reached: 'failover' before it ends the ladder" },
  { { start = "x", escalate = { { "restart", limit = 2, wihtin = "1m" } } }, "watch 'w'.escalate[1]: unknown key 'wihtin' (did you mean 'within'?)" },
  { { start = "x", escalate = { { command = "true", timeout = "forever" } } }, "watch 'w'.escalate[1].timeout: bad duration" },
  { { match = { nmae = "y" } }, "watch 'w'.match: unknown key 'nmae' (did you mean 'name'?)" },
  { { match = { exe = "nginx" } }, "watch 'w'.match.exe: expected an absolute path, got nginx" },
  { { match = { name = "x", select = "first" } }, "watch 'w'.match.select: expected one of oldest, newest, all" },
  { { match = { name = "x", user = "" } }, "watch 'w'.match.user: expected a user name or uid" },
  { { match = { name = "x" }, user = "root" }, "'user' applies to a process vigil starts; this watch has no 'start' (to match by user, use match.user)" },
  { { match = { name = "x" }, cwd = "/" }, "'cwd' applies to a process vigil starts" },
  { { start = "x", count = { max = 2 } }, "'count' needs a 'match'" },
  { { match = { name = "x" }, count = { min = 5, max = 2 } }, "count.max 2 is below count.min 5" },
  { { match = { name = "x" }, on_over = "kill_newest" }, "'on_over' needs count.max" },
  { { match = { name = "x" }, count = { max = 2 }, on_over = "explode" }, "watch 'w'.on_over: unknown action 'explode'" },
  { { match = { name = "x" }, on_under = "restart", count = { min = 1 } }, "on_under = \"restart\" needs 'start' or 'restart_script'" },
  { { start = "x", restart_script = "true" }, "'start' and 'restart_script' both say how to start it" },
  { { match = { name = "x" }, restart_script = { timeout = "1s" } }, "'command' is required" },
  { { match = { name = "x" }, checks = { stopped = "soon" } }, "watch 'w'.checks.stopped: bad duration" },
  { { match = { name = "x" }, checks = { fds = 150 } }, "watch 'w'.checks.fds: more than 100%" },
  { { match = { name = "x" }, checks = { cpu = "lots" } }, "watch 'w'.checks.cpu: expected a percentage" },
  { { match = { name = "x", select = "all" }, probes = { tcp { port = 1 } } }, "'probes' watch one process; this watch counts several" },
  { { match = { name = "x", select = "all" }, checks = { stopped = "5s" } }, "'checks' watch one process; this watch counts several" },
  { { match = { name = "x" }, count = { max = 2 }, checks = { zombie = "1s" } }, "'checks' watch one process; this watch counts several" },
  { { match = { name = "x" }, count = { max = 2 }, on_state = "alert" }, "'on_state' watches one process; this watch counts several" },
  { { match = { name = "x" }, probes = { notify { ready = true } } }, "a notify probe needs 'start' or 'restart_script'" },
  { { start = "x", restart = { on = "sometimes" } }, "watch 'w'.restart.on: expected one of always, failure, abnormal, never" },
  { { start = "x", success_exit = 300 }, "watch 'w'.success_exit[1]: exit code 300 is not in 0..255" },
  { { start = "x", success_exit = { "SIGFOO" } }, "watch 'w'.success_exit[1]: unknown signal SIGFOO" },
  { { start = "x", success_exit = {} }, "watch 'w'.success_exit: expected exit codes" },
  { { start = "x", oneshot = "yes" }, "watch 'w'.oneshot: expected a boolean" },
  { { start = "x", oneshot = true, restart = { on = "always" } }, "a oneshot runs to completion: restart.on = \"always\" would run it again forever" },
  { { match = { name = "x" }, oneshot = true }, "'oneshot' needs 'start'" },
  { { match = { name = "x" }, autostart = false }, "'autostart' applies to a watch vigil starts" },
  { { match = { name = "x" }, count = { min = 1 }, restart = { on = "failure" } }, "restart.on applies to one process; this watch counts several" },
  { { match = { name = "x", select = "all" }, success_exit = 3 }, "'success_exit' applies to one process; this watch counts several" },
  { {}, "needs 'start' (a command to run) or 'match' (a running process to watch)" },
  { "start", "watch 'w': expected a table, got string" },
}

T.test("the schema refuses bad keys, values and types with file:line", function()
  for i, c in ipairs(refusals) do
    local W = fresh()
    local at = T.here() local err = T.refused(function() W.watch "w" (c[1]) end, c[2], "case " .. i)
    T.contains(err, at .. ": ", "case " .. i .. " names the rule's file:line")
  end
end)

-- Issue 11 item 5: every duration-valued key goes through the one parser.
T.test("overflowing durations are refused in every duration key", function()
  local keys = {
    function(d) return { start = "x", restart = { delay = d } } end,
    function(d) return { start = "x", restart = { within = d } } end,
    function(d) return { start = "x", restart = { reset = d } } end,
    function(d) return { start = "x", restart = { backoff = d } } end,
    function(d) return { start = "x", rearm = d } end,
    function(d) return { start = "x", settle = d } end,
    function(d) return { start = "x", stop = { timeout = d } } end,
    function(d) return { start = "x", escalate = { { "restart", within = d } } } end,
    function(d) return { start = "x", escalate = { { "restart", backoff = d } } } end,
    function(d) return { start = "x", escalate = { { command = "true", timeout = d } } } end,
    function(d) return { match = { name = "x" }, restart_script = { command = "true", timeout = d } } end,
    function(d) return { match = { name = "x" }, restart_script = { command = "true", find_within = d } } end,
    function(d) return { match = { name = "x" }, checks = { every = d } } end,
    function(d) return { match = { name = "x" }, checks = { zombie = d } } end,
    function(d) return { match = { name = "x" }, checks = { stopped = d } } end,
    function(d) return { match = { name = "x" }, checks = { blocked = d } } end,
    function(d) return { match = { name = "x" }, checks = { no_progress = d } } end,
    function(d) return { match = { name = "x" }, checks = { cpu = { percent = 90, ["for"] = d } } } end,
    function(d) return { start = "x", dump = { timeout = d } } end,
  }
  local values = { 2 ^ 63, math.maxinteger, 1 / 0, 0 / 0, -1, "99999999999d", "1e400s", "101d" }
  for k, spec_of in ipairs(keys) do
    for _, v in ipairs(values) do
      local W, rec = fresh()
      local errs = T.errors_of(function() W.watch "w" (spec_of(v)) end)
      T.eq(#errs, 1, string.format("key %d, value %s: %s", k, tostring(v), table.concat(errs, " | ")))
      T.ok(errs[1]:find("duration", 1, true) or errs[1]:find("expected a duration", 1, true),
        "names the duration: " .. errs[1])
      T.eq(rec.declared.w, nil, "not declared")
    end
  end
end)

T.test("the error names the value", function()
  local W = fresh()
  local err = T.refused(function() W.watch "w" { start = "x", restart = { delay = "99999999999d" } } end,
    "watch 'w'.restart.delay: duration \"99999999999d\" is longer than the maximum of 100 days")
  T.contains(err, "watch_test.lua:", "file")
  err = T.refused(function() W.watch "w" { start = "x", restart = { backoff = math.maxinteger } } end,
    "watch 'w'.restart.backoff: duration " .. tostring(math.maxinteger))
end)

T.test("a table with several bad keys reports every one", function()
  local W = fresh()
  local errs = T.errors_of(function()
    W.watch "w" { start = "x", restart = { limt = 3, within = "soon" }, rearm = -1, bogus = true }
  end)
  T.eq(#errs, 4, "four errors: " .. table.concat(errs, " | "))
  T.contains(errs[1], "unknown key 'bogus'", "1")
  T.contains(errs[2], "watch 'w'.rearm", "2")
  T.contains(errs[3], "unknown key 'limt'", "3")
  T.contains(errs[4], "watch 'w'.restart.within", "4")
end)

T.test("three bad watches give three errors on three lines", function()
  local W = fresh()
  local l1, l2, l3
  local errs = T.errors_of(function()
    l1 = T.here() W.watch "a" { start = 1 }
    W.watch "ok" { start = "x" }
    l2 = T.here() W.watch "b" { start = "x", restart = { delay = 2 ^ 63 } }
    l3 = T.here() W.watch "c" { match = { nmae = "x" } }
  end)
  T.eq(#errs, 3, "errors: " .. table.concat(errs, " | "))
  T.contains(errs[1], l1 .. ": watch 'a'.start", "first")
  T.contains(errs[2], l2 .. ": watch 'b'.restart.delay", "second")
  T.contains(errs[3], l3 .. ": watch 'c'.match: unknown key 'nmae'", "third")
  T.ok(l1 ~= l2 and l2 ~= l3, "three lines")
end)

T.test("bad names and twice-declared watches", function()
  local W = fresh()
  T.refused(function() W.watch "bad name!" { start = "x" } end, "watch name 'bad name!' must be 1-64 letters")
  T.refused(function() W.watch(42) { start = "x" } end, "watch name 42")
  T.refused(function() W.watch(("x"):rep(65)) { start = "x" } end, "must be 1-64")
  local first = T.here() W.watch "twice" { start = "x" }
  T.refused(function() W.watch "twice" { start = "x" } end, "watch 'twice': declared twice (first at " .. first .. ")")
end)

T.test("a good watch is handed to the host normalized", function()
  local W, rec = fresh()
  W.watch "api" {
    start = "echo hi",
    env = { A = "1", N = 2 },
    umask = "027",
    stop = { signal = "INT", timeout = "1m30s" },
    log = { max_size = "2MB", keep = 5 },
    restart = { limit = 3, within = "10m", backoff = "1s..30s" },
    rearm = "1h",
    probes = { tcp { port = 8080 } },
  }
  local d = rec.declared.api
  T.eq(T.list(d.argv), "/bin/sh,-c,echo hi", "shell command")
  T.eq(d.env.N, "2", "env as text")
  T.eq(d.umask, 23, "umask 027")
  T.eq(d.stop_signal, 2, "INT")
  T.eq(d.stop_timeout, 90, "timeout")
  T.eq(d.log_max_bytes, 2097152, "2MB")
  T.eq(d.probes[1].kind, "tcp", "probe")
  T.contains(d.where, "watch_test.lua:", "where")
  local w = W.watches.api
  T.eq(w.restart.limit, 3, "policy")
  T.eq(w.restart.within, 600, "window")
  T.eq(w.restart.backoff.max, 30, "backoff")
  T.eq(w.rearm, 3600, "rearm")
  T.eq(w.cannot_start, nil, "can start")
  -- restart = false never restarts.
  W.watch "once" { start = "x", restart = false }
  T.eq(W.watches.once.restart.limit, 0, "restart = false")
end)

-- restart.on: which exits are restarted at all (the rest end the watch
-- as done, through exec.finish), and the oneshot's default.
T.test("restart.on decides which exits are restarted; the others finish the watch", function()
  local cases = {
    -- on, success_exit, exit event, restarted?, finish ok
    { "failure", nil, { code = 0 }, false, true },
    { "failure", nil, { code = 3 }, true },
    { "failure", nil, { signal = "TERM" }, true },
    { "failure", nil, { code = 0, killed = "hung" }, true },
    { "failure", { 0, 3 }, { code = 3 }, false, true },
    { "failure", { 0, "TERM" }, { signal = "TERM" }, false, true },
    { "failure", nil, { error = "exec: No such file or directory" }, true },
    { "abnormal", nil, { code = 3 }, false, false },
    { "abnormal", nil, { signal = "KILL" }, true },
    { "abnormal", nil, { code = 0, killed = "hung: probe tcp failed" }, true },
    { "never", nil, { signal = "KILL" }, false, false },
    { "never", nil, { code = 0 }, false, true },
    { "always", nil, { code = 0 }, true },
  }
  for i, c in ipairs(cases) do
    local W, rec = fresh()
    W.watch "w" { start = "x", restart = { on = c[1] }, success_exit = c[2] }
    local ev = c[3]
    ev.uptime = 100
    W.on_exit("w", ev)
    local label = string.format("case %d (on = %s, %s)", i, c[1], ev.signal or ev.error or ev.code)
    T.eq(#fakes.ops(rec, "restart"), c[4] and 1 or 0, label .. ": restarted")
    local fin = fakes.ops(rec, "finish")
    T.eq(#fin, c[4] and 0 or 1, label .. ": finished")
    if not c[4] then T.contains(fin[1], "w " .. tostring(c[5]), label .. ": outcome") end
  end
  -- A oneshot runs once unless told to retry failures.
  local W, rec = fresh()
  W.watch "job" { start = "x", oneshot = true }
  W.on_exit("job", { code = 2, uptime = 1 })
  T.contains(fakes.ops(rec, "finish")[1], "job false", "a failed oneshot is done, not retried")
  W.watch "retry" { start = "x", oneshot = true, restart = { on = "failure", limit = 2 } }
  W.on_exit("retry", { code = 2, uptime = 1 })
  T.eq(#fakes.ops(rec, "restart"), 1, "on = failure retries a oneshot")
  W.on_exit("retry", { code = 0, uptime = 1 })
  T.contains(fakes.ops(rec, "finish")[2], "retry true the oneshot ran to completion", "then it is done")
  -- restart.on alone is not a budget: a group member may say it.
  W.watch "m" { start = "x", restart = { on = "failure" } }
  T.eq(W.watches.m.own_policy, nil, "on alone is not an own policy")
  T.eq(rec.declared.job.oneshot, true, "oneshot handed to the host")
  W.watch "held" { start = "x", autostart = false }
  T.eq(rec.declared.held.autostart, false, "autostart handed to the host")
end)

T.test("vigil set goes through the same checkers", function()
  local W = fresh()
  W.watch "s" { start = "x" }
  T.eq(W.set("s", "restart.limit", "7"), "7", "limit")
  T.eq(W.set("s", "restart.within", "5m"), "5m", "within")
  T.eq(W.set("s", "restart.within", "600"), "10m", "seconds are shown as a duration (docs/rules.md)")
  T.eq(W.set("s", "restart.delay", "1.5"), "1.5s", "fractions")
  T.eq(W.set("s", "restart.backoff", "2s..1m"), "2s..1m", "backoff")
  T.eq(W.set("s", "rearm", "off"), "off", "rearm off")
  for _, key in ipairs { "restart.within", "restart.delay", "restart.reset", "restart.backoff", "rearm" } do
    for _, v in ipairs { "99999999999d", "1e400s", "inf", "nan", "-1s", "9223372036854775807", "1s..2^70s" } do
      local ok, err = W.set("s", key, v)
      T.eq(ok, nil, key .. " = " .. v)
      T.ok(type(err) == "string", "an error for " .. key .. " = " .. v)
    end
  end
  T.contains(select(2, W.set("s", "restart.delay", "99999999999d")), "longer than the maximum of 100 days", "why")
  T.contains(select(2, W.set("s", "nope", "1")), "'nope' cannot be changed live", "unknown key")
  T.contains(select(2, W.set("nobody", "rearm", "1s")), "no watch or group named 'nobody'", "unknown watch")
  T.eq(W.watches.s.restart.limit, 7, "refused values changed nothing")
end)

T.test("equal budgets share one table, and vigil set changes only its watch", function()
  local W = fresh()
  W.watch "a" { start = "x", restart = { limit = 9, within = "1s", reset = "1s" } }
  W.watch "b" { start = "x", restart = { limit = 9, within = "1s", reset = "1s" } }
  W.watch "c" { start = "x", restart = { limit = 8, within = "1s", reset = "1s" } }
  W.watch "d" { start = "x" }
  W.watch "e" { start = "x" }
  T.ok(W.watches.a.restart == W.watches.b.restart, "equal budgets: one table (memory at a thousand watches)")
  T.ok(W.watches.a.restart ~= W.watches.c.restart, "another limit: its own")
  T.ok(W.watches.d.restart == W.watches.e.restart, "no budget: the defaults, shared")
  T.eq(W.watches.a.own_policy, true, "a shared budget is still the watch's own policy")
  T.eq(W.set("a", "restart.limit", "3"), "3", "set one of them")
  T.eq(W.watches.a.restart.limit, 3, "changed on a")
  T.eq(W.watches.b.restart.limit, 9, "not on b, which shared the table")
  T.eq(W.watches.a.restart.within, 1, "the rest of a's budget kept")
  T.eq(W.reset("a", "restart.limit"), "9", "--default brings back the declared value")
  T.eq(W.watches.b.restart.limit, 9, "b untouched by the reset")
  T.eq(W.set("d", "restart.limit", "1"), "1", "set on a default budget")
  T.eq(W.watches.e.restart.limit, 5, "the other default watch keeps the default")
end)

T.test("match.parent must name another watch", function()
  local W = fresh()
  W.watch "child" { match = { name = "x", parent = "prnt" } }
  W.watch "parent" { match = { name = "p" } }
  W.watch "self" { match = { name = "s", parent = "self" } }
  local errs = T.errors_of(function() W.finish() end)
  T.eq(#errs, 2, table.concat(errs, " | "))
  table.sort(errs)
  T.contains(errs[1], "watch 'child': match.parent: no watch named 'prnt' (did you mean 'parent'?)", "unknown")
  T.contains(errs[2], "watch 'self': match.parent: a watch cannot be its own parent", "self")
end)

T.test("the prelude's watch records and carries on (real host)", function()
  -- The `watch` global with the real exec: the host's own refusals (a
  -- command that is not there) are file:line errors too.
  local at = T.here() local errs = T.errors_of(function() watch "real_missing" { start = { "/no/such/program" } } end)
  T.eq(#errs, 1, table.concat(errs, " | "))
  T.contains(errs[1], at .. ": watch 'real_missing': start: '/no/such/program' is not an executable file", "host refusal")
end)

-- mode = "observe": the host is told (it refuses to start), the policy
-- never restarts, kills or runs a hook; each would-be action is an event.
T.test("mode = observe watches and alerts, never acts", function()
  local W, rec = fresh()
  T.refused(function() W.watch "o" { mode = "watch" } end, "watch 'o'.mode: expected one of act, observe")
  T.refused(function() W.watch "s" { start = "x", mode = "observe" } end,
    "mode = \"observe\" watches a process something else runs: it needs a 'match'")
  W.watch "obs" { mode = "observe", match = { name = "x" }, restart_script = "true",
    count = { min = 2 }, on_under = "restart" }
  T.eq(rec.declared.obs.observe, true, "handed to the host")
  T.eq(W.watches.obs.cannot_start, true, "the policy cannot start it")
  W.on_exit("obs", { pid = 42, code = 1, uptime = 5 })
  T.eq(#fakes.ops(rec, "restart"), 0, "no restart")
  T.eq(#fakes.ops(rec, "lose"), 1, "waits for it to come back by its match")
  local ev = fakes.events(rec, "observed_exit")
  T.eq(#ev, 1, "one observed_exit")
  T.eq(ev[1].fields.how, "exited 1", "how it ended")
  W.on_count("obs", { bounds = "under", count = 1, min = 2, crossed = true })
  T.eq(#fakes.ops(rec, "restart"), 0, "under its count: no restart")
  T.eq(fakes.events(rec, "observed_action")[1].fields.action, "restart", "what it would have done")
  W.watch "plain" { match = { name = "y" }, mode = "act" }
  T.eq(rec.declared.plain.observe, nil, "act is the default")
end)

T.test("describe: the watch schema is the one declare checks with", function()
  local watch = fresh()
  local schema = require "vigil.schema"
  local d = schema.describe(watch.schema)
  T.eq(d.fields.start.type, "command", "start")
  T.eq(d.fields.restart.options.table.fields.limit.type, "integer", "restart.limit")
  T.eq(d.fields.probes.type, "probes", "probes")
  T.eq(d.fields.probes.kinds.http.fields.url.format, "url", "a probe kind's keys")
  T.eq(d.fields.match.fields.exe.type, "path", "match.exe")
  for k in pairs(watch.schema) do T.ok(d.fields[k], "every key is described: " .. k) end
end)

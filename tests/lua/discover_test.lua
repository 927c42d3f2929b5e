-- vigil.discover: scoring, grouping, instance split, pre-fork counts,
-- restarts and recovery, on observed processes made up here.
local T = require "testing"
local D = require "vigil.discover"

local function p(t)
  local d = { ppid = 1, uid = 0, tty = 0, state = "S", first = 1, last = 3, seen = 3,
    start_time = t.pid * 10, listening = {}, unit = "", scope = "" }
  for k, v in pairs(t) do d[k] = v end
  if d.session == nil then d.session = d.pid end
  d.comm = d.comm or (d.exe and d.exe:match("[^/]+$")) or "x"
  return d
end

local function run(procs, extra)
  local input = { scans = 3, window = 10, every = 5, self = 9999, processes = procs }
  for k, v in pairs(extra or {}) do input[k] = v end
  local out = D.run(input)
  local by = {}
  for _, c in ipairs(out.candidates) do by[c.name] = c end
  return by, out
end

T.test("steady services are proposed; terminals, shells and short lives are not", function()
  local by = run({
    p { pid = 10, exe = "/usr/sbin/sshd", argv = { "/usr/sbin/sshd", "-D" }, listening = { { proto = "tcp", port = 22 } } },
    p { pid = 11, exe = "/usr/bin/bash", argv = { "-bash" }, tty = 34816, session = 11, ppid = 10 },
    p { pid = 12, exe = "/usr/bin/job", argv = { "/usr/bin/job" }, first = 2, last = 2 },
    p { pid = 13, exe = "/usr/bin/sleep", argv = { "sleep", "9" }, ppid = 11, session = 11 },
    p { pid = 9999, exe = "/usr/bin/vigil", argv = { "vigil", "discover" } },
    p { pid = 14, exe = "/usr/bin/vigil-child", argv = { "c" }, ppid = 9999 },
    p { pid = 15, exe = "/usr/sbin/vigil", argv = { "vigil", "run" } },
    p { pid = 16, exe = "/usr/bin/supervised", argv = { "supervised" }, ppid = 15 },
  })
  T.eq(by.sshd ~= nil, true, "sshd")
  T.eq(by.bash, nil, "the login shell")
  T.eq(by.job, nil, "a job seen once")
  T.eq(by.sleep, nil, "a shell's child")
  T.eq(by.vigil, nil, "vigil itself")
  T.eq(by["vigil-child"], nil, "vigil's children")
  T.eq(by.supervised, nil, "what a vigil daemon supervises")
end)

T.test("instances split by the differing token; a pre-fork master counts its workers", function()
  local by = run({
    p { pid = 20, exe = "/usr/bin/ejabberd", argv = { "/usr/bin/ejabberd", "--name", "e1" } },
    p { pid = 21, exe = "/usr/bin/ejabberd", argv = { "/usr/bin/ejabberd", "--name", "e2" } },
    p { pid = 30, exe = "/usr/sbin/apache2", argv = { "/usr/sbin/apache2", "-k", "start" } },
    p { pid = 31, exe = "/usr/sbin/apache2", argv = { "/usr/sbin/apache2", "-k", "start" }, ppid = 30, session = 30 },
    p { pid = 32, exe = "/usr/sbin/apache2", argv = { "/usr/sbin/apache2", "-k", "start" }, ppid = 30, session = 30 },
  })
  T.eq(by["ejabberd-e1"].instance, "e1", "instance e1")
  T.eq(by["ejabberd-e2"].match_cmdline, "--name e2", "matched by its argument")
  T.eq(by.apache2.workers, 2, "two workers")
  T.contains(D.rule_text({ by.apache2 }, { scans = 3, window = 10 }), "count = { min = 3 }", "the master and its workers")
end)

T.test("a restart under the same key is one candidate with a restart", function()
  local by = run({
    p { pid = 40, exe = "/usr/bin/flap", argv = { "/usr/bin/flap" }, last = 1 },
    p { pid = 41, exe = "/usr/bin/flap", argv = { "/usr/bin/flap" }, first = 2 },
  })
  T.eq(by.flap.restarts, 1, "restarted")
  T.eq(by.flap.process.pid, 41, "the new identity")
  T.eq(by["flap-2"], nil, "not two candidates")
end)

T.test("recovery: systemctl for a unit under systemd, an init script, a start, tunable weights", function()
  local by = run({
    p { pid = 50, exe = "/usr/sbin/nginx", argv = { "nginx" }, unit = "nginx.service" },
    p { pid = 51, exe = "/usr/sbin/exim", argv = { "/usr/sbin/exim", "-bd" } },
    p { pid = 52, exe = "/opt/app", argv = { "/opt/app" }, cwd = "/srv",
        environ = { "LANG=C", "DB_PASSWORD=hunter2", "API_TOKEN=abc", "PATH=/usr/bin" } },
  }, { systemd = true, init_scripts = { { path = "/etc/init.d/exim", text = "DAEMON=/usr/sbin/exim\n" } } })
  T.eq(by.nginx.recovery.command, "systemctl restart nginx.service", "systemctl")
  T.eq(by.exim.recovery.command, "/etc/init.d/exim restart", "init script")
  T.eq(by.app.recovery.method, "start", "the observed start")
  local text = D.rule_text({ by.app }, { scans = 3, window = 10 })
  T.contains(text, "-- start = { \"/opt/app\" }", "commented out")
  T.contains(text, 'LANG = "C"', "the environment is proposed")
  T.eq(text:find("hunter2", 1, true), nil, "but not a password")
  T.eq(text:find("abc", 1, true), nil, "nor a token")
  T.contains(text, "DB_PASSWORD = \"(redacted", "the name stays, for the operator to fill in")
  local old = D.threshold
  D.threshold = 1000
  local none = run({ p { pid = 60, exe = "/usr/bin/x", argv = { "x" } } })
  D.threshold = old
  T.eq(next(none), nil, "the rules can raise the bar")
end)

T.test("identical instances are one counted watch; one exe in two groups is told apart by a token", function()
  local by = run({
    p { pid = 70, exe = "/bin/sleep", argv = { "sleep", "100" } },
    p { pid = 71, exe = "/bin/sleep", argv = { "sleep", "100" } },
    p { pid = 72, exe = "/bin/sleep", argv = { "sleep", "100" }, ppid = 71, session = 71 },
    p { pid = 80, exe = "/usr/bin/conmon", argv = { "conmon", "-c", "abc", "-n", "web" } },
    p { pid = 81, exe = "/usr/bin/conmon", argv = { "conmon", "-c", "def", "-n", "db" } },
  })
  T.eq(by.sleep.count, 3, "two instances and a worker")
  T.eq(by.sleep.instances, 2, "two instances")
  T.eq(by.conmon.match_cmdline, "web", "told apart by its own token")
  T.eq(by["conmon-2"].match_cmdline, "def", "and the other by its own (tokens under 3 characters are too loose)")
end)

T.test("a process's argv, environment and socket paths with newlines and quotes stay in their comments", function()
  local nasty = { "/opt/d", "-c", "import time\ntime.sleep(9)\n", "a]]b", "x\r--y", "q\"\\z\0" }
  local by = run({
    p { pid = 90, exe = "/opt/d", argv = nasty, cwd = "/srv/a\nb",
        environ = { "X=a\nb", "Y=\r\1\"", "PATH=/bin" },
        listening = { { proto = "unix", path = "/run/s\nos.execute('x')" } } },
  })
  local text = D.rule_text({ by.d }, { scans = 3, window = 10 })
  local watches = {}
  local chunk, err = load(text, "=proposal", "t", { watch = function(name)
    return function(body) watches[name] = body end
  end })
  T.ok(chunk, "the proposal compiles: " .. tostring(err))
  chunk()
  T.eq(watches.d.mode, "observe", "the watch is all the file declares")
  -- Uncommented, the proposed start is the argv that was seen.
  local start = text:match("\n  %-%- start = (%b{}),\n")
  T.ok(start, "the commented start is on one line")
  local argv = load("return " .. start)()
  T.eq(#argv, #nasty, "every argument")
  for i, a in ipairs(nasty) do T.eq(argv[i], a, "argument " .. i) end
  T.eq(load("return " .. text:match("\n  %-%- cwd = (\"[^\n]*\"),\n"))(), "/srv/a\nb", "the cwd")
  T.eq(load("return {" .. text:match("\n  %-%- env = { ([^\n]*) },\n") .. "}")().X, "a\nb", "the environment")
end)

-- The daemon's periodic discovery (discover { every = ... }) ----------------

T.test("what the daemon watches, and its workers, is not proposed", function()
  local by = run({
    p { pid = 100, exe = "/usr/sbin/nginx", argv = { "nginx: master" } },
    p { pid = 101, exe = "/usr/sbin/nginx", argv = { "nginx: worker" }, ppid = 100, session = 100 },
    p { pid = 110, exe = "/usr/sbin/sshd", argv = { "/usr/sbin/sshd", "-D" } },
  }, { watched = { 100 } })
  T.eq(by.nginx, nil, "the adopted master")
  T.eq(by["nginx-2"], nil, "nor its worker as a root of its own")
  T.ok(by.sshd, "the others are")
end)

T.test("the diff: new and vanished by what the watch would match, not by pid or name", function()
  local _, first = run({
    p { pid = 120, exe = "/usr/sbin/sshd", argv = { "/usr/sbin/sshd", "-D" } },
    p { pid = 121, exe = "/usr/bin/redis", argv = { "/usr/bin/redis" } },
  })
  T.eq(first.new, nil, "no previous run: no diff (the host reports the whole set once)")
  T.eq(#first.summaries, 2, "a summary per candidate")
  local s = first.summaries[1]
  T.eq(s.name, "redis", "summaries in name order")
  T.eq(s.pid, 121, "pid")
  T.eq(s.exe, "/usr/bin/redis", "exe")
  T.eq(s.recovery, "start", "recovery")
  T.ok(s.score >= 30, "score")
  -- sshd restarted (another pid), redis gone, postgres new.
  local _, second = run({
    p { pid = 220, exe = "/usr/sbin/sshd", argv = { "/usr/sbin/sshd", "-D" } },
    p { pid = 230, exe = "/usr/bin/postgres", argv = { "/usr/bin/postgres" } },
  }, { previous = first.summaries })
  T.eq(#second.new, 1, "one new")
  T.eq(second.new[1].name, "postgres", "postgres is new")
  T.eq(second.new[1].pid, 230, "with its pid")
  T.eq(#second.vanished, 1, "one vanished")
  T.eq(second.vanished[1].name, "redis", "redis vanished")
  -- The same set again: nothing to say.
  local _, third = run({
    p { pid = 220, exe = "/usr/sbin/sshd", argv = { "/usr/sbin/sshd", "-D" } },
    p { pid = 230, exe = "/usr/bin/postgres", argv = { "/usr/bin/postgres" } },
  }, { previous = second.summaries })
  T.eq(#third.new + #third.vanished, 0, "steady: no news")
  -- Instances are told apart by their argument.
  local a = { key = "k1", name = "e-e1" }
  local new, gone = D.diff({ a }, { { key = "k2", name = "e-e2" }, a })
  T.eq(#new, 1, "e2 is new")
  T.eq(new[1].name, "e-e2", "e2")
  T.eq(#gone, 0, "e1 stays")
end)

T.test("discover { }: the schedule, its defaults and its bounds", function()
  local fresh = function() return T.load({ "vigil.discover" }) end
  local d = fresh()
  T.eq(#T.errors_of(function() d.declare { every = "1h", window = "10m", scans = 7 } end), 0, "valid")
  local s = d.declared()
  T.eq(s.every, 3600, "every")
  T.eq(s.window, 600, "window")
  T.eq(s.scans, 7, "scans")
  T.ok(s.where:match("discover_test.lua:%d+"), "where: " .. tostring(s.where))
  d = fresh()
  d.declare { every = "1h" }
  T.eq(d.declared().window, 600, "window defaults to 10m")
  T.eq(d.declared().scans, 5, "5 scans")
  d = fresh()
  d.declare { every = "10s" }
  T.eq(d.declared().window, 5, "or half of every when that is shorter")
  local cases = {
    { { every = "1s" }, "discover.every: 1s is too short" },
    { { window = "10m" }, "discover.every: required" },
    { { every = "1h", window = "0.5s" }, "discover.window: 0.5s is too short" },
    { { every = "5m", window = "10m" }, "discover.window: 600s is longer than every (300s)" },
    { { every = "2s", window = "1s", scans = 20 }, "discover.scans: 20 scans over 1s" },
    { { every = "1h", scans = 2 }, "discover.scans: 2 is out of range" },
    { { every = "soon" }, "discover.every:" },
    { { every = "1h", evry = 1 }, "discover: unknown key 'evry'" },
  }
  for i, c in ipairs(cases) do
    d = fresh()
    local at = T.here() local errs = T.errors_of(function() d.declare(c[1]) end)
    T.eq(#errs >= 1, true, "case " .. i)
    T.contains(errs[1], at, "file:line " .. i)
    T.contains(errs[1], c[2], "case " .. i)
    T.eq(d.declared(), nil, "not declared " .. i)
  end
  d = fresh()
  d.declare { every = "1h" }
  T.contains(T.errors_of(function() d.declare { every = "2h" } end)[1], "discover: declared twice", "twice")
end)

T.test("the daemon's policy state is tuned by what its live rules set (M.tuning)", function()
  local live = T.load({ "vigil.discover" })
  live.threshold = 45
  live.weights.listening = 40
  local tuning = live.tuning()
  T.eq(tuning.threshold, 45, "threshold")
  T.eq(tuning.weights.listening, 40, "weights")
  T.eq(tuning.score, nil, "functions are not carried")
  local worker = T.load({ "vigil.discover" })
  local procs = {
    p { pid = 300, exe = "/usr/bin/quiet", argv = { "/usr/bin/quiet" } },  -- age + daemonized + init = 50
    p { pid = 301, exe = "/usr/bin/loud", argv = { "/usr/bin/loud" }, session = 1,
        listening = { { proto = "tcp", port = 1 } } },  -- age + init + listening(40) = 70
  }
  local out = worker.run({ scans = 3, window = 10, every = 5, self = 9999, processes = procs,
    tuning = { threshold = 60, weights = tuning.weights, score = "not a function" } })
  T.eq(#out.candidates, 1, "only what scores 60 with the rules' weights")
  T.eq(out.candidates[1].name, "loud", "loud")
  T.eq(type(worker.score), "function", "only the tunables are taken")
end)

-- vigil.probes: the constructors' defaults and refusals (file:line), as
-- the rules see them (the http, tcp, ... globals).
local T = require "testing"
local probes = require "vigil.probes"

T.test("defaults: names, kinds, the status key", function()
  local h = http { url = "http://127.0.0.1:8080/health" }
  T.eq(h.kind, "http", "kind")
  T.eq(h.name, "http://127.0.0.1:8080/health", "default name")
  T.ok(probes.is_probe(h), "a probe")
  T.contains(h.where, "probes_test.lua:", "where")
  T.eq(tcp { port = 5432 }.name, "tcp 127.0.0.1:5432", "tcp name")
  T.eq(tcp { host = "db", port = 1 }.name, "tcp db:1", "tcp host")
  T.eq(script { command = "/bin/true" }.name, "script /bin/true", "script name (shell text)")
  T.eq(script { command = { "/bin/true", "-x" } }.name, "script /bin/true", "script name (argv)")
  T.eq(file { path = "/run/x", max_age = "1m" }.max_age, 60, "file max_age")
  T.eq(notify { ready = true }.name, "notify", "notify")
  T.eq(probe { check = function() end }.kind, "rule", "a Lua check")
  local s = http { url = "http://h/", expect = "2xx" }.status
  T.eq(s.min, 200, "2xx min")
  T.eq(s.max, 299, "2xx max")
  local r = http { url = "http://h/", status = { 200, 204 } }.status
  T.eq(r.max, 204, "range")
  local e = http { url = "http://h/", every = "5s", timeout = "2s", fails = 4, success = 2, startup = "30s", readiness = true }
  T.eq(e.every, 5, "every")
  T.eq(e.timeout, 2, "timeout")
  T.eq(e.fails, 4, "fails")
  T.eq(e.startup, 30, "startup")
  T.eq(e.readiness, true, "readiness")
  T.eq(http { url = "http://h/" }.every, nil, "every defaults in the host (10s)")
end)

local refusals = {
  { function() return http {} end, "http: 'url' is required" },
  { function() return http { url = "ftp://x/" } end, "http.url: 'ftp://x/' is not an http:// or https:// URL" },
  { function() return http { url = "http://:80/" } end, "has no host" },
  { function() return http { url = "http://h:99999/" } end, "has a bad port '99999'" },
  { function() return http { url = "http://h/", expect = 700 } end, "http.expect: expected a status" },
  { function() return http { url = "http://h/", expect = 200, status = 200 } end, "'expect' and 'status' say the same" },
  { function() return http { url = "http://h/", method = "POST" } end, "http.method: expected one of GET, HEAD" },
  { function() return http { url = "http://h/", evry = "1s" } end, "http: unknown key 'evry' (did you mean 'every'?)" },
  { function() return http { url = "http://h/", every = "1ms" } end, "http.every: at least 10ms" },
  { function() return http { url = "http://h/", timeout = 0 } end, "http.timeout: must be more than 0" },
  { function() return http { url = "http://h/", fails = 0 } end, "http.fails: 0 is out of range" },
  { function() return tcp {} end, "tcp: 'port' is required" },
  { function() return tcp { port = 70000 } end, "tcp.port: 70000 is out of range" },
  { function() return tcp { port = "x" } end, "tcp.port: expected an integer" },
  { function() return script {} end, "script: 'command' is required" },
  { function() return file { path = "/x" } end, "file: 'max_age' is required" },
  { function() return notify {} end, "notify: needs ready = true, a watchdog, or both" },
  { function() return probe {} end, "probe: 'check' is required" },
  { function() return probe { check = "yes" } end, "probe.check: expected a function" },
  { function() return tcp "5432" end, "tcp: expected a table, got string" },
}

T.test("refusals name the key and the rule's file:line", function()
  for i, c in ipairs(refusals) do
    local at = T.here() local err = T.refused(c[1], c[2], "case " .. i)
    T.contains(err, at .. ": ", "case " .. i .. " file:line")
  end
end)

-- Issue 11 item 5: probe intervals and timeouts are durations too.
T.test("probe durations refuse overflow", function()
  for _, key in ipairs { "every", "timeout", "startup", "connect_timeout" } do
    for _, v in ipairs { 2 ^ 63, math.maxinteger, 1 / 0, 0 / 0, -1, "99999999999d", "1e400s" } do
      T.refused(function() return http { url = "http://h/", [key] = v } end, "http." .. key .. ": ", key .. "=" .. tostring(v))
    end
  end
  T.refused(function() return notify { watchdog = 1 / 0 } end, "notify.watchdog: duration")
  T.refused(function() return file { path = "/x", max_age = "99999999999d" } end, "file.max_age: duration")
end)

T.test("a refused probe stands in, so the watch says nothing more", function()
  local errs = T.errors_of(function()
    local p = tcp { port = 0 }
    T.ok(p.invalid, "a stand-in")
    watch "with_bad_probe" { start = { "/bin/true" }, probes = { p } }
  end)
  T.eq(#errs, 1, "one error: " .. table.concat(errs, " | "))
  T.contains(errs[1], "tcp.port", "the probe's")
end)

T.test("the probes list", function()
  T.eq(probes.list({ tcp { port = 1 }, http { url = "http://h/" } }, "p") ~= nil, true, "a list")
  T.contains(select(2, probes.list({ notify { ready = true }, notify { ready = true } }, "p")), "one notify probe per watch", "two notify")
  T.contains(select(2, probes.list({ x = 1 }, "p")), "found key 'x'", "a map")
end)

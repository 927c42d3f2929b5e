-- vigil.resources: limits and environment of a started program (issue
-- 14 item 4): what is handed to the host, and the refusals.
local T = require "testing"
local fakes = require "fakes"

local function fresh()
  local f, rec = fakes.host()
  return T.fresh(f), rec
end

T.test("limits, nice, ionice, oom, env_file, groups and no_new_privs reach exec.declare", function()
  local W, rec = fresh()
  W.watch "r" {
    start = "x",
    user = "nobody",
    limits = { nofile = 65536, core = "unlimited", as = "2GB", stack = { "8MB", "unlimited" },
               cpu = "1m", rttime = "2s", nproc = { soft = 10, hard = 20 } },
    nice = -5,
    ionice = "best-effort:4",
    oom_score_adjust = -1000,
    env_file = "-/etc/default/x",
    supplementary_groups = { "adm", 4 },
    no_new_privileges = true,
  }
  local d = rec.declared.r
  local got = {}
  for _, l in ipairs(d.limits) do got[#got + 1] = string.format("%s=%d:%d", l.resource, l.soft, l.hard) end
  T.eq(table.concat(got, " "),
    "as=2147483648:2147483648 core=-1:-1 cpu=60:60 nofile=65536:65536 nproc=10:20 rttime=2000000:2000000 stack=8388608:-1",
    "limits, sorted by name, -1 unlimited")
  T.eq(d.nice, -5, "nice")
  T.eq(d.ioprio, 2 << 13 | 4, "best-effort level 4")
  T.eq(d.oom_score_adj, -1000, "oom")
  T.eq(d.env_file, "-/etc/default/x", "optional env file")
  T.eq(T.list(d.supplementary_groups), "adm,4", "groups")
  T.eq(d.no_new_privs, true, "no_new_privs")
end)

T.test("ionice forms", function()
  local W, rec = fresh()
  W.watch "a" { start = "x", ionice = "idle" }
  W.watch "b" { start = "x", ionice = { class = "realtime", level = 0 } }
  W.watch "c" { start = "x", ionice = "best-effort" }
  T.eq(rec.declared.a.ioprio, 3 << 13, "idle")
  T.eq(rec.declared.b.ioprio, 1 << 13, "realtime 0")
  T.eq(rec.declared.c.ioprio, 2 << 13 | 4, "best-effort defaults to 4")
end)

T.test("a watch without the keys hands none of them to the host", function()
  local W, rec = fresh()
  W.watch "plain" { start = "x" }
  local d = rec.declared.plain
  for _, k in ipairs({ "limits", "nice", "ioprio", "oom_score_adj", "env_file", "supplementary_groups", "no_new_privs" }) do
    T.eq(d[k], nil, k)
  end
end)

local refusals = {
  { { limits = { nofiel = 1 } }, "watch 'w'.limits: unknown limit 'nofiel' (did you mean 'nofile'?)" },
  { { limits = { 1 } }, "watch 'w'.limits: expected limit names as keys" },
  { { limits = {} }, "watch 'w'.limits: empty table" },
  { { limits = { nofile = { 10, 5 } } }, "watch 'w'.limits.nofile: the soft limit 10 is above the hard limit 5" },
  { { limits = { nofile = { 10 } } }, "watch 'w'.limits.nofile: needs both a soft and a hard limit" },
  { { limits = { nofile = { soft = 1, hrad = 2 } } }, "found key 'hrad'" },
  { { limits = { nofile = -1 } }, "watch 'w'.limits.nofile: -1 is negative" },
  { { limits = { cpu = "forever" } }, "watch 'w'.limits.cpu: bad duration" },
  { { limits = { rtprio = 100 } }, "watch 'w'.limits.rtprio: 100 is out of range [0, 99]" },
  { { nice = 20 }, "watch 'w'.nice: 20 is out of range [-20, 19]" },
  { { nice = "high" }, "watch 'w'.nice: expected an integer" },
  { { ionice = "idel" }, "watch 'w'.ionice: unknown class 'idel' (did you mean 'idle'?)" },
  { { ionice = "best-effort:x" }, "watch 'w'.ionice: level 'x' is not 0..7" },
  { { ionice = { klass = "idle" } }, "watch 'w'.ionice: unknown key 'klass' (did you mean 'class'?)" },
  { { ionice = 3 }, "watch 'w'.ionice: expected \"class:level\"" },
  { { oom_score_adjust = -1001 }, "watch 'w'.oom_score_adjust: -1001 is out of range [-1000, 1000]" },
  { { env_file = "etc/x" }, "watch 'w'.env_file: expected an absolute path" },
  { { env_file = 1 }, "watch 'w'.env_file: expected a file path" },
  { { user = "nobody", supplementary_groups = {} }, "watch 'w'.supplementary_groups: expected a non-empty list" },
  { { user = "nobody", supplementary_groups = { a = "b" } }, "expected a non-empty list of group names" },
  { { supplementary_groups = { "adm" } }, "'supplementary_groups' are added to a 'user''s own groups: set 'user'" },
  { { no_new_privileges = "yes" }, "watch 'w'.no_new_privileges: expected a boolean" },
  { { nicee = 1 }, "unknown key 'nicee' (did you mean 'nice'?)" },
}

T.test("bad values are refused with file:line", function()
  for i, c in ipairs(refusals) do
    local W = fresh()
    c[1].start = "x"
    local at = T.here() local err = T.refused(function() W.watch "w" (c[1]) end, c[2], "case " .. i)
    T.contains(err, at .. ": ", "case " .. i .. " names the rule's file:line")
  end
end)

T.test("the keys are refused on a watch that starts nothing", function()
  for _, k in ipairs({ "limits", "nice", "ionice", "oom_score_adjust", "env_file", "no_new_privileges" }) do
    local W = fresh()
    local spec = { match = { name = "x" } }
    spec[k] = ({ limits = { nofile = 1 }, nice = 1, ionice = "idle", oom_score_adjust = 1,
      env_file = "/x", no_new_privileges = true })[k]
    T.refused(function() W.watch "w" (spec) end, "'" .. k .. "' applies to a process vigil starts", k)
  end
end)

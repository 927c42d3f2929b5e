-- container "NAME" { ... }: the schema's refusals (file:line, key), what
-- is handed to the host, exec probes and healthcheck, groups that mix
-- containers and processes, and the engine the rules need.
local T = require "testing"
local fakes = require "fakes"

local function fresh()
  local f, rec = fakes.host()
  local W, G = T.fresh(f)
  return W, G, rec
end

T.test("a container is declared with its match, stop timeout and take_over", function()
  local W, _, rec = fresh()
  W.container "web" { match = { image = "localhost/shop-web:1.4", label = { ["app.role"] = "web" } },
    restart = { limit = 3, within = "10m" }, stop = { timeout = "5s" }, take_over = true }
  local d = rec.declared.web
  T.ok(d, "declared")
  T.eq(d.container.match.image, "localhost/shop-web:1.4", "image")
  T.eq(d.container.match.label["app.role"], "web", "label")
  T.eq(d.container.stop_timeout, 5, "stop timeout")
  T.eq(d.container.take_over, true, "take_over")
  T.eq(W.watches.web.container, true, "a watch for the policy")
  T.eq(W.watches.web.restart.limit, 3, "its budget")
  T.ok(W.docker_config(), "an engine is needed")
  T.eq(W.docker_config().socket, "", "from DOCKER_HOST")
end)

T.test("exec probes and healthcheck = true go to the host as exec probes", function()
  local W, _, rec = fresh()
  W.container "web" { match = { name = "web" },
    probes = { exec { cmd = { "wget", "-q", "-O-", "http://127.0.0.1/health" }, every = "5s", fails = 3 },
               healthcheck = true } }
  local p = rec.declared.web.probes
  T.eq(#p, 2, "two probes")
  T.eq(p[1].kind, "exec", "exec")
  T.eq(p[1].command[1], "wget", "its argv")
  T.eq(p[1].every, 5, "every")
  T.eq(p[2].kind, "exec", "the healthcheck")
  T.eq(p[2].healthcheck, true, "runs the image's HEALTHCHECK")
end)

local refusals = {
  { {}, "needs 'match'" },
  { { match = { nmae = "x" } }, "container 'c'.match: unknown key 'nmae'" },
  { { match = { id = "abc" } }, "container 'c'.match.id: expected a container id" },
  { { match = { service = "web" } }, "match.service is a compose service: it needs match.compose_project" },
  { { match = { name = "x" }, start = "y" }, "container 'c': unknown key 'start'" },
  { { match = { name = "x" }, take_over = "yes" }, "container 'c'.take_over: expected a boolean" },
  { { match = { name = "x" }, probes = { healthcheck = 1 } }, "probes.healthcheck: expected true or false" },
  { { match = { name = "x" }, restart = { on = "failure" } }, "restart.on applies to processes" },
  { { match = { name = "x" }, count = { min = 1 } }, "a match by name or id selects one" },
  { { match = { image = "i" }, count = { min = 3, max = 2 } }, "count.max 2 is below count.min 3" },
  { { match = { image = "i" }, on_over = "stop_newest" }, "'on_over' needs a 'count'" },
  { { match = { image = "i" }, count = { min = 1 }, on_over = "stop_newest" }, "'on_over' needs count.max" },
  { { match = { image = "i" }, count = { max = 2 }, on_over = "kill_newest" }, "on_over: unknown" },
  { { match = { image = "i" }, count = { min = 1 }, create = { cmd = { "x" } } }, "create needs 'image'" },
  { { match = { image = "i" }, count = { min = 1 }, take_over = true }, "take_over applies to one container" },
  { { match = { image = "i" }, count = { min = 1 }, healthcheck = true }, "this watch counts several" },
}

T.test("bad container declarations are refused with file:line and the key", function()
  for _, case in ipairs(refusals) do
    local W, _, rec = fresh()
    local line
    local errs = T.errors_of(function() line = T.here() W.container "c" (case[1]) end)
    T.ok(#errs >= 1, "refused: " .. case[2])
    T.contains(errs[#errs], case[2], "message")
    T.contains(errs[#errs], line, "names the line")
    T.eq(rec.declared.c, nil, "not declared")
  end
end)

T.test("an exec probe on a process watch is refused", function()
  local W = fresh()
  local errs = T.errors_of(function() W.watch "w" { start = "x", probes = { exec { cmd = "true" } } } end)
  T.contains(errs[#errs], "exec probe runs a command inside a container", "refused")
end)

T.test("groups mix containers and processes", function()
  local W, G = fresh()
  W.container "db" { match = { name = "shop-db" } }
  W.watch "app" { start = "x" }
  W.container "web" { match = { compose_project = "shop", service = "web" } }
  G.group "shop" { strategy = "rest_for_one", "db", "app", "web" }
  local errs = T.errors_of(function() G.finish(W.watches) end)
  T.eq(#errs, 0, "no errors: " .. table.concat(errs, " | "))
  T.eq(T.list(G.restart_set("shop", "db")), "db,app,web", "rest_for_one from the container")
end)

T.test("no container and no docker block: no engine", function()
  local W = fresh()
  W.watch "w" { start = "x" }
  T.eq(W.docker_config(), nil, "none")
end)

T.test("docker { socket } names the engine", function()
  local W = fresh()
  W.docker { socket = "/run/podman/podman.sock" }
  T.eq(W.docker_config().socket, "/run/podman/podman.sock", "socket")
  local errs = T.errors_of(function() W.docker { sockt = "/x" } end)
  T.contains(errs[#errs], "unknown key 'sockt'", "checked")
end)

T.test("a counted container set: count, fill and template to the host; stop_newest and start by the policy", function()
  local W, _, rec = fresh()
  W.container "workers" { match = { image = "localhost/w:2", label = { ["app.role"] = "worker" } },
    count = { min = 2, max = 4 }, on_over = "stop_newest",
    create = { image = "localhost/w:2", cmd = { "worker" }, label = { ["app.role"] = "worker" } } }
  local c = rec.declared.workers.container
  T.eq(c.count.min, 2, "min")
  T.eq(c.count.max, 4, "max")
  T.eq(c.fill, true, "a template fills by default")
  T.eq(c.create.cmd[1], "worker", "the template")
  W.on_count("workers", { bounds = "over", count = 5, min = 2, max = 4, crossed = true,
    newest = { { id = "abc", created = 9 } } })
  T.eq(fakes.ops(rec, "stop_container")[1], "workers abc", "the newest stopped")
  W.on_count("workers", { bounds = "over", count = 5, min = 2, max = 4, crossed = false,
    newest = { { id = "abc", created = 9 } } })
  T.eq(#fakes.ops(rec, "stop_container"), 1, "once per episode")
  W.on_count("workers", { bounds = "under", count = 1, min = 2, crossed = true })
  T.eq(#fakes.ops(rec, "restart"), 1, "under: a restart under the budget fills it")

  local W2, _, rec2 = fresh()
  W2.container "seen" { match = { image = "localhost/w:2" }, count = { min = 1 } }
  T.eq(rec2.declared.seen.container.fill, false, "no template: alert only")
  W2.on_count("seen", { bounds = "under", count = 0, min = 1, crossed = true })
  T.eq(#fakes.ops(rec2, "restart"), 0, "nothing started")
end)

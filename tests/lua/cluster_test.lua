-- vigil.cluster: the cluster { } schema and its check-time errors with
-- file:line, the cross-checks with groups, and the failover policy per
-- adapter, over a fake host (vigil.cluster_host) that records calls.
local T = require "testing"
local fakes = require "fakes"

local function fresh()
  local f, rec = fakes.host()
  f["vigil.cluster"] = nil  -- the real policy module, over a fake host
  rec.configured, rec.failovers, rec.infos = nil, {}, {}
  f["vigil.cluster_host"] = {
    configure = function(s) rec.configured = s end,
    check = function() return rec.check_error end,
    failover = function(owner, reason, cmd, to)
      rec.failovers[#rec.failovers + 1] = table.concat({ owner, reason, cmd and table.concat(cmd, " ") or "-", to or "-" }, "|")
      return true
    end,
    reboot = function() return true end,
    info = function(g) return rec.infos[g] end,
    nodes = function() return { { node = "nodea", holds = { "orders" } } } end,
    node = function() return "nodea" end,
    adapter = function() return rec.configured and rec.configured.adapter end,
  }
  local W, G, L, C = T.load({ "vigil.watch", "vigil.group", "vigil.ladder", "vigil.cluster" }, f)
  return W, G, C, rec
end

local function finish(W, G, C)
  return T.errors_of(function()
    G.finish(W.watches)
    C.finish(G.groups, W.watches)
  end)
end

T.test("cluster { } refusals", function()
  local _, _, C = fresh()
  local at = T.here() local errs = T.errors_of(function() C.configure { failover_timeout = "99999999999d", rebot = "x" } end)
  T.eq(#errs, 2, table.concat(errs, " | "))
  T.contains(errs[1], at .. ": cluster: unknown key 'rebot' (did you mean 'reboot'?)", "key")
  T.contains(errs[2], at .. ": cluster.failover_timeout: duration", "timeout")
end)

T.test("an unknown adapter, endpoints that do not parse, keys of another adapter, unsafe timing", function()
  local cases = {
    { { adapter = "etcdd" }, "cluster: unknown adapter 'etcdd' (did you mean 'etcd'?)" },
    { { adapter = "etcd", endpoints = { "10.0.0.1:2379" } }, "cluster.endpoints[1]: '10.0.0.1:2379' is not an etcd client URL" },
    { { adapter = "etcd", endpoints = { "http://10.0.0.1" } }, "expected HOST:PORT after http://" },
    { { adapter = "etcd", endpoints = { "http://h:0" } }, "port 0 is out of range" },
    { { adapter = "etcd" }, "cluster: the etcd adapter needs endpoints" },
    { { adapter = "etcd", endpoints = "http://h:2379", cert = "/c.pem" }, "cert and key go together" },
    { { adapter = "keepalived" }, "the keepalived adapter needs track_file" },
    { { adapter = "keepalived", track_file = "rel/x" }, "track_file: expected an absolute path" },
    { { adapter = "command", endpoints = "http://h:2379" }, "'endpoints' is for the etcd adapter (this block's adapter is 'command')" },
    { { failover = "x", resource = "r" }, "'resource' is for the pacemaker adapter" },
    { { node = "a b" }, "cluster.node: expected a node name" },
  }
  for i, c in ipairs(cases) do
    local _, _, C = fresh()
    local at = T.here() local errs = T.errors_of(function() C.configure(c[1]) end)
    T.eq(#errs, 1, "case " .. i .. ": " .. table.concat(errs, " | "))
    T.contains(errs[1] or "", at .. ": " .. (c[2]:match("^cluster") and "" or ""), "case " .. i .. " line")
    T.contains(errs[1] or "", c[2], "case " .. i)
  end
end)

T.test("the adapter's own check (etcd's fencing budget) is an error at the block's line", function()
  local _, _, C, rec = fresh()
  rec.check_error = "cluster: self_fence_after 3.5s + a bounded stop ... must stay below ttl 4s"
  local at = T.here() local errs = T.errors_of(function() C.configure { adapter = "etcd", endpoints = "http://h:2379", self_fence_after = "3.5s" } end)
  T.eq(#errs, 1, table.concat(errs, " | "))
  T.contains(errs[1], at .. ": cluster: self_fence_after 3.5s", "shown")
  T.eq(rec.configured, nil, "nothing configured")
  T.eq(C.declared(), nil, "nor declared")
end)

T.test("what the host is given: the adapter, defaults filled in; a bare failover is the command adapter", function()
  local _, _, C, rec = fresh()
  C.configure { adapter = "etcd", endpoints = { "http://10.1.0.1:2379", "https://[fd00::1]:2379/" }, ttl = "6s" }
  T.eq(rec.configured.adapter, "etcd", "adapter")
  T.eq(rec.configured.ttl, 6, "ttl in seconds")
  T.eq(rec.configured.self_fence_after, 3, "self_fence_after: ttl / 2")
  T.eq(#rec.configured.endpoints, 2, "endpoints")
  local _, _, C2, rec2 = fresh()
  C2.configure { failover = "move-it" }
  T.eq(rec2.configured.adapter, "command", "the block of before")
  T.eq(table.concat(rec2.configured.failover, " "), "/bin/sh -c move-it", "its command")
  local _, _, C3, rec3 = fresh()
  C3.configure { reboot = "reboot" }
  T.eq(rec3.configured.adapter, nil, "a reboot alone: no adapter")
  local at = T.here() local errs = T.errors_of(function() C3.configure { failover = "x" } end)
  T.contains(errs[1] or "", at .. ": cluster: declared twice", "twice")
end)

T.test("cross-checks: a clustered group needs a cluster; etcd fails over only clustered groups", function()
  local W, G, C = fresh()
  W.watch "a" { start = "x" }
  local at = T.here() G.group "g" { "a", clustered = true }
  local errs = finish(W, G, C)
  T.eq(#errs, 1, table.concat(errs, " | "))
  T.contains(errs[1], at .. ": group 'g': clustered = true needs a cluster { adapter = ... } block", "no cluster")

  W, G, C = fresh()
  C.configure { adapter = "etcd", endpoints = "http://h:2379" }
  W.watch "a" { start = "x" }
  W.watch "b" { start = "x" }
  local at2 = T.here() G.group "g" { "a", on_exhausted = "failover" }
  local at3 = T.here() W.watch "solo" { start = "x", escalate = { "failover" } }
  G.group "h" { "b", clustered = true, on_exhausted = "failover" }
  errs = finish(W, G, C)
  T.eq(#errs, 2, table.concat(errs, " | "))
  T.contains(errs[1], at2 .. ": group 'g': 'failover' hands a group over through the etcd adapter", "group")
  T.contains(errs[2], at3 .. ": watch 'solo': 'failover' hands a group over through the etcd adapter", "watch")

  -- The command adapter hands over whatever gave up.
  W, G, C = fresh()
  C.configure { failover = "x" }
  W.watch "a" { start = "x" }
  G.group "g" { "a", on_exhausted = "failover" }
  T.eq(#finish(W, G, C), 0, "command: fine")

  -- Nested clustered groups.
  W, G, C = fresh()
  C.configure { failover = "x" }
  W.watch "a" { start = "x" }
  local at4 = T.here() G.group "inner" { "a", clustered = true }
  G.group "outer" { "inner", clustered = true }
  errs = finish(W, G, C)
  T.contains(errs[1] or "", at4 .. ": group 'inner': it is inside group 'outer', which is clustered already", "nested")
end)

T.test("failover policy per adapter; holder, nodes, on", function()
  local W, G, C, rec = fresh()
  C.configure { adapter = "etcd", endpoints = "http://h:2379" }
  W.watch "a" { start = "x" }
  W.watch "b" { start = "x" }
  G.group "orders" { "a", clustered = true }
  G.group "plain" { "b" }
  T.errors_of(function() G.finish(W.watches) end)
  T.eq(C.failover("orders", "gave up"), true, "clustered: handed to the host")
  T.eq(rec.failovers[1], "orders|gave up|-|-", "as asked")
  local ok, err = C.failover("plain", "gave up")
  T.eq(ok, nil, "refused")
  T.contains(err, "'plain' is not a clustered group: the etcd adapter hands over only clustered groups", "why")
  T.eq(#rec.failovers, 1, "nothing asked of the host")
  C.failover("orders", "by hand", "nodeb")
  T.eq(rec.failovers[2], "orders|by hand|-|nodeb", "to a node")
  rec.infos.orders = { role = "standby", holder = "nodeb" }
  T.eq(C.holder("orders"), "nodeb", "holder")
  T.eq(C.holder("plain"), nil, "no holder")
  T.eq(C.nodes()[1].node, "nodea", "nodes")

  local got = {}
  C.on("takeover", function(ev) got[#got + 1] = ev.group end)
  C.on_event({ event = "cluster_takeover", watch = "orders" })
  C.on_event({ event = "cluster_lost", watch = "orders" })
  T.eq(table.concat(got, ","), "orders", "only its kind, with ev.group")
  local at = T.here() local errs = T.errors_of(function() C.on("takover", function() end) end)
  T.contains(errs[1] or "", at .. ": vigil.cluster.on: unknown kind 'takover' (did you mean 'takeover'?)", "kind")
end)

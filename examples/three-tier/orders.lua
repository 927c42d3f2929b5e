-- A three-tier system: a "database" on port 7001, an application server on
-- 7002 that needs it, a web tier on 7003 that needs the application. Each
-- tier is a tiny Python server that refuses to start unless the tier
-- before it listens (like a real app server that cannot connect), and that
-- does not notice when it goes away later: a dependency-aware restart is
-- what brings the chain back.

local tier = [[
import socket, sys
port, needs = int(sys.argv[1]), sys.argv[2:]
for n in needs:
    try:
        socket.create_connection(("127.0.0.1", int(n)), timeout=2).close()
    except OSError as e:
        sys.exit(f"needs port {n}: {e}")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print(f"listening on {port}", flush=True)
while True:
    s.accept()[0].close()
]]

local function tier_watch(name, port, needs)
  watch(name) {
    description = name .. " tier on 127.0.0.1:" .. port,
    start = { "/usr/bin/python3", "-c", tier, tostring(port), needs and tostring(needs) or nil },
    -- Ready once it accepts connections: the next tier waits for that.
    probes = { tcp { port = port, every = "200ms", readiness = true },
               tcp { port = port, every = "2s", timeout = "1s", fails = 3 } },
  }
end

tier_watch("db", 7001)
tier_watch("app", 7002, 7001)
tier_watch("web", 7003, 7002)

group "orders" {
  description = "order processing: db -> app -> web",
  strategy = "rest_for_one",            -- a failure restarts the tier and those after it
  restart = { limit = 5, within = "10m" },
  rearm = "30m",
  "db", "app", "web",
  escalate = {
    "restart",                              -- the group's budget: 5 in 10 minutes
    { "restart_group", limit = 1, within = "1h" },  -- then once more, everything
    "failover",                             -- then hand over
  },
}

-- What "failover" runs. A real one would ask the cluster to move the
-- service (later versions talk to etcd and Pacemaker themselves).
cluster {
  failover = "echo \"$(date -u +%FT%TZ) $VIGIL_OWNER failed over: $VIGIL_REASON\" >> /tmp/vigil-three-tier.failover",
}

-- CLUSTERPRO / EXPRESSCLUSTER X: Vigil restarts the tiers locally (3
-- times in 10 minutes); then it stops the whole group here and asks
-- CLUSTERPRO to fail the failover group over:
--   clprexec --failover <failover group> -h <IP of a cluster server> [-w <timeout>]
-- (clprexec talks to the cluster's information base; -h may be this
-- server's own address). The failover group's name is CLP_GROUP below.
cluster {
  adapter = "command",
  failover = { "/bin/sh", "-c", [[exec clprexec --failover "${CLP_GROUP:-failover_orders}" -h 127.0.0.1 -w 60]] },
  failover_timeout = "90s",
}

watch "db"  { start = { "sleep", "infinity" }, stop = { timeout = "30s" } }  -- stands for /opt/orders/bin/db
watch "app" { start = { "sleep", "infinity" }, stop = { timeout = "20s" } }  -- stands for /opt/orders/bin/app
watch "web" { start = { "sleep", "infinity" } }  -- stands for /opt/orders/bin/web

group "orders" {
  strategy = "rest_for_one",
  restart = { limit = 3, within = "10m" },
  "db", "app", "web",
  clustered = true,
  on_exhausted = "failover",
}

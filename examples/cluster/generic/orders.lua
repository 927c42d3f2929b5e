-- Any cluster software: a script that gets the group, this node and the
-- reason in its environment (VIGIL_GROUP, VIGIL_NODE, VIGIL_REASON; also
-- VIGIL_OWNER and, from `vigil failover GROUP --to NODE`, VIGIL_TO_NODE)
-- and asks the cluster to move the service. It runs once, after the
-- group has stopped here.
cluster {
  adapter = "command",
  failover = [[logger -t vigil "failover of $VIGIL_GROUP from $VIGIL_NODE: $VIGIL_REASON" && /usr/local/sbin/move-service "$VIGIL_GROUP" "$VIGIL_TO_NODE"]],
  failover_timeout = "60s",
}

watch "worker" { start = { "sleep", "infinity" } }  -- stands for /opt/svc/bin/worker
watch "front"  { start = { "sleep", "infinity" }, requires = "worker" }  -- stands for /opt/svc/bin/front

group "svc" {
  restart = { limit = 3, within = "10m" },
  "worker", "front",
  clustered = true,
  on_exhausted = "failover",
}

-- A rule author's hook: the news of the adapter.
vigil.cluster.on("takeover", function(ev) vigil.log.notice("this node runs " .. ev.group) end)

-- keepalived: the group's health goes to /run/vigil/site.track (0 while
-- it runs or recovers here, 1 once it gave up), written atomically at
-- every change. keepalived.conf (both nodes; the backup with a lower
-- priority):
--
--   track_file vigil_site {
--     file /run/vigil/site.track
--   }
--   vrrp_instance VI_1 {
--     state BACKUP
--     interface eth0
--     virtual_router_id 51
--     priority 150
--     advert_int 1
--     virtual_ipaddress { 10.1.0.100/24 }
--     track_file {
--       vigil_site weight 0    # weight 0: any value but 0 is FAULT at once
--     }
--   }
--
-- Only the address moves: the backup node's vigil must run the service
-- already (or start it from keepalived's notify_master script with
-- `vigil start site`).
cluster { adapter = "keepalived", node = "nodea", track_file = "/run/vigil/%g.track" }

watch "nginx" { start = { "sleep", "infinity" } }  -- stands for { "/usr/sbin/nginx", "-g", "daemon off;" }
watch "api"   { start = { "sleep", "infinity" } }  -- stands for /opt/site/bin/api

group "site" {
  restart = { limit = 5, within = "10m" },
  "api", "nginx",
  clustered = true,
  on_exhausted = "failover",
}

-- HP Serviceguard: once the group gave up here (and has stopped), halt
-- the package and run it on the adoptive node, then re-enable package
-- switching:
--   cmhaltpkg <pkg>; cmrunpkg -n <node> <pkg>; cmmodpkg -e <pkg>
-- The adoptive node is VIGIL_TO_NODE (vigil failover orders --to NODE)
-- or SG_NODE. The other way round: run `vigil wait orders --until
-- exhausted` as the package's service (service_cmd): it returns when the
-- group gives up, and a service that ends fails the package over.
cluster {
  adapter = "command",
  failover = { "/bin/sh", "-c", [[
    pkg=${SG_PACKAGE:-orders_pkg}
    node=${VIGIL_TO_NODE:-${SG_NODE:-nodeb}}
    cmhaltpkg "$pkg" && cmrunpkg -n "$node" "$pkg" && cmmodpkg -e "$pkg"
  ]] },
  failover_timeout = "5m",
}

watch "db"  { start = { "sleep", "infinity" }, stop = { timeout = "30s" } }  -- stands for /opt/orders/bin/db
watch "app" { start = { "sleep", "infinity" } }  -- stands for /opt/orders/bin/app

group "orders" {
  restart = { limit = 3, within = "10m" },
  "db", "app",
  clustered = true,
  on_exhausted = "failover",
}

-- vigil.cluster_pacemaker: the Pacemaker adapter's command lines.
local T = require "testing"
local pcmk = require "vigil.cluster_pacemaker"

T.test("the resource id from the pattern", function()
  T.eq(pcmk.resource_of(nil, "orders"), "orders", "default %g")
  T.eq(pcmk.resource_of("%g", "orders"), "orders")
  T.eq(pcmk.resource_of("vigil-%g", "orders"), "vigil-orders")
  T.eq(pcmk.resource_of("fixed", "orders"), "fixed")
  T.eq(pcmk.resource_of("%g-100%%", "a%b"), "a%b-100%", "literal % and a % in the name")
  T.ok(not pcall(pcmk.resource_of, "%g", ""), "a group name is required")
end)

T.test("failover marks the resource failed on this node, never bans", function()
  T.eq(table.concat(pcmk.failover_argv("orders", "nodea", "vigil-%g"), " "),
    "crm_resource --fail -r vigil-orders -N nodea")
  for _, argv in ipairs { pcmk.failover_argv("g", "n"), pcmk.move_argv("g", "n"), pcmk.clear_argv("g") } do
    for _, a in ipairs(argv) do T.ok(a ~= "--ban", "no --ban in " .. table.concat(argv, " ")) end
  end
  T.ok(not pcall(pcmk.failover_argv, "orders", nil), "the node is required")
end)

T.test("a move by hand expires and is cleared", function()
  T.eq(table.concat(pcmk.move_argv("orders", "nodeb"), " "),
    "crm_resource --move -r orders -N nodeb --lifetime PT5M")
  T.eq(table.concat(pcmk.move_argv("orders", "nodeb", nil, "PT1M"), " "),
    "crm_resource --move -r orders -N nodeb --lifetime PT1M")
  T.eq(table.concat(pcmk.clear_argv("orders"), " "), "crm_resource --clear -r orders")
  T.eq(table.concat(pcmk.failcount_argv("orders", "nodea"), " "),
    "crm_failcount --query -r orders -N nodea")
end)

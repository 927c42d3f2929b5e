--- vigil.cluster_pacemaker: the commands the Pacemaker adapter runs, as
-- data (docs/cluster-pacemaker.md). For
--   cluster { adapter = "pacemaker", resource = "%g" }
-- Pacemaker places the group (through the OCF agent ocf:vigil:group);
-- Vigil only tells it when to move the group at once rather than at the
-- next monitor, and moves it by hand for `vigil failover GROUP --to NODE`.
-- The cluster policy (stdlib/vigil/cluster.lua) picks these argv and the
-- host runs them after the group has stopped; every function is pure.
--
-- Never `crm_resource --ban`: the ban is a location constraint that stays
-- in the CIB after its lifetime (until `--clear --expired`) and keeps the
-- group off this node even when it is the last one left.
local M = { _VERSION = "1" }

--- The resource id of `group` from the cluster block's `resource`
-- pattern ("%g" = the group's name; default "%g"). "%%" is a literal %.
function M.resource_of(pattern, group)
  assert(type(group) == "string" and group ~= "", "resource_of: a group name is required")
  pattern = pattern or "%g"
  return (pattern:gsub("%%([g%%])", function(c) return c == "g" and group or "%" end))
end

--- The failover step: the resource failed on this node. With
-- migration-threshold=1 Pacemaker stops it here (the agent's stop: the
-- group is already down) and starts it on another node, at once.
-- (In Pacemaker 2.1.5 one --fail counts twice in fail-count; either
-- reaches the threshold.)
function M.failover_argv(group, node, resource)
  assert(type(node) == "string" and node ~= "", "failover_argv: this node's name is required")
  return { "crm_resource", "--fail", "-r", M.resource_of(resource, group), "-N", node }
end

--- A move by an operator (vigil failover GROUP --to NODE): a location
-- preference for NODE that expires by itself (ISO 8601 lifetime, default
-- 5 minutes), cleared once the group runs there (clear_argv).
function M.move_argv(group, to_node, resource, lifetime)
  assert(type(to_node) == "string" and to_node ~= "", "move_argv: the target node is required")
  return { "crm_resource", "--move", "-r", M.resource_of(resource, group), "-N", to_node,
           "--lifetime", lifetime or "PT5M" }
end

--- Removes the move's constraint (and any expired one).
function M.clear_argv(group, resource)
  return { "crm_resource", "--clear", "-r", M.resource_of(resource, group) }
end

--- Pacemaker's failure count of the group's resource on `node`.
function M.failcount_argv(group, node, resource)
  return { "crm_failcount", "--query", "-r", M.resource_of(resource, group), "-N", node }
end

return M

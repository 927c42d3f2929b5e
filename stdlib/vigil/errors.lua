--- vigil.errors: the errors the declaration functions (watch, group,
-- the probe constructors, cluster, vigil.on) find in rule files.
-- A declaration with an error records it here and the file goes on, so
-- that `vigil check` and a reload show every error of a file, not only
-- the first. The host takes them after each file (entry.errors); any
-- recorded error fails the load, and nothing goes live.
local M = { _VERSION = "1" }

M.limit = 50

local list, count = {}, 0
local suffix  -- " (declared at lib/x.lua:7)" while a library declares

--- add(msg): records "file:line: message". After `limit` errors in one
-- load, the rest are counted and not kept.
function M.add(msg)
  if suffix then msg = msg .. suffix end
  count = count + 1
  if count <= M.limit then
    list[#list + 1] = msg
  elseif count == M.limit + 1 then
    list[#list + 1] = string.format("more than %d errors; fix these first", M.limit)
  end
end

-- A refusal: raised inside a declaration, recorded by `declaring`.
local refusal_mt = { __name = "vigil.refusal", __tostring = function(r) return r.message end }

--- refuse(msg): ends the declaration being made with this error (file
-- and line included in msg); the file goes on.
function M.refuse(msg)
  error(setmetatable({ message = msg }, refusal_mt), 0)
end

--- declaring(fn, ...) -> fn's result, or nil when fn refused (the
-- refusal is recorded). Any other error (the budget, memory, a bug) is
-- raised on unchanged.
function M.declaring(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then return res end
  if getmetatable(res) == refusal_mt then
    M.add(res.message)
    return nil
  end
  error(res, 0)
end

--- declaring_via(via, fn, ...): declaring(fn, ...), where `via` (the
-- library line that made the declaration, the second result of
-- runtime.where; nil for a rule file) is added to each error recorded:
-- the error's file:line stays the rule file's line the operator fixes.
function M.declaring_via(via, fn, ...)
  if not via then return M.declaring(fn, ...) end
  local saved = suffix
  suffix = " (declared at " .. via .. ")"
  local ok, res = pcall(M.declaring, fn, ...)
  suffix = saved
  if not ok then error(res, 0) end
  return res
end

--- take() -> the errors recorded since the last take (oldest first).
function M.take()
  local out = list
  list = {}
  return out
end

--- reset(): forgets every error, kept or counted (tests).
function M.reset()
  list, count = {}, 0
end

--- any() -> true when this load recorded an error.
--- named(kind, where, via, name, declare): the `kind "name" { spec }`
-- form of watch and group: checks the name (recorded, with an empty
-- declarer, when it is not 1-64 letters, digits, '_', '.', '@' or '-'),
-- then returns the function that takes the spec and declares it.
function M.named(kind, where, via, name, declare)
  if type(name) ~= "string" or not name:match("^[%w_@][%w_.@%-]*$") or #name > 64 then
    M.add(string.format("%s: %s name %s must be 1-64 letters, digits, '_', '.', '@' or '-'%s",
      where, kind, type(name) == "string" and ("'" .. name .. "'") or tostring(name),
      via and (" (declared at " .. via .. ")") or ""))
    return function() end
  end
  return function(spec) return M.declaring_via(via, declare, where, name, spec) end
end

function M.any() return count > 0 end

return M

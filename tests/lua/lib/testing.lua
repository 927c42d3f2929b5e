--- testing: the small test library of tests/lua/*_test.lua.
--
--   local T = require "testing"
--   T.test("a restart set", function()
--     T.eq(x, 3, "what x is")
--   end)
--
-- Each file is loaded as a rule file by tests/lua/runner.cpp inside the
-- real rule runtime (the real stdlib, sandbox and budget; no supervisor,
-- so rules are validating: they can declare, not act). Tests run as they
-- are declared; the runner then calls T.finish(), which raises when a
-- test failed or when the file declared none.
local has_errors, errors = pcall(require, "vigil.errors")
if not has_errors then  -- an older stdlib (to see a new test fail on it)
  errors = { take = function() return {} end, reset = function() end, add = function() end }
end
local runtime = require "vigil.runtime"

local T = { total = 0, failed = 0, failures = {} }

local out = print or function() end


--- test(name, fn): runs fn now. A failure is recorded with its message
-- (file:line of the failed check) and the other tests still run.
function T.test(name, fn)
  T.total = T.total + 1
  errors.reset()  -- each test starts with no recorded declaration errors
  local ok, err = pcall(fn)
  local left = errors.take()
  errors.reset()
  if ok and #left > 0 then
    ok, err = false, "declaration errors left unchecked: " .. table.concat(left, " | ")
  end
  if ok then
    out("ok   " .. name)
  else
    T.failed = T.failed + 1
    local line = string.format("FAIL %s: %s", name, tostring(err))
    T.failures[#T.failures + 1] = line
    out(line)
  end
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function T.eq(a, b, what)
  if a ~= b then
    error(string.format("%s: expected %s, got %s", what or "value", show(b), show(a)), 2)
  end
end

function T.ok(v, what)
  if not v then error((what or "expected a true value"), 2) end
  return v
end

--- contains(text, part, what): text holds part (plain find).
function T.contains(text, part, what)
  if type(text) ~= "string" or not text:find(part, 1, true) then
    error(string.format("%s: %s does not contain %s", what or "text", show(text), show(part)), 2)
  end
end

--- list(t) -> "a,b,c" (for comparing lists).
function T.list(t)
  local parts = {}
  for i, v in ipairs(t) do parts[i] = tostring(v) end
  return table.concat(parts, ",")
end

--- sorted(t) -> "a,b,c" of the sorted list.
function T.sorted(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = tostring(v) end
  table.sort(c)
  return table.concat(c, ",")
end

--- errors_of(fn) -> list of error texts: the errors the declaration
-- functions recorded while fn ran, then the error fn raised (if any).
function T.errors_of(fn)
  local before = errors.take()
  errors.reset()
  local ok, err = pcall(fn)
  local list = errors.take()
  errors.reset()
  for _, e in ipairs(before) do errors.add(e) end
  if not ok then list[#list + 1] = tostring(err) end
  return list
end

--- refused(fn, part[, what]) -> the error: fn's declaration was refused
-- with exactly one error containing part.
function T.refused(fn, part, what)
  local list = T.errors_of(fn)
  if #list ~= 1 then
    error(string.format("%s: expected one error containing %s, got %d: %s", what or part, show(part), #list,
      table.concat(list, " | ")), 2)
  end
  if not list[1]:find(part, 1, true) then
    error(string.format("%s: error %s does not contain %s", what or part, show(list[1]), show(part)), 2)
  end
  return list[1]
end

--- here() -> "file:line" of the caller, as a declaration on the same
-- line records it.
function T.here()
  return (runtime.where(1))
end

--- load(names, fakes) -> the modules: new instances of the modules
-- named (fresh state: no watches or groups declared yet), loaded with
-- `fakes` (module name -> table) in place of real modules such as
-- vigil.exec or vigil.runtime. The fakes are taken out again after (the
-- rest of the state keeps the real ones); the new instances stay in
-- package.loaded, so that the lazy requires between them (ladder ->
-- group, watch) find each other.
function T.load(names, fakes)
  fakes = fakes or {}
  local saved = {}
  for name, fake in pairs(fakes) do
    saved[name] = package.loaded[name] or false
    package.loaded[name] = fake
  end
  for _, n in ipairs(names) do package.loaded[n] = nil end
  local mods = {}
  for i, n in ipairs(names) do mods[i] = require(n) end
  for name in pairs(fakes) do package.loaded[name] = saved[name] or nil end
  return table.unpack(mods, 1, #names)
end

--- fresh(fakes) -> watch, group, ladder (see load).
function T.fresh(fakes)
  return T.load({ "vigil.watch", "vigil.group", "vigil.ladder" }, fakes)
end

--- finish(): called by the runner after the file loaded.
function T.finish()
  if T.total == 0 then error("no tests: the file declared no T.test", 0) end
  if T.failed > 0 then
    error(string.format("%d of %d tests failed: %s", T.failed, T.total, table.concat(T.failures, " | ")), 0)
  end
  out(string.format("%d tests passed", T.total))
end

return T

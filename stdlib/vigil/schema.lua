--- vigil.schema: closed schemas for rule tables.
-- A schema is a table of field name -> checker. A checker is a function
-- (value, path) -> normalized | nil, err. Unknown keys are errors that
-- suggest the nearest known key.
local M = { _VERSION = "1" }

-- What each checker accepts, for describe(): checker -> description. A
-- checker made here says it when it is made; a rule module's own checker
-- says it with M.doc (one without a description is { type = "custom" }).
local described = setmetatable({}, { __mode = "k" })

--- doc(checker, description) -> checker: what checker accepts, for
-- describe() (the dashboard's form is made from it).
function M.doc(checker, desc)
  described[checker] = desc
  return checker
end

local function distance(a, b)
  local la, lb = #a, #b
  if math.abs(la - lb) > 3 then return 99 end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

--- suggest(name, tbl...) -> " (did you mean 'x'?)" or "": the nearest
-- string key of the tables.
local function suggest(key, ...)
  local best, best_d
  for _, t in ipairs({ ... }) do
    for k in pairs(t) do
      local d = type(k) == "string" and distance(key, k) or 99
      if d <= 2 and (not best_d or d < best_d) then best, best_d = k, d end
    end
  end
  return best and string.format(" (did you mean '%s'?)", best) or ""
end
M.suggest = suggest

--- check(tbl, schema, path) -> normalized table | nil, first error, all errors
-- Every key is checked (unknown keys first, then the others, each in name
-- order), so that one look at a rule shows all that is wrong with it.
-- Array entries (integer keys) are rejected unless schema[1] exists, in
-- which case it checks each of them.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  return keys
end

-- The sorted keys of each schema, made once (schemas do not change).
local schema_names = setmetatable({}, { __mode = "k" })

function M.check(tbl, schema, path)
  if type(tbl) ~= "table" then
    local err = string.format("%s: expected a table, got %s", path, type(tbl))
    return nil, err, { err }
  end
  local errs = {}
  local function bad(err, more)
    if more then
      for _, e in ipairs(more) do errs[#errs + 1] = e end
    else
      errs[#errs + 1] = err
    end
  end
  local out = {}
  local listed = false
  for k, v in pairs(tbl) do
    if type(k) ~= "string" and not (schema[1] and math.type(k) == "integer") and not listed then
      listed = true
      bad(string.format("%s: unexpected list entry %s", path, tostring(v)))
    end
  end
  for _, k in ipairs(sorted_keys(tbl)) do
    if not schema[k] then bad(string.format("%s: unknown key '%s'%s", path, k, suggest(k, schema))) end
  end
  local names = schema_names[schema]
  if not names then
    names = sorted_keys(schema)
    schema_names[schema] = names
  end
  for _, k in ipairs(names) do
    if tbl[k] ~= nil then
      local norm, err, more = schema[k](tbl[k], path .. "." .. k)
      if norm == nil and err then bad(err, more) end
      out[k] = norm
    end
  end
  if schema[1] then
    for i, v in ipairs(tbl) do
      local norm, err, more = schema[1](v, string.format("%s[%d]", path, i))
      if norm == nil and err then bad(err, more) end
      out[i] = norm
    end
  end
  if #errs > 0 then return nil, errs[1], errs end
  return out
end

-- Checkers ------------------------------------------------------------

local duration = require "vigil.duration"

local function typed(t)
  return function(v, path)
    if type(v) ~= t then return nil, string.format("%s: expected a %s, got %s", path, t, type(v)) end
    return v
  end
end
M.string = M.doc(typed "string", { type = "string" })
M.boolean = M.doc(typed "boolean", { type = "boolean" })
M.func = M.doc(typed "function", { type = "function" })

function M.integer(min, max)
  return M.doc(function(v, path)
    if math.type(v) ~= "integer" and not (type(v) == "string" and v:match("^%d+$")) then
      return nil, string.format("%s: expected an integer, got %s", path, tostring(v))
    end
    v = math.tointeger(tonumber(v))
    if (min and v < min) or (max and v > max) then
      return nil, string.format("%s: %d is out of range [%s, %s]", path, v, min or "", max or "")
    end
    return v
  end, { type = "integer", min = min, max = max })
end

function M.duration(v, path)
  local d, err = duration.parse(v)
  if not d then return nil, path .. ": " .. err end
  return d
end

function M.duration_range(v, path)
  local r, err = duration.parse_range(v)
  if not r then return nil, path .. ": " .. err end
  return r
end

function M.size(v, path)
  local s, err = duration.parse_size(v)
  if not s then return nil, path .. ": " .. err end
  return s
end

-- A file the host opens (a certificate, a key, a token file): absolute,
-- so that it does not depend on the daemon's working directory.
function M.file_path(v, path)
  if type(v) ~= "string" or v:sub(1, 1) ~= "/" then
    return nil, string.format("%s: an absolute file path is required, got %s", path,
      type(v) == "string" and "'" .. v .. "'" or type(v))
  end
  return v
end

function M.list_of_strings(v, path)
  if type(v) ~= "table" then return nil, string.format("%s: expected a list of strings", path) end
  local n = #v
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      return nil, string.format("%s: expected a list of strings, found key '%s'", path, tostring(k))
    end
    if type(x) ~= "string" then
      return nil, string.format("%s[%d]: expected a string, got %s", path, k, type(x))
    end
  end
  if n == 0 then return nil, path .. ": empty list" end
  return v
end

function M.map_of_strings(v, path)
  if type(v) ~= "table" then return nil, string.format("%s: expected a table of strings", path) end
  local out = {}
  for k, x in pairs(v) do
    if type(k) ~= "string" then return nil, string.format("%s: keys must be names", path) end
    if type(x) ~= "string" and type(x) ~= "number" then
      return nil, string.format("%s.%s: expected a string, got %s", path, k, type(x))
    end
    out[k] = tostring(x)
  end
  return out
end

function M.one_of(...)
  local allowed = { ... }
  return M.doc(function(v, path)
    for _, a in ipairs(allowed) do if v == a then return v end end
    return nil, string.format("%s: expected one of %s, got %s", path, table.concat(allowed, ", "), tostring(v))
  end, { type = "enum", values = allowed })
end

--- by_type { string = checker, table = checker, ... }: picks the checker
-- for the value's type ("integer" and "float" are tried before "number"),
-- so the error is the one that fits what the user wrote.
function M.by_type(checkers, expected)
  local options = {}
  for t, c in pairs(checkers) do options[t] = c end
  return M.doc(function(v, path)
    local t = type(v)
    local c = (t == "number" and checkers[math.type(v)]) or checkers[t]
    if not c then
      return nil, string.format("%s: expected %s, got %s", path, expected, t)
    end
    return c(v, path)
  end, { type = "union", expected = expected, options = options })
end

function M.table(schema)
  return M.doc(function(v, path) return M.check(v, schema, path) end, { type = "table", schema = schema })
end

--- A shell command string -> { "/bin/sh", "-c", v }.
function M.shell(v, path)
  if type(v) ~= "string" then return nil, string.format("%s: expected a command", path) end
  if v:match("^%s*$") then return nil, path .. ": empty command" end
  return { "/bin/sh", "-c", v }
end

--- A command: an argv list, or a shell command string.
M.command = M.doc(M.by_type({ string = M.shell, table = M.list_of_strings },
  "a command list or a shell command string"), { type = "command" })

M.doc(M.duration, { type = "duration" })
M.doc(M.duration_range, { type = "duration_range" })
M.doc(M.size, { type = "size" })
M.doc(M.file_path, { type = "path" })
M.doc(M.list_of_strings, { type = "list", of = "string" })
M.doc(M.map_of_strings, { type = "map", of = "string" })
M.doc(M.shell, { type = "shell" })

--- describe(schema or checker) -> a plain table (JSON for the host): what
-- a rule table may hold, key by key, made from the checkers themselves so
-- that a form built from it asks for what check() accepts.
--   { type = "table", fields = { key = description, ... }, items = description }
--   { type = "integer", min, max } { type = "enum", values = {...} }
--   { type = "union", expected, options = { luatype = description } }
--   { type = "string" | "boolean" | "duration" | "size" | "command" | ... }
function M.describe(x)
  if type(x) == "table" then
    local fields = {}
    for k, c in pairs(x) do
      if type(k) == "string" then fields[k] = M.describe(c) end
    end
    return { type = "table", fields = fields, items = x[1] and M.describe(x[1]) or nil }
  end
  local d = described[x]
  if not d then return { type = "custom" } end
  local out = {}
  for k, v in pairs(d) do out[k] = v end
  if d.type == "table" then return M.describe(d.schema) end
  if d.type == "union" then
    out.options = {}
    for t, c in pairs(d.options) do out.options[t] = M.describe(c) end
  end
  if d.kinds then
    out.kinds = {}
    for k, s in pairs(d.kinds) do out.kinds[k] = M.describe(s) end
  end
  return out
end

return M

--- vigil.duration: durations in rules.
-- A duration is a number of seconds or a string of one or more
-- <number><unit> parts: "500ms", "10s", "5m", "1h", "1d", "1m30s".
local M = { _VERSION = "1" }

local units = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }

--- parse(v) -> seconds | nil, err
function M.parse(v)
  if type(v) == "number" then
    if v < 0 or v ~= v or v == math.huge then return nil, "duration must be a finite number >= 0" end
    return v
  end
  if type(v) ~= "string" then return nil, "expected a duration (e.g. \"10s\"), got " .. type(v) end
  local s = v:gsub("^%s+", ""):gsub("%s+$", "")
  if s == "" then return nil, "empty duration" end
  if s:match("^%d+%.?%d*$") then return tonumber(s) end  -- bare seconds
  local total, pos = 0, 1
  while pos <= #s do
    local num, unit, after = s:match("^(%d+%.?%d*)(%a+)()", pos)
    if not num or not units[unit] then
      return nil, string.format("bad duration %q (use e.g. 500ms, 10s, 5m, 1h, 1m30s)", v)
    end
    total = total + tonumber(num) * units[unit]
    pos = after
  end
  return total
end

--- format(seconds) -> "1m30s"-style text for messages.
function M.format(sec)
  if sec < 1 then return string.format("%gms", sec * 1000) end
  if sec < 60 or sec ~= math.floor(sec) then return string.format("%gs", sec) end
  local parts = {}
  for _, u in ipairs { { "d", 86400 }, { "h", 3600 }, { "m", 60 }, { "s", 1 } } do
    local n = math.floor(sec / u[2])
    if n > 0 then parts[#parts + 1] = n .. u[1]; sec = sec - n * u[2] end
  end
  return table.concat(parts)
end

--- parse_range("1s..30s") -> { min = 1, max = 30 } | nil, err
-- A single duration gives a constant delay.
function M.parse_range(v)
  if type(v) == "string" and v:find("..", 1, true) then
    local a, b = v:match("^(.-)%.%.(.*)$")
    local lo, err = M.parse(a)
    if not lo then return nil, err end
    local hi, err2 = M.parse(b)
    if not hi then return nil, err2 end
    if hi < lo then return nil, string.format("range %q: maximum is below minimum", v) end
    return { min = lo, max = hi }
  end
  local d, err = M.parse(v)
  if not d then return nil, err end
  return { min = d, max = d }
end

--- parse_size("1MB") -> bytes | nil, err
function M.parse_size(v)
  if type(v) == "number" and v >= 0 then return math.floor(v) end
  if type(v) ~= "string" then return nil, "expected a size (e.g. \"10MB\")" end
  local num, unit = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  local mult = ({ [""] = 1, B = 1, KB = 1024, K = 1024, MB = 1048576, M = 1048576, GB = 1073741824, G = 1073741824 })[unit and unit:upper() or ""]
  if not num or not mult then return nil, string.format("bad size %q (use e.g. 512KB, 10MB)", v) end
  return math.floor(tonumber(num) * mult)
end

return M

--- vigil.duration: durations in rules.
-- A duration is a number of seconds or a string of one or more
-- <number><unit> parts: "500ms", "10s", "5m", "1h", "1d", "1m30s".
local M = { _VERSION = "1" }

local units = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }

--- The longest duration a rule may ask for (any delay, window, interval
-- or timeout): 100 days. Longer is a typo or an overflow ("2^63", a
-- missing unit scale), and the host's clocks count in nanoseconds.
M.max = 100 * 86400

local function too_long(v)
  return string.format("duration %s is longer than the maximum of 100 days", tostring(v))
end

--- parse(v) -> seconds | nil, err
-- Refuses what is not finite, negative, or longer than M.max.
function M.parse(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return nil, string.format("duration must be a finite number of seconds, got %s", tostring(v))
    end
    if v < 0 then return nil, string.format("duration must be >= 0, got %s", tostring(v)) end
    if v > M.max then return nil, too_long(v) end
    return v
  end
  if type(v) ~= "string" then return nil, "expected a duration (e.g. \"10s\"), got " .. type(v) end
  local s = v:gsub("^%s+", ""):gsub("%s+$", "")
  if s == "" then return nil, "empty duration" end
  -- In floats: integer arithmetic would wrap ("9223372036854775807d").
  local total
  if s:match("^%d+%.?%d*$") then
    total = tonumber(s) * 1.0  -- bare seconds
  else
    total = 0
    local pos = 1
    while pos <= #s do
      local num, unit, after = s:match("^(%d+%.?%d*)(%a+)()", pos)
      if not num or not units[unit] then
        return nil, string.format("bad duration %q (use e.g. 500ms, 10s, 5m, 1h, 1m30s)", v)
      end
      total = total + tonumber(num) * 1.0 * units[unit]
      pos = after
    end
  end
  if total ~= total or total > M.max then return nil, too_long(string.format("%q", v)) end
  return math.tointeger(total) or total
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

--- The largest size a rule may give (log rotation, dump limits): 1 TB.
M.max_size = 1 << 40

--- parse_size("1MB") -> bytes | nil, err
function M.parse_size(v)
  local n
  if type(v) == "number" then
    n = v
  elseif type(v) == "string" then
    local num, unit = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
    local mult = ({ [""] = 1, B = 1, KB = 1024, K = 1024, MB = 1048576, M = 1048576, GB = 1073741824, G = 1073741824 })[unit and unit:upper() or ""]
    if not num or not mult then return nil, string.format("bad size %q (use e.g. 512KB, 10MB)", v) end
    n = tonumber(num) * mult
  else
    return nil, "expected a size (e.g. \"10MB\")"
  end
  if n ~= n or n < 0 or n == math.huge then return nil, string.format("bad size %s (use e.g. 512KB, 10MB)", tostring(v)) end
  if n > M.max_size then return nil, string.format("size %s is larger than the maximum of 1TB", tostring(v)) end
  return math.tointeger(math.floor(n))
end

return M

local duration = require "vigil.duration"

local function eq(a, b, what)
  if a ~= b then error(string.format("%s: expected %s, got %s", what, tostring(b), tostring(a)), 2) end
end

eq(duration.parse("500ms"), 0.5, "ms")
eq(duration.parse("10s"), 10, "s")
eq(duration.parse("5m"), 300, "m")
eq(duration.parse("1h"), 3600, "h")
eq(duration.parse("1d"), 86400, "d")
eq(duration.parse("1m30s"), 90, "compound")
eq(duration.parse("1.5s"), 1.5, "fraction")
eq(duration.parse(7), 7, "number")
eq(duration.parse("42"), 42, "bare seconds")
for _, bad in ipairs { "10 minutes", "ten", "5x", "", "-1s", "1s2" } do
  local v, err = duration.parse(bad)
  eq(v, nil, "reject " .. bad)
  assert(err, "error text for " .. bad)
end
assert(select(2, duration.parse("10 minutes")):find("10 minutes", 1, true))
eq(duration.parse(-1), nil, "negative number")

local r = duration.parse_range("1s..30s")
eq(r.min, 1, "range min")
eq(r.max, 30, "range max")
local c = duration.parse_range("2s")
eq(c.min, 2, "constant")
eq(c.max, 2, "constant")
eq(duration.parse_range("30s..1s"), nil, "inverted range")

eq(duration.parse_size("1MB"), 1048576, "MB")
eq(duration.parse_size("512KB"), 524288, "KB")
eq(duration.parse_size(100), 100, "bytes")
eq(duration.parse_size("lots"), nil, "bad size")

eq(duration.format(90), "1m30s", "format")
eq(duration.format(0.25), "250ms", "format ms")

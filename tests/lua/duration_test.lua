-- vigil.duration: the one parser of every duration in the rules.
local T = require "testing"
local duration = require "vigil.duration"

T.test("units and forms", function()
  T.eq(duration.parse("500ms"), 0.5, "ms")
  T.eq(duration.parse("10s"), 10, "s")
  T.eq(duration.parse("5m"), 300, "m")
  T.eq(duration.parse("1h"), 3600, "h")
  T.eq(duration.parse("1d"), 86400, "d")
  T.eq(duration.parse("1m30s"), 90, "compound")
  T.eq(duration.parse("1.5s"), 1.5, "fraction")
  T.eq(duration.parse(7), 7, "number")
  T.eq(duration.parse("42"), 42, "bare seconds")
  T.eq(math.type(duration.parse("10s")), "integer", "whole seconds stay integers")
end)

T.test("bad text is refused with the text", function()
  for _, bad in ipairs { "10 minutes", "ten", "5x", "", "-1s", "1s2", "1e400s", "2^63", "inf", "nan" } do
    local v, err = duration.parse(bad)
    T.eq(v, nil, "reject " .. bad)
    T.ok(err, "error text for " .. bad)
  end
  T.contains(select(2, duration.parse("10 minutes")), "10 minutes")
  T.eq(duration.parse(-1), nil, "negative number")
  T.eq(duration.parse(true), nil, "boolean")
end)

-- Issue 11 item 5: these passed and then restarted at once (overflow).
T.test("non-finite, negative and huge durations are refused", function()
  local bad = { 2 ^ 63, math.maxinteger, math.mininteger, 1 / 0, -1 / 0, 0 / 0, -0.001, 1e300,
    "99999999999d", "9223372036854775807d", "9223372036854775807", "101d", "2401h", "8640001",
    "99999999999999999999999s", ("1d"):rep(101) }
  for _, v in ipairs(bad) do
    local d, err = duration.parse(v)
    T.eq(d, nil, "reject " .. tostring(v))
    T.ok(type(err) == "string" and #err > 0, "error text for " .. tostring(v))
  end
  T.contains(select(2, duration.parse("99999999999d")), "\"99999999999d\" is longer than the maximum of 100 days")
  T.contains(select(2, duration.parse(1 / 0)), "finite")
  T.contains(select(2, duration.parse(-5)), ">= 0")
end)

T.test("the maximum is 100 days, inclusive", function()
  T.eq(duration.max, 8640000, "max")
  T.eq(duration.parse("100d"), 8640000, "100d")
  T.eq(duration.parse(8640000), 8640000, "as a number")
  T.eq(duration.parse("8640000.5"), nil, "just above")
end)

T.test("ranges", function()
  local r = duration.parse_range("1s..30s")
  T.eq(r.min, 1, "range min")
  T.eq(r.max, 30, "range max")
  local c = duration.parse_range("2s")
  T.eq(c.min, 2, "constant")
  T.eq(c.max, 2, "constant")
  T.eq(duration.parse_range("30s..1s"), nil, "inverted range")
  for _, bad in ipairs { "1s..2^70s", "1s..99999999999d", "0..inf", "nan..1s", "1s..", "..1s", math.maxinteger, 2 ^ 63 } do
    T.eq(duration.parse_range(bad), nil, "reject range " .. tostring(bad))
  end
end)

T.test("sizes", function()
  T.eq(duration.parse_size("1MB"), 1048576, "MB")
  T.eq(duration.parse_size("512KB"), 524288, "KB")
  T.eq(duration.parse_size(100), 100, "bytes")
  T.eq(duration.parse_size("lots"), nil, "bad size")
  for _, bad in ipairs { 1 / 0, 0 / 0, -1, 2 ^ 63, "99999999999GB" } do
    T.eq(duration.parse_size(bad), nil, "reject size " .. tostring(bad))
  end
  T.eq(math.type(duration.parse_size("1.5KB")), "integer", "sizes are whole bytes")
end)

T.test("format", function()
  T.eq(duration.format(90), "1m30s", "format")
  T.eq(duration.format(0.25), "250ms", "format ms")
  T.eq(duration.format(8640000), "100d", "the maximum")
end)

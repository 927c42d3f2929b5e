-- vigil.schema: closed schemas, the checkers every declaration uses.
local T = require "testing"
local schema = require "vigil.schema"

local s = {
  name = schema.string,
  count = schema.integer(0, 10),
  every = schema.duration,
  tags = schema.list_of_strings,
  env = schema.map_of_strings,
  mode = schema.one_of("a", "b"),
  sub = schema.table { x = schema.integer(), wait = schema.duration },
  size = schema.size,
  backoff = schema.duration_range,
}

T.test("a good table is normalized", function()
  local ok = T.ok(schema.check({ name = "n", count = "3", every = "1m", tags = { "a" },
    env = { K = 1 }, mode = "a", sub = { x = 1 }, size = "1KB", backoff = "1s..5s" }, s, "t"))
  T.eq(ok.count, 3, "count")
  T.eq(ok.every, 60, "every")
  T.eq(ok.env.K, "1", "env")
  T.eq(ok.sub.x, 1, "sub")
  T.eq(ok.size, 1024, "size")
  T.eq(ok.backoff.max, 5, "range")
end)

local function fails(tbl, pattern)
  local v, err = schema.check(tbl, s, "t")
  T.eq(v, nil, "expected failure for " .. pattern)
  T.contains(err, pattern, "error")
end

T.test("refusals name the path", function()
  fails({ nme = "x" }, "t: unknown key 'nme' (did you mean 'name'?)")
  fails({ zzzzzz = 1 }, "unknown key 'zzzzzz'")
  fails({ name = 1 }, "t.name: expected a string, got number")
  fails({ count = 11 }, "t.count: 11 is out of range")
  fails({ count = 1.5 }, "t.count: expected an integer")
  fails({ every = "soon" }, "t.every: bad duration")
  fails({ tags = {} }, "t.tags: empty list")
  fails({ tags = { 1 } }, "t.tags[1]: expected a string")
  fails({ mode = "c" }, "t.mode: expected one of a, b")
  fails({ sub = { y = 1 } }, "t.sub: unknown key 'y'")
  fails({ "positional" }, "unexpected list entry")
  fails("notatable", "t: expected a table")
end)

T.test("every duration checker refuses overflow", function()
  fails({ every = 2 ^ 63 }, "t.every: duration")
  fails({ every = "99999999999d" }, "t.every: duration \"99999999999d\" is longer than the maximum of 100 days")
  fails({ sub = { wait = 1 / 0 } }, "t.sub.wait: duration must be a finite number")
  fails({ backoff = "1s..2^70s" }, "t.backoff: bad duration")
  fails({ backoff = math.maxinteger }, "t.backoff: duration")
  fails({ size = 1 / 0 }, "t.size: bad size")
end)

T.test("every error of a table, in name order", function()
  local v, first, all = schema.check({ nme = 1, count = 99, every = "x", sub = { y = 1, x = "z" } }, s, "t")
  T.eq(v, nil, "refused")
  T.eq(#all, 5, "five errors: " .. table.concat(all, " | "))
  T.contains(all[1], "unknown key 'nme'", "unknown keys first")
  T.contains(all[2], "t.count", "then by name")
  T.contains(all[3], "t.every", "then by name")
  T.contains(all[4], "t.sub: unknown key 'y'", "nested unknown")
  T.contains(all[5], "t.sub.x", "nested")
  T.eq(first, all[1], "the first is returned as the error")
end)

T.test("suggest", function()
  T.eq(schema.suggest("strat", { strategy = 1 }), "", "too far")
  T.eq(schema.suggest("stategy", { strategy = 1 }), " (did you mean 'strategy'?)", "near")
end)

T.test("describe: what a schema accepts, made from its checkers", function()
  local d = schema.describe(s)
  T.eq(d.type, "table", "a table")
  T.eq(d.fields.count.type, "integer", "integer")
  T.eq(d.fields.count.min, 0, "min")
  T.eq(d.fields.count.max, 10, "max")
  T.eq(d.fields.every.type, "duration", "duration")
  T.eq(d.fields.mode.type, "enum", "enum")
  T.eq(table.concat(d.fields.mode.values, ","), "a,b", "its values")
  T.eq(d.fields.sub.type, "table", "nested")
  T.eq(d.fields.sub.fields.wait.type, "duration", "nested field")
  T.eq(d.fields.tags.type, "list", "list")
  T.eq(d.fields.env.type, "map", "map")
  local u = schema.describe(schema.by_type({ boolean = schema.boolean, table = schema.table { n = schema.integer() } }, "x"))
  T.eq(u.type, "union", "by_type")
  T.eq(u.options.table.fields.n.type, "integer", "its table")
  T.eq(schema.describe(function() end).type, "custom", "an undescribed checker")
  T.eq(schema.describe(schema.doc(function() end, { type = "string", format = "x" })).format, "x", "doc")
end)


local schema = require "vigil.schema"

local s = {
  name = schema.string,
  count = schema.integer(0, 10),
  every = schema.duration,
  tags = schema.list_of_strings,
  env = schema.map_of_strings,
  mode = schema.one_of("a", "b"),
  sub = schema.table { x = schema.integer() },
}

local ok = assert(schema.check({ name = "n", count = "3", every = "1m", tags = { "a" },
  env = { K = 1 }, mode = "a", sub = { x = 1 } }, s, "t"))
assert(ok.count == 3 and ok.every == 60 and ok.env.K == "1" and ok.sub.x == 1)

local function fails(tbl, pattern)
  local v, err = schema.check(tbl, s, "t")
  assert(v == nil, "expected failure for " .. pattern)
  assert(err:find(pattern, 1, true), "error '" .. err .. "' lacks '" .. pattern .. "'")
end

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

-- vigil.rules (the prelude) and vigil.errors: the globals rules get,
-- vigil.on's refusals, and the error list `vigil check` shows.
local T = require "testing"
local errors = require "vigil.errors"

T.test("the rule language's globals", function()
  for _, k in ipairs { "watch", "group", "cluster", "http", "tcp", "script", "file", "notify", "probe" } do
    T.eq(type(_G[k]), "function", k)
  end
  T.eq(type(vigil.on), "function", "vigil.on")
  T.eq(vigil.duration.max, 8640000, "vigil.duration")
end)

T.test("vigil.on records its refusals with file:line", function()
  local at = T.here() local errs = T.errors_of(function() vigil.on("no_such_event", function() end) end)
  T.eq(#errs, 1, table.concat(errs, " | "))
  T.contains(errs[1], at .. ": vigil.on: unknown event 'no_such_event'", "unknown event")
  T.refused(function() vigil.on(1, function() end) end, "vigil.on: event name must be a string")
  T.refused(function() vigil.on("exit", 1) end, "vigil.on: handler must be a function")
  T.eq(#T.errors_of(function() vigil.on("exit", function() end) end), 0, "an alias is fine")
end)

T.test("errors are capped per load", function()
  local errs = T.errors_of(function()
    for i = 1, 80 do errors.add("e" .. i) end
  end)
  T.eq(#errs, errors.limit + 1, "the limit and one line saying so")
  T.eq(errs[errors.limit], "e" .. errors.limit, "kept in order")
  T.contains(errs[errors.limit + 1], "more than 50 errors", "the last line")
end)

T.test("a refusal is recorded; any other error goes on up", function()
  T.eq(errors.declaring(function() return 7 end), 7, "a result")
  local errs = T.errors_of(function()
    T.eq(errors.declaring(function() errors.refuse("x.lua:1: no") end), nil, "refused")
  end)
  T.eq(T.list(errs), "x.lua:1: no", "recorded")
  local ok, err = pcall(errors.declaring, function() error("a bug", 0) end)
  T.eq(ok, false, "raised")
  T.eq(err, "a bug", "unchanged")
end)

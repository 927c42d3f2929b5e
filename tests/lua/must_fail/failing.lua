-- The runner must fail a file with a failed test, even when others pass.
local T = require "testing"
T.test("passes", function() end)
T.test("fails", function() T.eq(1, 2, "one") end)
T.test("passes too", function() end)

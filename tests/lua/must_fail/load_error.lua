-- The runner must fail a file that raises while it loads.
local T = require "testing"
T.test("passes", function() end)
error("raised at load")

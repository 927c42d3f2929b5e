-- The runner must fail a file that declares no test.
local T = require "testing"
local _ = T

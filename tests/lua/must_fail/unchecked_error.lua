-- The runner must fail a file whose test leaves a declaration error
-- unchecked (a refusal that no T.refused / T.errors_of looked at).
local T = require "testing"
T.test("declares a bad watch", function() watch "bad" { start = 1 } end)

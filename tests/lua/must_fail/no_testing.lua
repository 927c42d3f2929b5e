-- The runner must fail a file that does not use the testing library.
local x = 1

-- A second rule file using the same library. Rule files load in name
-- order (consumers.lua before workers.lua) and share one Lua state, so
-- `require "mylib"` runs the library once and both get the same table.
local mylib = require "mylib"

mylib.pool("consumer", 2, {
  start = { "/bin/sh", "-c", 'echo "$WORKER_NAME reading $TOPIC"; exec sleep infinity' },
  env = { TOPIC = "orders" },
  restart = { limit = 2, within = "1m" },
})

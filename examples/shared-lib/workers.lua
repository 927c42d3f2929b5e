-- Three identical workers, declared through the shared helper.
local mylib = require "mylib"

mylib.pool("worker", 3, {
  start = 'echo "$WORKER_NAME (id $WORKER_ID) up"; while true; do sleep 5; done',
  env = { QUEUE = "jobs" },
  restart = { limit = 5, within = "5m", backoff = "1s..10s" },
  stop = { signal = "TERM", timeout = "2s" },
})

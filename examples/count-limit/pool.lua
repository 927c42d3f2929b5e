-- A worker pool that can run away: "pool" starts a worker every second
-- (a real bug would fork in a loop). "workers" counts them by their
-- command line, kills the newest beyond 5 the moment they appear, and
-- says when fewer than 2 are left.

watch "pool" {
  description = "starts a worker every second, forever",
  start = "while :; do bash -c 'exec -a poolworker sleep 3600' & sleep 1; done",
}

watch "workers" {
  match = { cmdline = "poolworker 3600" },
  count = { min = 2, max = 5 },
  on_over = "kill_newest",
  on_under = "alert",
}

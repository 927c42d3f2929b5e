-- The default rules: a small, harmless demo so that a fresh install shows
-- what Vigil does. Replace these with your own watches (see examples/ and
-- docs/rules.md). Every file in this directory is loaded in name order;
-- shared rule code goes in lib/ and is loaded with require.

-- A heartbeat: prints the time every 5 seconds to its log
-- (state dir: logs/heartbeat.stdout.log).
watch "heartbeat" {
  description = "prints the time every 5 seconds",
  start = "while true; do date; sleep 5; done",
}

-- A worker that crashes every 15 seconds (exit 3), so that restarts are
-- visible in `vigil status` and `vigil events`. Runs of 10 s or more
-- count as healthy, so each crash is restarted at once.
watch "flaky" {
  description = "crashes every 15 seconds",
  start = { "/bin/sh", "-c", "echo working; sleep 15; echo 'giving up' >&2; exit 3" },
  restart = { limit = 10, within = "5m", backoff = "1s..10s" },
  rearm = "10m",
  on_exhausted = "alert",
}

-- A quiet long-running service, stopped with INT and given 3 s to go.
watch "sleeper" {
  start = { "sleep", "infinity" },
  stop = { signal = "INT", timeout = "3s" },
}

-- Rules can react to any event. This one notes each crash of "flaky".
vigil.on("exit", function(ev)
  if ev.watch == "flaky" then
    vigil.log.info("flaky crashed as expected", { watch = ev.watch, code = ev.code })
  end
end)

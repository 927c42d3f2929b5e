-- A program that always crashes one second after it starts, to show the
-- restart policy: backoff, exhaustion of the budget, and re-arm.

watch "crasher" {
  description = "fails after 1 s, every time",
  start = "echo 'crasher: starting'; sleep 1; echo 'crasher: cannot open /etc/crasher.conf' >&2; exit 2",

  -- 4 restarts per minute. Waits for consecutive quick failures:
  -- 0 s, 1 s, 2 s, 4 s (then 8 s, capped). A run of 8 s or more would
  -- count as healthy (reset defaults to the backoff maximum).
  restart = { limit = 4, within = "1m", backoff = "1s..8s" },

  -- After giving up, wait 30 s, forget the history and start again.
  rearm = "30s",

  -- Giving up logs a critical VGL0900 "operator action needed" message.
  on_exhausted = "alert",
}

-- Rules can follow events too. Lua state lives until the next reload.
local exhaustions = 0
vigil.on("exhausted", function(ev)
  exhaustions = exhaustions + 1
  vigil.log.warn(string.format("%s gave up %d time(s) since the rules were loaded",
    ev.watch, exhaustions), { watch = ev.watch })
end)

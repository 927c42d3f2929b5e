-- A small web service kept alive by vigil: Python's built-in HTTP server on
-- 127.0.0.1:8080, serving /tmp. See README.md for how to run it.

watch "web-api" {
  description = "static file server on 127.0.0.1:8080",
  start = { "/usr/bin/python3", "-m", "http.server", "8080", "--bind", "127.0.0.1" },
  cwd = "/tmp",
  env = { PYTHONUNBUFFERED = "1" },           -- request log reaches the log file at once

  -- At most 3 restarts in any 10 minutes. Quick failures back off:
  -- immediately, then 1 s, 2 s, 4 s ... up to 30 s. A run of 30 s or more
  -- (the default `reset`, the backoff maximum) counts as healthy.
  restart = { limit = 3, within = "10m", backoff = "1s..30s" },

  -- Once the budget is spent, try again on its own after an hour.
  rearm = "1h",

  -- What to do when the budget is spent: run a command. It runs with
  -- vigil's environment and stdio on /dev/null, so it writes its own file.
  on_exhausted = { "/bin/sh", "-c",
    "echo \"$(date -u +%FT%TZ) web-api: restart budget exhausted\" >> /tmp/vigil-web-api.alerts" },

  -- http.server exits cleanly on INT (KeyboardInterrupt); KILL after 5 s.
  stop = { signal = "INT", timeout = "5s" },

  -- Alive is not enough: it must answer. Ready once it accepts connections;
  -- then, 5 s after each answer (`every` is the pause after a result, not a
  -- fixed rate), a GET of / must answer 2xx/3xx within 2 s. Three misses
  -- in a row (a hang: stopped, deadlocked, overloaded) and vigil kills it;
  -- the restart budget above decides what follows.
  probes = {
    tcp  { port = 8080, every = "500ms", readiness = true },
    http { url = "http://127.0.0.1:8080/", every = "5s", timeout = "2s", fails = 3,
           startup = "30s" },
  },

  -- stdout/stderr go to STATE_DIR/logs/web-api.std{out,err}.log.
  log = { max_size = "5MB", keep = 2 },
}

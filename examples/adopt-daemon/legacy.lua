-- A daemon that something else starts (here: legacy-ctl, an init-style
-- script), watched by vigil without vigil starting it. Vigil adopts the
-- running process by its command line, sees its death at once, restarts
-- it with the same script and finds the new instance by the same match.

watch "legacy" {
  match = { cmdline = "legacy-daemon", name = "sh" },
  restart_script = { command = "examples/adopt-daemon/legacy-ctl start", timeout = "10s", find_within = "5s" },
  restart = { limit = 3, within = "10m" },
  checks = { stopped = "5s" },   -- a SIGSTOPped daemon is reported after 5 s ...
  on_state = "continue",         -- ... and continued
}

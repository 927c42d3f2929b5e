--- vigil.policy: the restart policy as pure functions (no host calls), so
-- it can be tested against replayed histories.
--
-- A restart policy (normalized):
--   limit   restarts allowed within the window (0: never restart)
--   within  window length, seconds
--   delay   wait before the first restart after a healthy run, seconds
--   backoff { min, max }: waits for further consecutive quick failures
--   reset   a run at least this long counts as healthy (ends a streak)
local M = { _VERSION = "1" }

M.defaults = { limit = 5, within = 60, delay = 0, backoff = { min = 1, max = 30 }, reset = nil }

--- Fills in defaults; reset defaults to the backoff maximum (at least 1 s).
function M.normalize(rp)
  rp = rp or {}
  local out = {}
  for k, v in pairs(M.defaults) do out[k] = v end
  for k, v in pairs(rp) do out[k] = v end
  if out.reset == nil then out.reset = math.max(1, out.backoff.max) end
  return out
end

--- Restarts in history (oldest first, entries { at, uptime }) that fall
-- inside the window ending at `now`.
function M.used(rp, history, now)
  local used = 0
  for _, h in ipairs(history) do
    if now - h.at < rp.within then used = used + 1 end
  end
  return used
end

--- Consecutive quick failures ending with this exit (1 = this one only).
function M.streak(rp, history, uptime)
  if uptime >= rp.reset then return 0 end
  local n = 1
  for i = #history, 1, -1 do
    if history[i].uptime >= rp.reset then break end
    n = n + 1
  end
  return n
end

--- Delay before the next restart for a streak.
function M.delay(rp, streak)
  if streak <= 1 then return rp.delay end
  local d = rp.backoff.min * 2 ^ (streak - 2)
  return math.min(rp.backoff.max, d) + rp.delay
end

--- decide(rp, history, now, uptime) -> decision
-- { action = "restart", delay = s, used = n, streak = k }
-- { action = "exhaust", used = n }
function M.decide(rp, history, now, uptime)
  local used = M.used(rp, history, now)
  if used >= rp.limit then return { action = "exhaust", used = used } end
  local streak = M.streak(rp, history, uptime)
  return { action = "restart", delay = M.delay(rp, streak), used = used, streak = streak }
end

--- What an exit was, for `restart.on` (ev: the exit event; success: a
-- set of exit codes and signal names that count as success, default { 0 }):
--   "success"  an exit code (or a signal) the set lists
--   "failure"  another exit code, an unknown status, or a failed start
--   "signal"   killed by a signal
--   "hang"     ended by vigil itself: a hang, a bad state, a timeout
local default_success = { [0] = true }
function M.exit_class(ev, success)
  success = success or default_success
  if ev.killed then return "hang" end
  if ev.error then return "failure" end
  if ev.signal then return success[ev.signal] and "success" or "signal" end
  if ev.code == nil then return "failure" end
  return success[ev.code] and "success" or "failure"
end

-- restart.on -> the exit classes it restarts (systemd's Restart=).
local restarted = {
  always = { success = true, failure = true, signal = true, hang = true },
  failure = { failure = true, signal = true, hang = true },
  abnormal = { signal = true, hang = true },
  never = {},
}
M.restart_on = { "always", "failure", "abnormal", "never" }

--- Whether `on` (default "always") restarts an exit of this class.
function M.restarts(on, class)
  return restarted[on or "always"][class] == true
end

return M

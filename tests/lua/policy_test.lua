-- The restart policy, against replayed histories (runs inside the real
-- rule runtime; any failed assert fails the test with file:line).
local policy = require "vigil.policy"

local function eq(a, b, what)
  if a ~= b then error(string.format("%s: expected %s, got %s", what, tostring(b), tostring(a)), 2) end
end

local rp = policy.normalize { limit = 3, within = 600, backoff = { min = 1, max = 30 } }
eq(rp.reset, 30, "reset defaults to the backoff maximum")
eq(rp.delay, 0, "default first delay")

-- A first failure after a healthy run restarts at once.
local d = policy.decide(rp, {}, 1000, 3600)
eq(d.action, "restart", "first failure")
eq(d.delay, 0, "first failure delay")

-- A quick failure is streak 1: still immediate; then 1, 2, 4 ... s.
local h = {}
local now = 1000
local delays = {}
for i = 1, 3 do
  local dec = policy.decide(rp, h, now, 0.5)
  eq(dec.action, "restart", "attempt " .. i)
  delays[#delays + 1] = string.format("%g", dec.delay)
  h[#h + 1] = { at = now, uptime = 0.5 }
  now = now + dec.delay + 0.5
end
eq(table.concat(delays, ","), "0,1,2", "backoff sequence")

-- The fourth failure within the window exhausts the budget of 3.
local ex = policy.decide(rp, h, now, 0.5)
eq(ex.action, "exhaust", "budget")
eq(ex.used, 3, "used")

-- Restarts older than the window no longer count.
local later = policy.decide(rp, h, 1000 + 601 + 10, 0.5)
eq(later.action, "restart", "window slid")

-- Backoff is capped at its maximum.
local long = {}
for i = 1, 10 do long[i] = { at = 0, uptime = 0.1 } end
local capped = policy.normalize { limit = 100, within = 1, backoff = { min = 1, max = 5 } }
eq(policy.decide(capped, long, 1000, 0.1).delay, 5, "cap")

-- A healthy run (>= reset) ends the streak.
local mixed = { { at = 990, uptime = 0.1 }, { at = 995, uptime = 100 } }
eq(policy.streak(rp, mixed, 0.2), 1, "streak after healthy run")
eq(policy.streak(rp, mixed, 100), 0, "healthy exit")

-- limit = 0 never restarts.
eq(policy.decide(policy.normalize { limit = 0 }, {}, 1, 100).action, "exhaust", "limit 0")

-- A first delay is added to every restart.
local delayed = policy.normalize { delay = 2, backoff = { min = 1, max = 4 } }
eq(policy.decide(delayed, {}, 1, 100).delay, 2, "delay first")
eq(policy.decide(delayed, { { at = 0, uptime = 0.1 } }, 1, 0.1).delay, 3, "delay plus backoff")

-- The restart policy, against replayed histories.
local T = require "testing"
local policy = require "vigil.policy"
local eq = T.eq

local rp = policy.normalize { limit = 3, within = 600, backoff = { min = 1, max = 30 } }

T.test("defaults", function()
  eq(rp.reset, 30, "reset defaults to the backoff maximum")
  eq(rp.delay, 0, "default first delay")
  local d = policy.normalize(nil)
  eq(d.limit, 5, "default limit")
  eq(d.within, 60, "default window")
end)

T.test("a first failure after a healthy run restarts at once", function()
  local d = policy.decide(rp, {}, 1000, 3600)
  eq(d.action, "restart", "first failure")
  eq(d.delay, 0, "first failure delay")
end)

T.test("quick failures back off, then the budget is exhausted", function()
  local h, now, delays = {}, 1000, {}
  for i = 1, 3 do
    local dec = policy.decide(rp, h, now, 0.5)
    eq(dec.action, "restart", "attempt " .. i)
    delays[#delays + 1] = string.format("%g", dec.delay)
    h[#h + 1] = { at = now, uptime = 0.5 }
    now = now + dec.delay + 0.5
  end
  eq(table.concat(delays, ","), "0,1,2", "backoff sequence")
  local ex = policy.decide(rp, h, now, 0.5)
  eq(ex.action, "exhaust", "budget")
  eq(ex.used, 3, "used")
  -- Restarts older than the window no longer count.
  eq(policy.decide(rp, h, 1000 + 601 + 10, 0.5).action, "restart", "window slid")
end)

T.test("backoff is capped", function()
  local long = {}
  for i = 1, 10 do long[i] = { at = 0, uptime = 0.1 } end
  local capped = policy.normalize { limit = 100, within = 1, backoff = { min = 1, max = 5 } }
  eq(policy.decide(capped, long, 1000, 0.1).delay, 5, "cap")
  -- A streak far longer than any float exponent still gives the cap.
  local huge = {}
  for i = 1, 2000 do huge[i] = { at = 0, uptime = 0.1 } end
  eq(policy.decide(capped, huge, 1000, 0.1).delay, 5, "cap after 2000")
end)

T.test("a healthy run ends the streak", function()
  local mixed = { { at = 990, uptime = 0.1 }, { at = 995, uptime = 100 } }
  eq(policy.streak(rp, mixed, 0.2), 1, "streak after healthy run")
  eq(policy.streak(rp, mixed, 100), 0, "healthy exit")
end)

T.test("limit 0 never restarts", function()
  eq(policy.decide(policy.normalize { limit = 0 }, {}, 1, 100).action, "exhaust", "limit 0")
end)

T.test("a first delay is added to every restart", function()
  local delayed = policy.normalize { delay = 2, backoff = { min = 1, max = 4 } }
  eq(policy.decide(delayed, {}, 1, 100).delay, 2, "delay first")
  eq(policy.decide(delayed, { { at = 0, uptime = 0.1 } }, 1, 0.1).delay, 3, "delay plus backoff")
end)

T.test("exit classes and what restart.on restarts", function()
  local ok3 = { [0] = true, [3] = true, TERM = true }
  eq(policy.exit_class({ code = 0 }), "success", "exit 0")
  eq(policy.exit_class({ code = 3 }), "failure", "exit 3")
  eq(policy.exit_class({ code = 3 }, ok3), "success", "exit 3 listed")
  eq(policy.exit_class({ signal = "TERM" }), "signal", "a signal")
  eq(policy.exit_class({ signal = "TERM" }, ok3), "success", "a signal listed")
  eq(policy.exit_class({ code = 0, killed = "hung" }), "hang", "vigil ended it")
  eq(policy.exit_class({ error = "exec: ENOENT" }), "failure", "a failed start")
  eq(policy.exit_class({}), "failure", "an unknown status")
  local want = {
    always = "success failure signal hang", failure = "failure signal hang",
    abnormal = "signal hang", never = "",
  }
  for _, on in ipairs(policy.restart_on) do
    local got = {}
    for _, class in ipairs({ "success", "failure", "signal", "hang" }) do
      if policy.restarts(on, class) then got[#got + 1] = class end
    end
    eq(table.concat(got, " "), want[on], on)
  end
  eq(policy.restarts(nil, "success"), true, "the default is always")
end)

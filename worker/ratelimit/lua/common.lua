-- Shared prelude of the rate limiter's scripts (prepended to each one when loaded).
-- Times are epoch seconds as doubles; every number written to Redis or returned goes
-- through fmt() because Redis turns bare Lua numbers into integers (replies) or 14 digits.

local function fmt(x)
  return string.format('%.6f', x)
end

-- The store's clock (TIME) unless the caller passes the time in (stores that reject TIME).
local function clock_now(arg)
  if arg == nil or arg == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return tonumber(arg)
end

-- Adaptive factor at `now`: the value stored at the last throttle, recovering linearly
-- (`recovery` per second) once `hold` seconds have passed without a throttle.
local function factor_now(factor, last_throttled, now, hold, recovery)
  if factor == nil then
    return 1.0
  end
  local since = (last_throttled or now) + hold
  local f = factor
  if now > since then
    f = f + recovery * (now - since)
  end
  if f > 1.0 then
    f = 1.0
  end
  return f
end

-- Slow start after a pause: the first requests after one often open new connections, whose
-- set-up lands between grant and arrival, so the rate ramps up from `restart` (linearly,
-- `recovery` per second) from the time `restart_at` the bucket woke up.
local function ramp_now(restart_at, now, restart, recovery)
  if restart_at == nil then
    return 1.0
  end
  local r = restart + recovery * math.max(0, now - restart_at)
  if r > 1.0 then
    r = 1.0
  end
  return r
end

-- Seconds between two slots: the quota less its safety margin, scaled by the adaptive factor.
local function slot_interval(rate, margin, f)
  return 1.0 / (rate * (1.0 - margin) * f)
end

-- How late a caller may claim its slot without the schedule slipping. Q+1 consecutive
-- grants span at least rate*interval - tolerance seconds, so the tolerance takes only a
-- share of the margin's room above one second; the rest is left for network jitter.
local function lateness_tolerance(rate, interval, share)
  local room = rate * interval - 1.0
  if room <= 0 then
    return 0.0
  end
  return math.min(share * room, 0.5 * interval)
end

-- Shared helpers of the rate limiter's scripts, prepended to every script that needs them.
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

-- The learned safety margin (MarginPolicy, passed as one comma-separated ARGV):
-- floor, ceiling, hold, half life, hit half life, hit factor, hit step, gap k, widen,
-- widen hold, gap alpha.
local function margin_policy(arg)
  local v = {}
  for x in string.gmatch(arg, '[^,]+') do
    table.insert(v, tonumber(x))
  end
  return {floor = v[1], ceiling = v[2], hold = v[3], half = v[4], hit_half = v[5],
    hit_factor = v[6], hit_step = v[7], gap_k = v[8], widen = v[9], widen_hold = v[10],
    gap_alpha = v[11]}
end

-- The margin below which the provider throttled us, forgotten slowly (half life hit_half)
-- so that a network that got better is eventually used.
local function hit_now(hit, hit_at, now, p)
  if hit == nil or hit_at == nil then
    return 0.0
  end
  return hit * 0.5 ^ (math.max(0, now - hit_at) / p.hit_half)
end

-- What the margin narrows back to: the floor, or safely above the last throttled margin.
local function margin_target(hit, p)
  if hit <= 0 then
    return p.floor
  end
  return math.max(p.floor, hit * p.hit_factor + p.hit_step)
end

-- The margin at `now`: the one set at `lm_at` (the initial margin, or the one a throttle
-- widened to) narrowing back toward its target after `hold` quiet seconds (half life
-- `half`), never below what the spread of the grant-to-send gap needs, within the bounds.
-- The room the margin leaves above one second is ~margin seconds, of which the lateness
-- tolerance takes `share`; the gap's spread is taken as `gap_k` mean deviations.
local function margin_now(lm, lm_at, hit, hit_at, gap_dev, now, initial, share, p)
  local h = hit_now(hit, hit_at, now, p)
  local target = margin_target(h, p)
  local m = lm or initial
  local at = lm_at or now
  local quiet = math.max(0, now - at - p.hold)
  if m > target then
    m = target + (m - target) * 0.5 ^ (quiet / p.half)
  else
    m = target
  end
  if gap_dev ~= nil then
    m = math.max(m, p.gap_k * gap_dev / (1.0 - share))
  end
  return math.min(p.ceiling, math.max(p.floor, m))
end

-- An attempt's outcome: the grant-to-send gap it measured, and whether it was throttled.
-- Needs prelude.lua.
-- KEYS: 1 state
-- ARGV: 1 now ('' = TIME)  2 decrease  3 floor  4 hold  5 recovery  6 ttl (ms)
--       7 throttled ('1' or '0')  8 gap in seconds ('' = not measured)  9 margin policy
--       10 initial margin  11 lateness share
-- Reply: {now, factor, margin}
--
-- The gap feeds a mean and a mean deviation (EWMA, weight gap_alpha); the margin never goes
-- below what that spread needs (margin_now). A Throttling.* answer widens the margin (at most
-- once per widen hold, since one episode throttles every request in flight) and remembers the
-- margin it happened at; only when the margin is already at its ceiling does it slow the rate
-- itself down (the adaptive factor: the quota is used outside this system), at most once per
-- hold period, restarting its recovery.

local state = KEYS[1]
local now = clock_now(ARGV[1])
local decrease, floor = tonumber(ARGV[2]), tonumber(ARGV[3])
local hold, recovery = tonumber(ARGV[4]), tonumber(ARGV[5])
local throttled = ARGV[7] == '1'
local mp = margin_policy(ARGV[9])
local initial, share = tonumber(ARGV[10]), tonumber(ARGV[11])

local st = redis.call('HMGET', state, 'factor', 'last_throttled', 'last_decrease',
  'm_lm', 'm_at', 'm_hit', 'm_hit_at', 'gap_dev', 'gap_mean')
local f = factor_now(tonumber(st[1]), tonumber(st[2]), now, hold, recovery)
local gap_dev, gap_mean = tonumber(st[8]), tonumber(st[9])

if ARGV[8] ~= '' then
  local gap = tonumber(ARGV[8])
  if gap_mean == nil then
    gap_mean, gap_dev = gap, 0.0
  else
    local a = mp.gap_alpha
    gap_dev = gap_dev + a * (math.abs(gap - gap_mean) - gap_dev)
    gap_mean = gap_mean + a * (gap - gap_mean)
  end
  redis.call('HSET', state, 'gap_mean', fmt(gap_mean), 'gap_dev', fmt(gap_dev))
end

local lm, lm_at = tonumber(st[4]), tonumber(st[5])
local hit, hit_at = tonumber(st[6]), tonumber(st[7])
local margin = margin_now(lm, lm_at, hit, hit_at, gap_dev, now, initial, share, mp)

if throttled then
  if margin >= mp.ceiling then
    local last_decrease = tonumber(st[3])
    if last_decrease == nil or now - last_decrease >= hold then
      f = math.max(floor, f * decrease)
      last_decrease = now
    end
    redis.call('HSET', state, 'factor', fmt(f), 'last_throttled', fmt(now),
      'last_decrease', fmt(last_decrease))
  else
    -- The factor as it stands now: its recovery restarts from here.
    if st[1] ~= false then
      redis.call('HSET', state, 'factor', fmt(f))
    end
    redis.call('HSET', state, 'last_throttled', fmt(now))
    if hit_at == nil or now - hit_at >= mp.widen_hold then
      local h = math.max(hit_now(hit, hit_at, now, mp), margin)
      local target = margin_target(h, mp)
      local widened = math.max(margin * mp.widen, target)
      margin = math.min(mp.ceiling, widened)
      redis.call('HSET', state, 'm_lm', fmt(margin), 'm_at', fmt(now), 'm_hit', fmt(h),
        'm_hit_at', fmt(now))
      redis.call('HINCRBY', state, 'widened', 1)
    end
  end
  redis.call('HINCRBY', state, 'throttled', 1)
end
redis.call('HSET', state, 'margin', fmt(margin))
redis.call('PEXPIRE', state, ARGV[6])
return {fmt(now), fmt(f), fmt(margin)}

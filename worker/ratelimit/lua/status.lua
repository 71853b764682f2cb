-- Read-only view of one bucket for `idv-worker quota status`.
-- Needs prelude.lua.
-- KEYS: 1 state  2 waiters  3 expiry
-- ARGV: 1 now ('' = TIME)  2 hold  3 recovery  4 restart factor  5 margin policy
--       6 initial margin  7 lateness share
-- Reply: {now, factor, tat, last_throttled, throttled, rate, margin, burst, gap_mean,
--   gap_dev, widened, lane, n, lane, n...}  (margin: the learned one at now)

local state, expiry = KEYS[1], KEYS[3]
local now = clock_now(ARGV[1])
local hold, recovery = tonumber(ARGV[2]), tonumber(ARGV[3])

local st = redis.call('HMGET', state, 'factor', 'last_throttled', 'tat', 'throttled',
  'rate', 'margin', 'burst', 'restart_at', 'm_lm', 'm_at', 'm_hit', 'm_hit_at', 'gap_dev',
  'gap_mean', 'widened')
local mp = margin_policy(ARGV[5])
local margin = margin_now(tonumber(st[9]), tonumber(st[10]), tonumber(st[11]),
  tonumber(st[12]), tonumber(st[13]), now, tonumber(ARGV[6]), tonumber(ARGV[7]), mp)
local f = factor_now(tonumber(st[1]), tonumber(st[2]), now, hold, recovery)
-- The ramp applies while the bucket is in use; an idle bucket restarts on its next call.
if (tonumber(st[3]) or 0) >= now - 1.0 then
  f = math.min(f, ramp_now(tonumber(st[8]), now, tonumber(ARGV[4]), recovery))
end
local out = {fmt(now), fmt(f), st[3] or '', st[2] or '', st[4] or '0', st[5] or '',
  fmt(margin), st[7] or '', st[14] or '', st[13] or '', st[15] or '0'}

-- Live waiters only: entries past their expiry are dropped by the next acquire.
local counts = {}
local order = {}
local live = redis.call('ZRANGEBYSCORE', expiry, '(' .. fmt(now), '+inf', 'LIMIT', 0, 100000)
for _, m in ipairs(live) do
  local lane = string.match(m, '^%d+:([^:]+):')
  if lane then
    if counts[lane] == nil then
      counts[lane] = 0
      table.insert(order, lane)
    end
    counts[lane] = counts[lane] + 1
  end
end
for _, lane in ipairs(order) do
  table.insert(out, lane)
  table.insert(out, tostring(counts[lane]))
end
return out

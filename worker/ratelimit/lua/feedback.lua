-- A Throttling.* answer: slow the bucket down (multiplicative decrease, at most once per
-- hold period, since one episode throttles every request in flight), and restart recovery.
-- KEYS: 1 state   ARGV: 1 now ('' = TIME)  2 decrease  3 floor  4 hold  5 recovery  6 ttl (ms)
-- Reply: {now, factor}

local state = KEYS[1]
local now = clock_now(ARGV[1])
local decrease, floor = tonumber(ARGV[2]), tonumber(ARGV[3])
local hold, recovery = tonumber(ARGV[4]), tonumber(ARGV[5])

local st = redis.call('HMGET', state, 'factor', 'last_throttled', 'last_decrease')
local f = factor_now(tonumber(st[1]), tonumber(st[2]), now, hold, recovery)
local last_decrease = tonumber(st[3])
if last_decrease == nil or now - last_decrease >= hold then
  f = math.max(floor, f * decrease)
  last_decrease = now
end
redis.call('HSET', state, 'factor', fmt(f), 'last_throttled', fmt(now),
  'last_decrease', fmt(last_decrease))
redis.call('HINCRBY', state, 'throttled', 1)
redis.call('PEXPIRE', state, ARGV[6])
return {fmt(now), fmt(f)}

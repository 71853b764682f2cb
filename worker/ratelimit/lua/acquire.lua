-- One step of acquire: grant a slot now, or tell the caller when its turn comes.
-- Needs prelude.lua.
-- KEYS: 1 state (hash), 2 waiters (zset: score deadline, member seq:lane:id),
--       3 expiry (zset: score time after which a silent waiter is dropped, same members)
-- ARGV: 1 now ('' = TIME)   2 rate   3 margin   4 burst   5 deadline ('' = now + horizon)
--       6 horizon   7 wait limit ('' = now + max wait)   8 max wait   9 lane   10 waiter id
--       11 seq ('' = new)   12 lateness share   13 minimum grace   14 hold   15 recovery
--       16 ttl (ms)   17 restart factor   18 margin policy (see margin_policy)
--       19 lead: how early the first waiter may claim its slot (at most a quarter interval)
--   ARGV 3 is the initial margin: the one a bucket starts with before it learns its own.
-- Reply: {status, now, time, deadline, wait limit, seq, member, interval, factor, margin,
--   lateness}: lateness = how long after its slot a granted caller came (0 otherwise)
--   status 1 granted (time = when to send: now, or the slot's start when the first waiter
--   claimed it up to `lead` early), 0 wait until time, -1 deadline unreachable,
--   -2 maximum wait exceeded (time = earliest start in both cases, nothing reserved)

local state, waiters, expiry = KEYS[1], KEYS[2], KEYS[3]
local now = clock_now(ARGV[1])
local rate = tonumber(ARGV[2])
local initial = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local deadline
if ARGV[5] == '' then
  deadline = now + tonumber(ARGV[6])
else
  deadline = tonumber(ARGV[5])
end
local wait_limit
if ARGV[7] == '' then
  wait_limit = now + tonumber(ARGV[8])
else
  wait_limit = tonumber(ARGV[7])
end
local lane, waiter_id = ARGV[9], ARGV[10]
local share, grace_min = tonumber(ARGV[12]), tonumber(ARGV[13])
local hold, recovery = tonumber(ARGV[14]), tonumber(ARGV[15])
local ttl = ARGV[16]
local restart = tonumber(ARGV[17])
local mp = margin_policy(ARGV[18])

local st = redis.call('HMGET', state, 'tat', 'factor', 'last_throttled', 'restart_at',
  'm_lm', 'm_at', 'm_hit', 'm_hit_at', 'gap_dev')
local tat = tonumber(st[1]) or 0
local restart_at = tonumber(st[4])
-- A second without grants: the provider's window holds nothing of ours, so start again
-- slowly (see ramp_now).
local restarted = tat < now - 1.0
if restarted then
  restart_at = now
end
local f = math.min(factor_now(tonumber(st[2]), tonumber(st[3]), now, hold, recovery),
  ramp_now(restart_at, now, restart, recovery))
local margin = margin_now(tonumber(st[5]), tonumber(st[6]), tonumber(st[7]), tonumber(st[8]),
  tonumber(st[9]), now, initial, share, mp)
-- The initial margin narrows from the bucket's first call.
if st[6] == false then
  redis.call('HSET', state, 'm_lm', fmt(initial), 'm_at', fmt(now))
end
local interval = slot_interval(rate, margin, f)
local tolerance = lateness_tolerance(rate, interval, share)

-- A caller that stopped asking (crashed, killed) must not hold the queue.
local expired = redis.call('ZRANGEBYSCORE', expiry, '-inf', fmt(now), 'LIMIT', 0, 100)
for _, m in ipairs(expired) do
  redis.call('ZREM', waiters, m)
  redis.call('ZREM', expiry, m)
end

local seq
if ARGV[11] == '' then
  seq = redis.call('HINCRBY', state, 'seq', 1)
else
  seq = tonumber(ARGV[11])
end
-- Equal deadlines rank by arrival: ZSET ties order by member, and seq leads it.
local member = string.format('%015d', seq) .. ':' .. lane .. ':' .. waiter_id
local deadline_s = fmt(deadline)

-- Rank = live waiters with an earlier (deadline, seq); skipped when nobody waits.
local rank = 0
local registered = false
if redis.call('ZCARD', waiters) > 0 then
  redis.call('ZADD', waiters, deadline_s, member)
  rank = redis.call('ZRANK', waiters, member)
  registered = true
end

-- A slot left unclaimed for longer than the tolerance is gone, not owed. After more than
-- one interval nothing is owed at all (idle bucket): start afresh at now, since dating the
-- first slot back would only shorten the gap after it.
local base
if tat < now - interval then
  base = now
else
  base = math.max(tat, now - tolerance)
end
local turn = base - (burst - 1) * interval + rank * interval
local earliest = math.max(turn, now)
local limit = math.min(deadline, wait_limit)

local function reply(status, t, late)
  return {status, fmt(now), fmt(t), deadline_s, fmt(wait_limit), tostring(seq), member,
    fmt(interval), fmt(f), fmt(margin), fmt(late or 0)}
end

if earliest > limit then
  if registered then
    redis.call('ZREM', waiters, member)
    redis.call('ZREM', expiry, member)
  end
  if deadline <= wait_limit then
    return reply(-1, earliest)
  end
  return reply(-2, earliest)
end

-- The first in line may claim its slot a little early and sleep the rest itself: its wake-up
-- lateness then costs nothing, where a slot claimed late costs the schedule what the
-- tolerance does not cover.
local lead = math.min(tonumber(ARGV[19]) or 0, interval / 4)
local early = burst == 1 and rank == 0 and turn > now and turn <= now + lead
if turn <= now or early then
  if registered then
    redis.call('ZREM', waiters, member)
    redis.call('ZREM', expiry, member)
  end
  -- Where the quota goes, per grant (seconds of the schedule beyond 1/rate): the margin's
  -- share of the spacing, the factor's (throttles, slow start), and the time no caller
  -- claimed (a slot gone, or an idle bucket). Read by `quota status` and bench/limiter.py.
  local ideal = 1.0 / rate
  local spaced = 1.0 / (rate * (1.0 - margin))
  redis.call('HINCRBY', state, 'a_grants', 1)
  redis.call('HINCRBYFLOAT', state, 'a_margin_s', fmt(spaced - ideal))
  redis.call('HINCRBYFLOAT', state, 'a_factor_s', fmt(interval - spaced))
  if tat > 0 and base > tat then
    redis.call('HINCRBYFLOAT', state, 'a_unclaimed_s', fmt(base - tat))
  end
  redis.call('HSET', state, 'tat', fmt(base + interval), 'rate', ARGV[2],
    'margin', fmt(margin), 'burst', ARGV[4], 'last_grant', fmt(now))
  if restarted then
    redis.call('HSET', state, 'restart_at', fmt(now))
  end
  redis.call('PEXPIRE', state, ttl)
  if early then
    return reply(1, base, 0)
  end
  return reply(1, now, now - base)
end

if not registered then
  redis.call('ZADD', waiters, deadline_s, member)
end
redis.call('ZADD', expiry, fmt(turn + math.max(grace_min, 2 * interval)), member)
redis.call('HSET', state, 'rate', ARGV[2], 'margin', fmt(margin), 'burst', ARGV[4])
if restarted then
  redis.call('HSET', state, 'restart_at', fmt(now))
end
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', waiters, ttl)
redis.call('PEXPIRE', expiry, ttl)
return reply(0, turn)

-- KEYS: the event's hash, the due index, the pending index, the subject's set.
-- ARGV: event id, token, outcome, now, keep_s, next_at, error.
-- Ends one attempt. 'delivered' holds whoever posted it (a receiver has it: never again); the
-- entry is kept ``keep_s`` so a repeated announcement finds it. 'retry' and 'dead' hold only
-- for the attempt that owns the claim (a stale one changes nothing): 'retry' makes the event due
-- at ``next_at``, 'dead' ends it (the caller writes the dead letter). Returns 1 if it changed.
local h = redis.call('HMGET', KEYS[1], 'state', 'claim')
if h[1] ~= 'pending' then
  return 0
end
local outcome = ARGV[3]
if outcome ~= 'delivered' and h[2] ~= ARGV[2] then
  return 0
end
if outcome == 'retry' then
  redis.call('HSET', KEYS[1], 'claim', '', 'claim_until', '0', 'next_at', ARGV[6],
    'error', ARGV[7])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', outcome, 'claim', '', 'claim_until', '0', 'done_at', ARGV[4],
  'error', ARGV[7])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return 1

-- KEYS: the due index. ARGV: now, limit, retry_at.
-- Takes up to ``limit`` members due at ``now`` and moves each to ``retry_at``: a scanner that
-- dies while re-driving one leaves it to come due again, and two scanners never take one.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
end
return due

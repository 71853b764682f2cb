-- The worker saw tid's completed result at ARGV[2]: the first such time is its completed_at.
-- Needs prelude.lua. ARGV: tid, now. Returns the stored completed_at, or false (no entry).
if not redis.call('HGET', KEYS[1], 's') then return false end
if redis.call('HSETNX', KEYS[1], 'done_at', ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 't:completed', ARGV[2])
end
return redis.call('HGET', KEYS[1], 'done_at')

-- KEYS: cl cq cdone meta. ARGV: chunk, token, mode (done | requeue | stop), ttl.
-- Returns {chunks done, total chunks or -1 while submitting, state}.
-- Needs prelude.lua.
local chunk = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[3] == 'done' then redis.call('SETBIT', KEYS[3], chunk, 1) end
if ARGV[3] == 'requeue' then redis.call('SETBIT', KEYS[2], chunk, 1) end
keep(tonumber(ARGV[4]), KEYS[2], KEYS[3])
local total = -1
if redis.call('HGET', KEYS[4], 'submitted') == '1' then
  total = tonumber(redis.call('HGET', KEYS[4], 'total_chunks') or '0')
end
return {redis.call('BITCOUNT', KEYS[3]), total, redis.call('HGET', KEYS[4], 'state') or ''}

-- A transaction started through us or imported. Needs prelude.lua.
-- ARGV: tid, now, state (initialized|completed), product, biz, source, created_at,
--       completed_at ('' unknown), deletes_at, q, due, ttl.
-- Returns {1, state} when created, {0, current state} when it was known (never regressed;
-- a record a callback created with guessed ids gets the real product and MerchantBizId).
local tid = ARGV[1]
local cur = redis.call('HGET', KEYS[1], 's')
if cur then
  if redis.call('HGET', KEYS[1], 'src') == 'callback' then
    redis.call('HSET', KEYS[1], 'p', ARGV[4], 'b', ARGV[5], 'src', ARGV[6])
    redis.call('ZREM', KEYS[7], tid)
  end
  return {0, cur}
end
redis.call('HSET', KEYS[1], 'p', ARGV[4], 'b', ARGV[5], 'src', ARGV[6], 'c_at', ARGV[7],
  'del_at', ARGV[9], 'n', 0)
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'done_at', ARGV[8]) end
set_state(nil, ARGV[3], ARGV[2])
schedule(tid, ARGV[10], ARGV[11])
redis.call('ZADD', KEYS[4], ARGV[9], tid)
redis.call('PEXPIRE', KEYS[1], ARGV[12])
return {1, ARGV[3]}

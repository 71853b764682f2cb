-- A provider callback for tid. Needs prelude.lua.
-- ARGV: tid, now, product, biz, redrive_at, deletes_at, require_known (0|1), ttl,
--       required biz ('' = any: the token was not derived from the stored MerchantBizId),
--       most open entries callbacks may create (the guessed index, KEYS[7]).
-- Returns {verdict, product, biz, completed_at}; verdict: accepted (enqueue the work),
-- duplicate (work in flight or done), unknown (never seen and require_known, or its stored
-- MerchantBizId is not the required one), full (never seen and the guessed index is full).
-- A callback never sets completed_at (done_at): the worker does, when it first sees the
-- completed result. A callback for a transaction whose work is overdue is accepted again: the
-- earlier message was lost.
local tid, now = ARGV[1], ARGV[2]
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then
  if ARGV[7] == '1' or ARGV[9] ~= '' then return {'unknown'} end
  -- Entries only a callback vouches for are bounded: each is in the guessed index until it
  -- would have expired, and no more than ARGV[10] of them at a time.
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  if redis.call('ZCARD', KEYS[7]) >= tonumber(ARGV[10]) then return {'full'} end
  redis.call('HSET', KEYS[1], 'p', ARGV[3], 'b', ARGV[4], 'src', 'callback', 'c_at', now,
    'del_at', ARGV[6], 'n', 0)
  set_state(nil, 'completed', now)
  schedule(tid, 'rt', ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[6], tid)
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  redis.call('ZADD', KEYS[7], tonumber(now) + tonumber(ARGV[8]) / 1000, tid)
  return {'accepted', ARGV[3], ARGV[4], ''}
end
local f = redis.call('HMGET', KEYS[1], 'p', 'b', 'done_at', 'due')
local product, biz, done, due = f[1], f[2], f[3], tonumber(f[4] or '0')
if ARGV[9] ~= '' and biz ~= ARGV[9] then return {'unknown'} end
if cur == 'initialized' then
  set_state(cur, 'completed', now)
  schedule(tid, 'rt', ARGV[5])
  return {'accepted', product, biz, done or ''}
end
if cur == 'completed' and due <= tonumber(now) then
  schedule(tid, 'rt', ARGV[5])
  return {'accepted', product, biz, done or ''}
end
return {'duplicate', product, biz, done or ''}

-- A provider callback for tid. Needs prelude.lua.
-- ARGV: tid, now, product, biz, redrive_at, deletes_at, require_known (0|1), ttl.
-- Returns {verdict, product, biz, completed_at}; verdict: accepted (enqueue the work),
-- duplicate (work in flight or done), unknown (never seen and require_known).
-- A callback for a transaction whose work is overdue is accepted again: the earlier
-- message was lost.
local tid, now = ARGV[1], ARGV[2]
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then
  if ARGV[7] == '1' then return {'unknown'} end
  redis.call('HSET', KEYS[1], 'p', ARGV[3], 'b', ARGV[4], 'src', 'callback', 'c_at', now,
    'done_at', now, 'del_at', ARGV[6], 'n', 0)
  set_state(nil, 'completed', now)
  schedule(tid, 'rt', ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[6], tid)
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  return {'accepted', ARGV[3], ARGV[4], now}
end
local f = redis.call('HMGET', KEYS[1], 'p', 'b', 'done_at', 'due')
local product, biz, done, due = f[1], f[2], f[3], tonumber(f[4] or '0')
if cur == 'initialized' then
  set_state(cur, 'completed', now)
  redis.call('HSET', KEYS[1], 'done_at', now, 'del_at', ARGV[6])
  schedule(tid, 'rt', ARGV[5])
  redis.call('ZADD', KEYS[4], ARGV[6], tid)
  return {'accepted', product, biz, now}
end
if cur == 'completed' and due <= tonumber(now) then
  schedule(tid, 'rt', ARGV[5])
  return {'accepted', product, biz, done or now}
end
return {'duplicate', product, biz, done or ''}

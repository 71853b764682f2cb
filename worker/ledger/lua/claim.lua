-- Claim one due transaction for one attempt. Needs prelude.lua.
-- ARGV: tid, now, hold_until, fence token ('' = no lock checked), q (index swept).
-- Returns {'claimed', state, product, biz, created_at, completed_at, deletes_at, attempts}
-- or {reason}: fenced (a newer sweep holds the lock), missing, final, not_due.
-- The due time moves to hold_until, so a second sweeper or a duplicate message does not
-- take the same attempt; a worker that dies leaves it to come due again.
local tid, now = ARGV[1], tonumber(ARGV[2])
if ARGV[4] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[4] then return {'fenced'} end
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then
  redis.call('ZREM', KEYS[2], tid); redis.call('ZREM', KEYS[3], tid); redis.call('ZREM', KEYS[4], tid)
  return {'missing'}
end
if FINAL[cur] then unschedule(tid); return {'final', cur} end
local f = redis.call('HMGET', KEYS[1], 'due', 'q', 'p', 'b', 'c_at', 'done_at', 'del_at')
if tonumber(f[1] or '0') > now or f[2] ~= ARGV[5] then return {'not_due', cur} end
schedule(tid, ARGV[5], ARGV[3])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
return {'claimed', cur, f[3], f[4], f[5], f[6] or '', f[7], n}

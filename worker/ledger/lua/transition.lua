-- Move tid to a new state. Needs prelude.lua.
-- ARGV: tid, now, to, q ('' = leave the indexes as they are), due, reason ('' = keep),
--       final ttl ms, allowed from-states ('' = any non-final, else comma-separated),
--       then field/value pairs to set (e.g. t:result_stored, done_at).
-- Returns {1, to} or {0, current state} when the move is not allowed (or the record is gone).
local tid, now, to = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then return {0, 'missing'} end
if FINAL[cur] then return {0, cur} end
if ARGV[8] ~= '' and not string.find(',' .. ARGV[8] .. ',', ',' .. cur .. ',', 1, true) then
  return {0, cur}
end
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'r', ARGV[6]) end
if cur ~= to then set_state(cur, to, now) end
if FINAL[to] then
  unschedule(tid)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
elseif ARGV[4] ~= '' then
  schedule(tid, ARGV[4], ARGV[5])
end
return {1, to}

-- Taken in the HTTP transport right before the request leaves, so that the claim exists
-- exactly when the provider may see the call. KEYS: meta st inflight.
-- ARGV: seq, item_id, token, now, ttl. Returns 'ok' or why the call must not be made.
-- Needs prelude.lua.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then return 'state:' .. (state or 'missing') end
local s = status_at(KEYS[2], tonumber(ARGV[1]))
if s ~= '' then return 'status:' .. s end
local cur = redis.call('HGET', KEYS[3], ARGV[2])
if cur then
  if string.sub(cur, 1, #ARGV[3] + 1) == ARGV[3] .. '|' then return 'ok' end
  return 'claimed'
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[1])
keep(tonumber(ARGV[5]), KEYS[3])
return 'ok'

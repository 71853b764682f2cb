-- KEYS: st n inflight detail. ARGV: seq, item_id, token ('' = drop any claim, '-' = keep the
-- claim: it is the evidence of an uncertain call), status char ('' = back
-- to pending), now, detail json ('' = none), sub_code ('' = none), called (1 if a provider
-- call was made: feeds the rate), tau seconds, ttl.
-- Needs prelude.lua.
local seq = tonumber(ARGV[1])
local changed = set_status(KEYS[1], KEYS[2], seq, ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
elseif ARGV[4] == 'd' or ARGV[4] == '' then
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if changed and ARGV[7] ~= '' then redis.call('HINCRBY', KEYS[2], 'sub:' .. ARGV[7], 1) end
local cur = redis.call('HGET', KEYS[3], ARGV[2])
if cur and (ARGV[3] == '' or string.sub(cur, 1, #ARGV[3] + 1) == ARGV[3] .. '|') then
  redis.call('HDEL', KEYS[3], ARGV[2])
end
local now = tonumber(ARGV[5])
if ARGV[8] == '1' then
  local tau = tonumber(ARGV[9])
  local rate = tonumber(redis.call('HGET', KEYS[2], 'rate') or '0')
  local t = tonumber(redis.call('HGET', KEYS[2], 'rate_t') or ARGV[5])
  local dt = now - t
  if dt < 0 then dt = 0 end
  rate = rate * math.exp(-dt / tau) + 1 / tau
  redis.call('HSET', KEYS[2], 'rate', tostring(rate), 'rate_t', ARGV[5], 'last_at', ARGV[5])
  redis.call('HSETNX', KEYS[2], 'first_at', ARGV[5])
end
keep(tonumber(ARGV[10]), KEYS[1], KEYS[2], KEYS[4])
if changed then return 1 end
return 0

-- KEYS: the event's hash, the due index. ARGV: event id, token, now, lease_s.
-- Claims one pending event for one attempt: {'claimed', attempt, field, value, ...}, or
-- {why} with why one of 'gone', 'delivered', 'dead' (its due entry is dropped), 'held' (another
-- attempt's claim is live), 'later' (its retry is not due yet). A claim moves the due entry to
-- the claim's end, so an attempt that dies with its process comes due again then.
local h = redis.call('HMGET', KEYS[1], 'state', 'claim', 'claim_until', 'next_at')
if not h[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone'}
end
if h[1] ~= 'pending' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {h[1]}
end
local now = tonumber(ARGV[3])
if h[2] ~= '' and h[2] ~= ARGV[2] and tonumber(h[3]) > now then
  return {'held'}
end
if tonumber(h[4]) > now then
  return {'later'}
end
local ends = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'claim', ARGV[2], 'claim_until', tostring(ends))
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], tostring(ends), ARGV[1])
local out = {'claimed', tostring(attempt)}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do
  out[#out + 1] = v
end
return out

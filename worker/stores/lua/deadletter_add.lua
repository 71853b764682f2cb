-- KEYS: entry, index, kind index. ARGV: kind, id, reason, code, detail, payload, now, member.
-- Empty code/detail clear the field; an empty payload keeps the one already stored.
local h = KEYS[1]
redis.call('HSET', h, 'kind', ARGV[1], 'id', ARGV[2], 'reason', ARGV[3], 'last_at', ARGV[7])
for i, name in ipairs({'code', 'detail'}) do
  if ARGV[3 + i] == '' then
    redis.call('HDEL', h, name)
  else
    redis.call('HSET', h, name, ARGV[3 + i])
  end
end
if ARGV[6] == '' then
  redis.call('HSETNX', h, 'payload', '{}')
else
  redis.call('HSET', h, 'payload', ARGV[6])
end
redis.call('HSETNX', h, 'first_at', ARGV[7])
redis.call('HINCRBY', h, 'count', 1)
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[2])
return redis.call('HGETALL', h)

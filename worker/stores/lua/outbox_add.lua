-- KEYS: the event's hash, the due index, the pending index (by creation), the subject's set.
-- ARGV: event id, now, keep_s, due_at, then the event's field/value pairs.
-- Adds one outbound event, claimable now; its due entry is at ``due_at`` (the hint sent with it
-- is expected to claim it before then; if that hint is lost, a driver finds it due then). The same event announced again changes nothing while it is
-- pending or delivered (returns 0); one that went to the dead letters is made pending again
-- with its attempts reset (returns 2); a new one returns 1.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'pending' or state == 'delivered' then
  return 0
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempts', '0', 'claim', '', 'claim_until', '0',
  'next_at', ARGV[2], 'error', '', 'created_at', ARGV[2], unpack(fields))
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[3])
if state == 'dead' then
  return 2
end
return 1

-- KEYS: record, stream. ARGV: json, ttl ms, create_only (0/1), maxlen, field, value, ...
-- The XADD goes first: it is the only command here that can fail (wrong type, memory), and a
-- Lua script is not rolled back on error, so nothing must have been written before it.
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return id

-- KEYS: entry, index, kind index. ARGV: member, id, expected count ('' = any).
-- Returns 1 removed, 0 absent, -1 kept because it failed again meanwhile (count changed).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'count') ~= ARGV[3] then return -1 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1

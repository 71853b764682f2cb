-- Keep a transaction's attempt alive: its due time moves forward to ARGV[2] (never back)
-- unless it is final. Needs prelude.lua. ARGV: tid, due. Returns 1 if moved, 0 otherwise.
local cur = redis.call('HGET', KEYS[1], 's')
if not cur or FINAL[cur] then return 0 end
if tonumber(ARGV[2]) <= tonumber(redis.call('HGET', KEYS[1], 'due') or '0') then return 0 end
local q = redis.call('HGET', KEYS[1], 'q') or 'rt'
schedule(ARGV[1], q, ARGV[2])
return 1

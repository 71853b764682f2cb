-- KEYS: cl cq cdone. ARGV: chunk, token, now, lease seconds, key ttl.
-- Takes (or renews) a chunk's lease and clears its "queued" bit: the message is being
-- worked on. Returns 1 taken, 0 held by another live lease, -1 the chunk is complete.
-- Needs prelude.lua.
local chunk = tonumber(ARGV[1])
redis.call('SETBIT', KEYS[2], chunk, 0)
if redis.call('GETBIT', KEYS[3], chunk) == 1 then return -1 end
local now = tonumber(ARGV[3])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local mine = cur and string.sub(cur, 1, #ARGV[2] + 1) == ARGV[2] .. '|'
if cur and not mine and lease_live(KEYS[1], ARGV[1], now) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. tostring(now + tonumber(ARGV[4])))
keep(tonumber(ARGV[5]), KEYS[1])
return 1

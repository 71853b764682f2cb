-- KEYS: meta cdone cq cl. ARGV: now, force (1: ignore the queued bits, after a submitter
-- crash). Marks and returns the chunks that are incomplete, not waiting in the broker and
-- not leased by a live worker: those a dead worker or a pause left behind.
-- Needs prelude.lua.
local n = tonumber(redis.call('HGET', KEYS[1], 'submitted_chunks') or '0')
local now = tonumber(ARGV[1])
local out = {}
for c = 0, n - 1 do
  if redis.call('GETBIT', KEYS[2], c) == 0
     and (ARGV[2] == '1' or redis.call('GETBIT', KEYS[3], c) == 0)
     and not lease_live(KEYS[4], tostring(c), now) then
    redis.call('SETBIT', KEYS[3], c, 1)
    out[#out + 1] = c
  end
end
return out

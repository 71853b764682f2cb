-- KEYS: cl cq cdone meta. ARGV: chunk, now.
-- A chunk came due in the takeover index (its holder stopped renewing, or its delayed retry is
-- overdue). Returns 2 when a holder's lease ran out unreleased (the holder died or stalled:
-- another worker should adopt it now), 1 when no lease holds it (a handed-on or retried chunk
-- whose message is late, or died with its node: send it again), both now marked queued; 0
-- while a live lease holds it, -1 when nothing is left to do (complete, or the batch is not
-- running).
-- Needs prelude.lua.
local chunk = tonumber(ARGV[1])
if redis.call('HGET', KEYS[4], 'state') ~= 'running' then return -1 end
if redis.call('GETBIT', KEYS[3], chunk) == 1 then return -1 end
if lease_live(KEYS[1], ARGV[1], tonumber(ARGV[2])) then return 0 end
redis.call('SETBIT', KEYS[2], chunk, 1)
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 2 end
return 1

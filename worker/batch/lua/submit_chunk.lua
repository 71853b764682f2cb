-- KEYS: meta chunks st n detail cq. ARGV: chunk_no, blob, rows, next_submitted, now, ttl,
-- then pairs (seq, detail json) of rows found invalid at submission.
-- Idempotent: a chunk already counted (a resumed submission) is not written twice.
-- Needs prelude.lua.
local chunk = tonumber(ARGV[1])
local done = tonumber(redis.call('HGET', KEYS[1], 'submitted_chunks') or '0')
if done > chunk then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for i = 7, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  set_status(KEYS[3], KEYS[4], seq, 'i')
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'submitted_chunks', ARGV[4], 'updated_at', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'submitted_rows', ARGV[3])
redis.call('SETBIT', KEYS[6], chunk, 1)
keep(tonumber(ARGV[6]), KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1

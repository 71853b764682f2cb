-- KEYS: st n detail inflight cdone cq meta. ARGV: statuses to reset (e.g. 'f' or 'fu'),
-- chunk size. Puts failed (and uncertain) rows back to pending, drops their claims, and
-- returns {rows reset, chunk numbers to enqueue...}; the chunks are marked queued.
-- Needs prelude.lua.
local data = redis.call('GET', KEYS[1]) or ''
local wanted = ARGV[1]
local size = tonumber(ARGV[2])
local reset, chunks, seen = 0, {}, {}
local seqs = {}
local pattern = '[' .. wanted .. ']'
local i = string.find(data, pattern, 1)
while i do
  do
    local seq = i - 1
    set_status(KEYS[1], KEYS[2], seq, '')
    redis.call('HDEL', KEYS[3], tostring(seq))
    seqs[tostring(seq)] = true
    reset = reset + 1
    local chunk = math.floor(seq / size)
    if not seen[chunk] then
      seen[chunk] = true
      chunks[#chunks + 1] = chunk
      redis.call('SETBIT', KEYS[5], chunk, 0)
      redis.call('SETBIT', KEYS[6], chunk, 1)
    end
  end
  i = string.find(data, pattern, i + 1)
end
if string.find(wanted, 'u', 1, true) then
  local claims = redis.call('HGETALL', KEYS[4])
  for i = 1, #claims, 2 do
    local v = claims[i + 1]
    local seq = string.match(v, '|([0-9]+)$')
    if seq and seqs[seq] then redis.call('HDEL', KEYS[4], claims[i]) end
  end
end
local out = {reset}
for _, c in ipairs(chunks) do out[#out + 1] = c end
return out

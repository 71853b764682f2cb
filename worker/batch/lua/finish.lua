-- KEYS: st n inflight detail. ARGV: seq, item_id, token ('' = drop any claim, '-' = keep the
-- claim: it is the evidence of an uncertain call), status char ('' = back
-- to pending), now, detail json ('' = none), sub_code ('' = none), called (1 if a provider
-- call was made: feeds the rate), rate window seconds, ttl.
-- The rate is kept as a count of calls (`calls`), the first and last call times, and a ring of
-- per-second counts over the window: field `w:<second mod window>` = "<second>:<count>".
-- Needs prelude.lua.
local seq = tonumber(ARGV[1])
local changed = set_status(KEYS[1], KEYS[2], seq, ARGV[4])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[6])
elseif ARGV[4] == 'd' or ARGV[4] == '' then
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if changed and ARGV[7] ~= '' then redis.call('HINCRBY', KEYS[2], 'sub:' .. ARGV[7], 1) end
local cur = redis.call('HGET', KEYS[3], ARGV[2])
if cur and (ARGV[3] == '' or string.sub(cur, 1, #ARGV[3] + 1) == ARGV[3] .. '|') then
  redis.call('HDEL', KEYS[3], ARGV[2])
end
local now = tonumber(ARGV[5])
if ARGV[8] == '1' then
  local window = tonumber(ARGV[9])
  local second = math.floor(now)
  local slot = 'w:' .. (second % window)
  local count = 1
  local ring = redis.call('HGET', KEYS[2], slot)
  if ring then
    local s, c = string.match(ring, '^(%d+):(%d+)$')
    s = tonumber(s)
    if s == second then count = tonumber(c) + 1 elseif s and s > second then count = 0 end
  end
  -- count 0: a late write (a worker's clock behind by a whole window) leaves the ring alone
  if count > 0 then redis.call('HSET', KEYS[2], slot, string.format('%d:%d', second, count)) end
  redis.call('HINCRBY', KEYS[2], 'calls', 1)
  local last = tonumber(redis.call('HGET', KEYS[2], 'last_at') or '0')
  if now > last then redis.call('HSET', KEYS[2], 'last_at', ARGV[5]) end
  local first = tonumber(redis.call('HGET', KEYS[2], 'first_at') or '0')
  if first == 0 or now < first then redis.call('HSET', KEYS[2], 'first_at', ARGV[5]) end
end
keep(tonumber(ARGV[10]), KEYS[1], KEYS[2], KEYS[4])
if changed then return 1 end
return 0

-- Shared helpers of the ledger scripts. Every script gets the same KEYS:
--   1 record hash   2 realtime due index   3 archival due index   4 deletion index
--   5 counts hash   6 sweep lock (fencing token)
--   7 guessed index (zset: entries only a callback vouches for, by expiry)
-- Record fields: s state, p product code, b MerchantBizId, src source, c_at created,
-- done_at completed, del_at provider deletion, due next due time, q index (rt|ar),
-- n attempts, r reason, t:<state> time of each transition.
local FINAL = {archived = true, abandoned = true, expired = true}
local INDEX = {rt = KEYS[2], ar = KEYS[3]}

local function set_state(from, to, now)
  if from then redis.call('HINCRBY', KEYS[5], from, -1) end
  redis.call('HINCRBY', KEYS[5], to, 1)
  redis.call('HSET', KEYS[1], 's', to, 't:' .. to, now)
end

-- Put the transaction in index q ('rt' or 'ar') at time due, out of the other one.
local function schedule(tid, q, due)
  for name, key in pairs(INDEX) do
    if name ~= q then redis.call('ZREM', key, tid) end
  end
  redis.call('ZADD', INDEX[q], due, tid)
  redis.call('HSET', KEYS[1], 'due', due, 'q', q)
end

local function unschedule(tid)
  redis.call('ZREM', KEYS[2], tid)
  redis.call('ZREM', KEYS[3], tid)
  redis.call('ZREM', KEYS[4], tid)
  redis.call('HDEL', KEYS[1], 'due', 'q')
end

-- KEYS: meta st owner inflight n detail. ARGV: seq, item_id, owner value ("seq:row"),
-- duplicate detail json, ttl.
-- Returns {verdict, extra}: stop/<state>, skip/<status>, dup/<owner>, claimed/<claim>, go.
-- Needs prelude.lua.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then return {'stop', state or 'missing'} end
local seq = tonumber(ARGV[1])
local s = status_at(KEYS[2], seq)
if s ~= '' then return {'skip', s} end
local owner = redis.call('HGET', KEYS[3], ARGV[2])
if owner and owner ~= ARGV[3] then
  set_status(KEYS[2], KEYS[5], seq, 'x')
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[4])
  keep(tonumber(ARGV[5]), KEYS[2], KEYS[5], KEYS[6])
  return {'dup', owner}
end
if not owner then
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  keep(tonumber(ARGV[5]), KEYS[3])
end
local claim = redis.call('HGET', KEYS[4], ARGV[2])
if claim then return {'claimed', claim} end
return {'go', ''}

-- KEYS: meta. ARGV: op (pause | resume | cancel | complete | reopen), now, reason, by.
-- Returns {ok (1/0), state after}.
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'missing'} end
local op = ARGV[1]
local to = nil
if op == 'pause' and state == 'running' then to = 'paused'
elseif op == 'resume' and state == 'paused' then to = 'running'
elseif op == 'cancel' and (state == 'running' or state == 'paused') then to = 'cancelled'
elseif op == 'complete' and state == 'running' then to = 'completed'
elseif op == 'reopen' and (state == 'completed' or state == 'running') then to = 'running'
end
if not to then return {0, state} end
redis.call('HSET', KEYS[1], 'state', to, 'updated_at', ARGV[2])
if to == 'paused' then
  redis.call('HSET', KEYS[1], 'pause_reason', ARGV[3], 'paused_by', ARGV[4])
elseif to == 'running' then
  redis.call('HDEL', KEYS[1], 'pause_reason', 'paused_by')
end
if to == 'completed' then redis.call('HSET', KEYS[1], 'completed_at', ARGV[2]) end
if op == 'reopen' then redis.call('HDEL', KEYS[1], 'completed_at', 'results_key', 'exported_at') end
return {1, to}

"""Lua scripts of the batch store. Every script touches the keys of one batch only.

All keys of a batch share the hash tag ``{batch:<id>}``; see ``worker.batch.store`` for the
layout. Item statuses are one byte per row in the string ``st`` (NUL = pending) with their
totals in the hash ``n``; ``_PRELUDE`` keeps the two in step, so a counter can never drift
from the statuses however often a step is repeated after a crash.
"""

from __future__ import annotations

_PRELUDE = """
local NAMES = {d='done', f='failed', i='invalid', u='uncertain', x='duplicate'}
local function status_at(st, seq)
  local s = redis.call('GETRANGE', st, seq, seq)
  if s == '' or s == '\\0' then return '' end
  return s
end
local function set_status(st, n, seq, new)
  local old = status_at(st, seq)
  if old == new then return false end
  if old ~= '' then redis.call('HINCRBY', n, NAMES[old], -1) end
  if new == '' then
    redis.call('SETRANGE', st, seq, '\\0')
  else
    redis.call('SETRANGE', st, seq, new)
    redis.call('HINCRBY', n, NAMES[new], 1)
  end
  return true
end
-- A key a script may create gets the batch's TTL right away, so no key outlives an
-- abandoned batch even if the process that created it died the next moment.
local function keep(ttl, ...)
  for _, key in ipairs({...}) do
    if redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, ttl) end
  end
end
local function lease_live(cl, chunk, now)
  local cur = redis.call('HGET', cl, chunk)
  if not cur then return false end
  local sep = string.find(cur, '|', 1, true)
  return tonumber(string.sub(cur, sep + 1)) > now
end
"""

# KEYS: meta chunks st n detail cq. ARGV: chunk_no, blob, rows, next_submitted, now, ttl,
# then pairs (seq, detail json) of rows found invalid at submission.
# Idempotent: a chunk already counted (a resumed submission) is not written twice.
SUBMIT_CHUNK = (
    _PRELUDE
    + """
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
"""
)

# KEYS: meta st owner inflight n detail. ARGV: seq, item_id, owner value ("seq:row"),
# duplicate detail json, ttl.
# Returns {verdict, extra}: stop/<state>, skip/<status>, dup/<owner>, claimed/<claim>, go.
BEGIN = (
    _PRELUDE
    + """
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
"""
)

# Taken in the HTTP transport right before the request leaves, so that the claim exists
# exactly when the provider may see the call. KEYS: meta st inflight.
# ARGV: seq, item_id, token, now, ttl. Returns 'ok' or why the call must not be made.
CLAIM = (
    _PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then return 'state:' .. (state or 'missing') end
local s = status_at(KEYS[2], tonumber(ARGV[1]))
if s ~= '' then return 'status:' .. s end
local cur = redis.call('HGET', KEYS[3], ARGV[2])
if cur then
  if string.sub(cur, 1, #ARGV[3] + 1) == ARGV[3] .. '|' then return 'ok' end
  return 'claimed'
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[1])
keep(tonumber(ARGV[5]), KEYS[3])
return 'ok'
"""
)

# KEYS: st n inflight detail. ARGV: seq, item_id, token ('' = drop any claim, '-' = keep the
# claim: it is the evidence of an uncertain call), status char ('' = back
# to pending), now, detail json ('' = none), sub_code ('' = none), called (1 if a provider
# call was made: feeds the rate), tau seconds, ttl.
FINISH = (
    _PRELUDE
    + """
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
  local tau = tonumber(ARGV[9])
  local rate = tonumber(redis.call('HGET', KEYS[2], 'rate') or '0')
  local t = tonumber(redis.call('HGET', KEYS[2], 'rate_t') or ARGV[5])
  local dt = now - t
  if dt < 0 then dt = 0 end
  rate = rate * math.exp(-dt / tau) + 1 / tau
  redis.call('HSET', KEYS[2], 'rate', tostring(rate), 'rate_t', ARGV[5], 'last_at', ARGV[5])
  redis.call('HSETNX', KEYS[2], 'first_at', ARGV[5])
end
keep(tonumber(ARGV[10]), KEYS[1], KEYS[2], KEYS[4])
if changed then return 1 end
return 0
"""
)

# KEYS: cl cq cdone. ARGV: chunk, token, now, lease seconds, key ttl.
# Takes (or renews) a chunk's lease and clears its "queued" bit: the message is being
# worked on. Returns 1 taken, 0 held by another live lease, -1 the chunk is complete.
CHUNK_ACQUIRE = (
    _PRELUDE
    + """
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
"""
)

# KEYS: cl cq cdone meta. ARGV: chunk, token, mode (done | requeue | stop), ttl.
# Returns {chunks done, total chunks or -1 while submitting, state}.
CHUNK_RELEASE = (
    _PRELUDE
    + """
local chunk = tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2] + 1) == ARGV[2] .. '|' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if ARGV[3] == 'done' then redis.call('SETBIT', KEYS[3], chunk, 1) end
if ARGV[3] == 'requeue' then redis.call('SETBIT', KEYS[2], chunk, 1) end
keep(tonumber(ARGV[4]), KEYS[2], KEYS[3])
local total = -1
if redis.call('HGET', KEYS[4], 'submitted') == '1' then
  total = tonumber(redis.call('HGET', KEYS[4], 'total_chunks') or '0')
end
return {redis.call('BITCOUNT', KEYS[3]), total, redis.call('HGET', KEYS[4], 'state') or ''}
"""
)

# KEYS: meta cdone cq cl. ARGV: now, force (1: ignore the queued bits, after a submitter
# crash). Marks and returns the chunks that are incomplete, not waiting in the broker and
# not leased by a live worker: those a dead worker or a pause left behind.
REQUEUE = (
    _PRELUDE
    + """
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
"""
)

# KEYS: meta. ARGV: op (pause | resume | cancel | complete | reopen), now, reason, by.
# Returns {ok (1/0), state after}.
TRANSITION = """
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
"""

# KEYS: st n detail inflight cdone cq meta. ARGV: statuses to reset (e.g. 'f' or 'fu'),
# chunk size. Puts failed (and uncertain) rows back to pending, drops their claims, and
# returns {rows reset, chunk numbers to enqueue...}; the chunks are marked queued.
RESET = (
    _PRELUDE
    + """
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
"""
)

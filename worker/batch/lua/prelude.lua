-- Shared helpers of the batch scripts, prepended to every script that needs them.
-- Item statuses are one byte per row in the string `st` (NUL = pending) with their totals in
-- the hash `n`; set_status keeps the two in step.
local NAMES = {d='done', f='failed', i='invalid', u='uncertain', x='duplicate'}
local function status_at(st, seq)
  local s = redis.call('GETRANGE', st, seq, seq)
  if s == '' or s == '\0' then return '' end
  return s
end
local function set_status(st, n, seq, new)
  local old = status_at(st, seq)
  if old == new then return false end
  if old ~= '' then redis.call('HINCRBY', n, NAMES[old], -1) end
  if new == '' then
    redis.call('SETRANGE', st, seq, '\0')
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

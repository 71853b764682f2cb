-- KEYS: lease. ARGV: token. 1 if deleted, 0 if the token no longer holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

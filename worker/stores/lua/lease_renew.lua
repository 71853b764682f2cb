-- KEYS: lease. ARGV: token, ttl ms. 1 if extended, 0 if the token no longer holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

#!lua flags=allow-oom
-- Claim or renew a broadcasting instance slot (a heartbeat lease on an instance id).
-- Runs when Redis is full (flag allow-oom): it renews a small lease key, so broadcasting
-- consumers keep running.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:bslot:<group>:<instance id>   value = the holder's token, PX = ttl
-- ARGV[1]  the caller's token
-- ARGV[2]  ttl in ms
--
-- Returns: 1 when the caller holds the slot now (claimed, or renewed), 0 when another live
-- process holds it.
local slot, token, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
if not ttl or ttl <= 0 then return redis.error_reply('ERR rmq: claim_slot needs a ttl in ms') end
if redis.call('SET', slot, token, 'NX', 'PX', ttl) then return 1 end
if redis.call('GET', slot) == token then
  redis.call('PEXPIRE', slot, ttl)
  return 1
end
return 0

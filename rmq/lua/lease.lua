#!lua flags=allow-oom
-- Acquire, renew or release an orderly consumption lease on one queue (owner-checked).
-- Runs when Redis is full (flag allow-oom): it renews or releases a small lease key, so
-- orderly consumers keep their queues.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:lease:<group>   the lease: value = the holder's token, PX = ttl
-- ARGV[1]  "acquire", "renew" or "release"
-- ARGV[2]  the caller's token (unique per holder and acquisition)
-- ARGV[3]  ttl in ms (acquire and renew)
--
-- acquire succeeds when the lease is free (or already the caller's); renew only when the caller
-- still holds it; release deletes it only when the caller holds it. A holder that lost its lease
-- (paused past the ttl, partitioned) can neither renew nor release someone else's.
-- Returns: 1 on success, 0 otherwise.
local lease, op, token = KEYS[1], ARGV[1], ARGV[2]
if op == 'release' then
  if redis.call('GET', lease) == token then
    redis.call('DEL', lease)
    return 1
  end
  return 0
end
local ttl = tonumber(ARGV[3])
if not ttl or ttl <= 0 then return redis.error_reply('ERR rmq: lease needs a ttl in ms') end
if op == 'acquire' then
  if redis.call('SET', lease, token, 'NX', 'PX', ttl) then return 1 end
  if redis.call('GET', lease) == token then
    redis.call('PEXPIRE', lease, ttl)
    return 1
  end
  return 0
elseif op == 'renew' then
  if redis.call('GET', lease) == token then
    redis.call('PEXPIRE', lease, ttl)
    return 1
  end
  return 0
end
return redis.error_reply('ERR rmq: lease op is acquire, renew or release')

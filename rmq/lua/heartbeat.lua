#!lua flags=allow-oom
-- Record a group member as alive, forget members silent for longer than the ttl, list the rest.
-- Runs when Redis is full (flag allow-oom): it renews a member's heartbeat, so orderly
-- members keep their queues.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:members:<topic>:<group>   zset: member id -> last heartbeat (server ms)
--          (or <ns>:consumers: the apps whose consumers are live, by app name)
-- ARGV[1]  member id ("" to only list)
-- ARGV[2]  ttl in ms: members without a heartbeat for this long are gone
-- ARGV[3]  "leave" to remove the member instead of recording it (optional)
--
-- Uses the server's clock, so members on hosts with skewed clocks agree on who is alive.
-- Returns: the live member ids, sorted.
local members, me, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
if not ttl or ttl <= 0 then return redis.error_reply('ERR rmq: heartbeat needs a ttl in ms') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', members, '-inf', '(' .. (now - ttl))
if me ~= '' then
  if ARGV[3] == 'leave' then
    redis.call('ZREM', members, me)
  else
    redis.call('ZADD', members, now, me)
    redis.call('PEXPIRE', members, ttl * 10)
  end
end
local live = redis.call('ZRANGE', members, 0, -1)
table.sort(live)
return live

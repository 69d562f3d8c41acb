#!lua
-- Move due members of a schedule (delayed messages, or one group's retries) into a stream.
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  schedule zset: <ns>:{<topic>:<q>}:delay or :retry:<group>  (member -> due ms)
-- KEYS[2]  payload hash: the zset's key + ":p"                        (member -> packed fields)
-- KEYS[3]  target stream: <ns>:{<topic>:<q>}:s or :rs:<group>
-- ARGV[1]  the most members to move in this call (bounded, so Redis is never blocked for long)
--
-- Any number of promoters may run at once: each member is moved by exactly one call.
-- Returns: {moved, wait} where wait is the ms until the next member is due (0 when more are due
-- now, -1 when the schedule is empty).
local zset, payload, stream = KEYS[1], KEYS[2], KEYS[3]
local limit = tonumber(ARGV[1])
if not limit or limit < 1 then return redis.error_reply('ERR rmq: promote needs a limit >= 1') end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)
local moved = 0
if #due > 0 then
  local packed = redis.call('HMGET', payload, unpack(due))
  for i = 1, #due do
    if packed[i] then
      redis.call('XADD', stream, '*', unpack(cmsgpack.unpack(packed[i])))
      moved = moved + 1
    end
  end
  redis.call('HDEL', payload, unpack(due))
  redis.call('ZREM', zset, unpack(due))
end
local wait = -1
local next = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
if next[2] then
  wait = tonumber(next[2]) - now
  if wait < 0 then wait = 0 end
end
return {moved, wait}

#!lua flags=allow-oom
-- Receive up to N messages for a pull (simple) consumer, hiding them for an invisible duration.
-- Runs when Redis is full (flag allow-oom): it reads as XREADGROUP does (which Redis allows
-- when full), so pull consumers keep draining.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s            the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:inv:<group>  zset: entry id -> invisible-until (epoch ms)
-- ARGV[1]  group
-- ARGV[2]  consumer name
-- ARGV[3]  maximum number of messages
-- ARGV[4]  invisible duration in ms
--
-- First takes back entries whose invisible time has passed (their receiver did not ack in
-- time), then reads new entries. Every returned entry gets invisible-until = now + duration.
-- Returns: {lost, last_id, id1, fields1, deliveries1, id2, ...}: lost = pending entries whose
-- payload was trimmed (acknowledged here), last_id = the newest entry id of the stream or "".
local stream, inv, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local limit, dur = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {0, ''}
local got = 0
local due = redis.call('ZRANGEBYSCORE', inv, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if not p[1] then
    redis.call('ZREM', inv, id)
  else
    local c = redis.call('XCLAIM', stream, group, me, 0, id)
    if c[1] and c[1][2] then
      redis.call('ZADD', inv, now + dur, id)
      got = got + 1
      out[#out + 1] = id
      out[#out + 1] = c[1][2]
      out[#out + 1] = p[1][4] + 1
    else
      redis.call('XACK', stream, group, id)
      redis.call('ZREM', inv, id)
      out[1] = out[1] + 1
    end
  end
end
if got < limit then
  local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', limit - got, 'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      redis.call('ZADD', inv, now + dur, e[1])
      out[#out + 1] = e[1]
      out[#out + 1] = e[2]
      out[#out + 1] = 1
    end
  end
end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
if last[1] then out[2] = last[1][1] end
return out

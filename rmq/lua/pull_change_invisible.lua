#!lua flags=allow-oom
-- Change how long a received entry stays invisible (RocketMQ's changeInvisibleDuration).
-- Runs when Redis is full (flag allow-oom): it only moves an invisible-until time.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s            the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:inv:<group>  zset of invisible-until times
-- ARGV[1]  group
-- ARGV[2]  consumer name (must still own the entry)
-- ARGV[3]  entry id
-- ARGV[4]  new invisible duration in ms, counted from now (0 = visible again at once)
--
-- Returns: 1 when changed; 0 when the entry is no longer pending for this consumer (it was
-- acknowledged, or its invisible time ran out and another consumer received it).
local stream, inv, group, me, id = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
local p = redis.call('XPENDING', stream, group, id, id, 1)
if not p[1] or p[1][2] ~= me then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', inv, now + tonumber(ARGV[4]), id)
return 1

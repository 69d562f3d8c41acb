#!lua flags=allow-oom
-- Acknowledge entries received by a pull consumer.
-- Runs when Redis is full (flag allow-oom): it only acknowledges.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s            the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:inv:<group>  zset of invisible-until times
-- ARGV[1]  group
-- ARGV[2..] entry ids
--
-- Returns: how many of the ids were still pending (0 for an id acknowledged before).
local stream, inv, group = KEYS[1], KEYS[2], ARGV[1]
local ids = {}
for j = 2, #ARGV do ids[#ids + 1] = ARGV[j] end
if #ids == 0 then return 0 end
redis.call('ZREM', inv, unpack(ids))
return redis.call('XACK', stream, group, unpack(ids))

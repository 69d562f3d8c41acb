#!lua flags=allow-oom
-- Acknowledge entries of an orderly queue, only while the caller holds the queue's lease.
-- Runs when Redis is full (flag allow-oom): it only acknowledges.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s               the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:lease:<group>   the lease
-- ARGV[1]  group
-- ARGV[2]  the caller's lease token
-- ARGV[3..] entry ids
--
-- Returns: the number of entries acknowledged, or -1 when fenced (the lease is gone or held by
-- another member: nothing is acknowledged, the new owner handles those entries).
local stream, lease, group, token = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if redis.call('GET', lease) ~= token then return -1 end
if #ARGV < 3 then return 0 end
local ids = {}
for j = 3, #ARGV do ids[#ids + 1] = ARGV[j] end
return redis.call('XACK', stream, group, unpack(ids))

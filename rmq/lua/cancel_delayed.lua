#!lua flags=allow-oom
-- Cancel a delayed message that is not delivered yet (RocketMQ 5's recall).
-- Runs when Redis is full (flag allow-oom): it only removes.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:delay     zset: msg_id -> due ms
-- KEYS[2]  <ns>:{<topic>:<q>}:delay:p   hash: msg_id -> packed fields
-- ARGV[1]  msg_id
--
-- Returns: 1 when the message was waiting and is now gone, 0 when it was not waiting here
-- (already delivered, cancelled before, or never scheduled on this queue).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1

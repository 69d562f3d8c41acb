#!lua flags=allow-oom
-- Move a broadcasting instance's offset on one queue forward, only from the value it last wrote.
-- Runs when Redis is full (flag allow-oom): it moves a broadcasting offset forward
-- (overwrites a hash field).
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:bcast:<group>   hash: instance id -> last handled entry id
-- ARGV[1]  instance id
-- ARGV[2]  the offset this instance last read or wrote ("" when it had none)
-- ARGV[3]  the new offset
--
-- A compare-and-set: if another process took over the same instance id meanwhile (this one was
-- paused past its slot lease), the stored offset differs and nothing is written, so a stale
-- process can never move someone else's offset.
-- Returns: 1 when written, 0 when the stored offset was not the expected one.
local offsets, instance, expected, new = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('HGET', offsets, instance)
if (current or '') ~= expected then return 0 end
redis.call('HSET', offsets, instance, new)
return 1

#!lua flags=allow-oom
-- Delete one consumer of a group if it owns no pending entry (a worker leaving after its drain).
-- Runs when Redis is full (flag allow-oom): it only removes.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s    the queue stream (or a group's retry stream beside it)
-- ARGV[1]  group
-- ARGV[2]  consumer name
--
-- XGROUP DELCONSUMER drops the consumer's pending entries with it: the check and the delete are
-- one script, so an entry the consumer owns is never dropped.
-- Returns: 1 when the consumer was deleted; 0 when it owns pending entries, does not exist, or
-- the stream or the group is missing.
local stream, group, name = KEYS[1], ARGV[1], ARGV[2]
local ok, owned = pcall(redis.call, 'XPENDING', stream, group, '-', '+', 1, name)
if not ok or #owned > 0 then return 0 end
local found, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, group)
if not found then return 0 end
for _, c in ipairs(consumers) do
  for i = 1, #c, 2 do
    if c[i] == 'name' and c[i + 1] == name then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
      return 1
    end
  end
end
return 0

#!lua flags=allow-oom
-- Delete consumers of a group that own no pending entries and have been idle for a long time.
-- Runs when Redis is full (flag allow-oom): it only removes.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s    the queue stream
-- ARGV[1]  group
-- ARGV[2]  minimum idle time in ms
-- ARGV[3]  consumer name never to delete (the caller)
--
-- A consumer with pending entries is never deleted (XGROUP DELCONSUMER would drop its entries).
-- Returns: the number of consumers deleted.
local stream, group, min_idle, me = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, group)
if not ok then return 0 end
local n = 0
for _, c in ipairs(consumers) do
  local name, pending, idle = nil, 0, 0
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = c[i + 1]
    elseif c[i] == 'idle' then idle = c[i + 1] end
  end
  if name and name ~= me and pending == 0 and idle >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
    n = n + 1
  end
end
return n

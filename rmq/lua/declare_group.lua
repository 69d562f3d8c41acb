#!lua
-- Create a consumer group on a queue stream (and the stream) if it does not exist yet.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s    the queue stream
-- ARGV[1]  group name
-- ARGV[2]  start: "last" (only what arrives from now on), "first" (everything stored),
--          a time in epoch ms (everything stored at or after it), or "after:<entry id>"
--          (everything stored after that entry: a consumer re-creating a group that vanished,
--          from the last entry it saw, so nothing sent meanwhile is skipped)
--
-- Returns: 1 when the group was created, 0 when it already existed.
-- The group's entries-read counter is set so that XINFO GROUPS reports an exact lag (except for
-- "after:", where Redis works it out once the group catches up).
local stream, group, start = KEYS[1], ARGV[1], ARGV[2]
local after = string.match(start, '^after:(%d+%-%d+)$')
if start ~= 'last' and start ~= 'first' and not tonumber(start) and not after then
  return redis.error_reply('ERR rmq: start must be last, first, epoch ms or after:<entry id>')
end
if redis.call('EXISTS', stream) == 1 then
  local groups = redis.call('XINFO', 'GROUPS', stream)
  for _, g in ipairs(groups) do
    for i = 1, #g, 2 do
      if g[i] == 'name' and g[i + 1] == group then return 0 end
    end
  end
else
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM', 'ENTRIESREAD', '0')
  return 1
end
local info = redis.call('XINFO', 'STREAM', stream)
local last_id, added, length = '0-0', 0, 0
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'last-generated-id' then last_id = info[i + 1]
  elseif k == 'entries-added' then added = info[i + 1]
  elseif k == 'length' then length = info[i + 1] end
end
if after then
  redis.call('XGROUP', 'CREATE', stream, group, after)
elseif start == 'last' then
  redis.call('XGROUP', 'CREATE', stream, group, last_id, 'ENTRIESREAD', added)
elseif start == 'first' then
  redis.call('XGROUP', 'CREATE', stream, group, '0', 'ENTRIESREAD', added - length)
else
  local ms = tonumber(start)
  -- entries with an id below <ms>-0 are skipped
  local before = ms > 0 and (tostring(ms - 1) .. '-18446744073709551615') or '0'
  redis.call('XGROUP', 'CREATE', stream, group, before)
end
return 1

#!lua
-- Move a consumer group's position (last-delivered id) on one queue stream: reset its offset.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s    the queue stream
-- ARGV[1]  group
-- ARGV[2]  target: "first" (deliver everything stored), "last" (skip everything stored), or a
--          time in epoch ms (deliver what was stored at or after it; entry ids are ms timestamps)
-- ARGV[3]  entries counted at most to make the group's lag exact (bounds the script's run time)
--
-- The position never moves past the stream's last id: a time in the future means "last", so
-- messages sent later are never skipped. The group's entries-read counter is set whenever the
-- number of entries after the new position is known (always for first and last, for a time when
-- at most ARGV[3] entries follow it), so XINFO GROUPS reports an exact lag; otherwise Redis works
-- it out when the group catches up. Pending entries are left alone: they stay pending and are
-- still delivered again or claimed.
-- Returns: {new last-delivered id, entries-read set or -1 when left to Redis}.
local stream, group, target, limit = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local ms = tonumber(target)
if (target ~= 'first' and target ~= 'last' and not ms) or not limit then
  return redis.error_reply('ERR rmq: reset_offset takes a group, first|last|epoch ms and a limit')
end
if redis.call('EXISTS', stream) == 0 then
  return redis.error_reply('ERR rmq: no such queue stream')
end
local found = false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and g[i + 1] == group then found = true end
  end
end
if not found then return redis.error_reply('ERR rmq: no such consumer group') end

local function split(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), string.sub(id, dash + 1)
end
local function less(a, b)
  local am, aseq = split(a)
  local bm, bseq = split(b)
  if am ~= bm then return am < bm end
  if #aseq ~= #bseq then return #aseq < #bseq end
  return aseq < bseq
end

local info = redis.call('XINFO', 'STREAM', stream)
local last_id, added, length, first = '0-0', 0, 0, false
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'last-generated-id' then last_id = info[i + 1]
  elseif k == 'entries-added' then added = info[i + 1]
  elseif k == 'length' then length = info[i + 1]
  elseif k == 'first-entry' then first = info[i + 1] end
end

local position = '0-0'
if target == 'last' then
  position = last_id
elseif ms and ms > 0 then
  position = string.format('%d', ms - 1) .. '-18446744073709551615'
end
if less(last_id, position) then position = last_id end

local after = nil
if position == last_id or length == 0 then
  after = 0
elseif first and less(position, first[1]) then
  after = length
else
  local entries = redis.call('XRANGE', stream, '(' .. position, '+', 'COUNT', limit + 1)
  if #entries <= limit then after = #entries end
end
if after then
  redis.call('XGROUP', 'SETID', stream, group, position, 'ENTRIESREAD', added - after)
  return {position, added - after}
end
redis.call('XGROUP', 'SETID', stream, group, position)
return {position, -1}

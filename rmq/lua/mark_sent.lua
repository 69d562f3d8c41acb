#!lua
-- Record a producer session's chunk of large bodies that the same MULTI appends next with plain
-- XADDs (so the bodies never pass through Lua): its first msg_id and the server time before the
-- XADDs; a retry of the chunk (through `send`) finds it from that time.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:dd:<session>   the producer session's last chunk on this queue
-- ARGV[1]  dedup record ttl in ms (0 = keep no record)
-- ARGV[2]  the chunk's first msg_id
--
-- The record is "<msg_id> @<ms>": every entry the MULTI appends after this call has an id of at
-- least <ms>-0, and the chunk's entries are consecutive (a MULTI runs alone).
-- Returns: the time recorded, ms.
local record, ttl, first = KEYS[1], tonumber(ARGV[1]), ARGV[2]
if not ttl or not first or first == '' then
  return redis.error_reply('ERR rmq: mark_sent takes a ttl and a msg_id')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl > 0 then redis.call('SET', record, first .. ' @' .. now, 'PX', ttl) end
return now

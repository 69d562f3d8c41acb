#!lua flags=no-writes
-- Scan one bounded slice of a queue stream for entries with a given msg_id or key.
-- Read-only (flag no-writes): it also runs when Redis is full.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s    the queue stream
-- ARGV[1]  where to start: an entry id, "(<id>" (exclusive) or "-"
-- ARGV[2]  where to stop: an entry id or "+"
-- ARGV[3]  how many entries this call reads at most (bounds the time Redis is blocked)
-- ARGV[4]  what to match: "i" (the msg_id field equals ARGV[5]) or "k" (ARGV[5] is one of the
--          space-separated keys in field "k")
-- ARGV[5]  the msg_id or key
--
-- There is no key index: a query walks the stream, one slice per call, with the cursor returned.
-- Returns: {cursor, id, fields, id, fields, ...} for the matches in this slice; the cursor is the
-- ARGV[1] of the next call ("(<last id read>"), or "" when the range is exhausted.
local stream, start, stop = KEYS[1], ARGV[1], ARGV[2]
local limit, field, wanted = tonumber(ARGV[3]), ARGV[4], ARGV[5]
if not limit or limit < 1 or (field ~= 'i' and field ~= 'k') then
  return redis.error_reply('ERR rmq: find_entries takes a start, a stop, a limit >= 1 and i|k')
end
local entries = redis.call('XRANGE', stream, start, stop, 'COUNT', limit)
local out = {''}
if #entries == limit then out[1] = '(' .. entries[#entries][1] end
local padded = ' ' .. wanted .. ' '
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 1, #fields, 2 do
    if fields[j] == field then
      local value = fields[j + 1]
      if (field == 'i' and value == wanted)
        or (field == 'k' and string.find(' ' .. value .. ' ', padded, 1, true)) then
        out[#out + 1] = entry[1]
        out[#out + 1] = fields
      end
      break
    end
  end
end
return out

#!lua
-- Append one producer's chunk of messages to a queue stream, atomically, without duplicates.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s              the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:dd:<session>   the producer session's last chunk on this queue
-- ARGV[1]  dedup record ttl in ms (0 = keep no record)
-- ARGV[2]  "1" when this chunk is a retry of a round trip whose outcome is unknown, else "0"
-- ARGV[3..] 6 values per message: msg_id, tag, keys, properties, flags, body
--
-- A producer session sends one chunk per queue at a time and retries it before sending anything
-- else, so its last chunk is the only one a retry can be about. The record holds that chunk's
-- first msg_id and first entry id ("<msg_id> <entry id>"), or, for a chunk of large bodies
-- appended by a MULTI, the time before it ("<msg_id> @<ms>", see mark_sent.lua). A retry whose
-- first msg_id matches, and whose messages are found at that place in the stream (after at most
-- 1,000 entries of other producers in the time case), was stored before: nothing is appended.
-- Returns: one stream entry id per message, in order.
local stream, record = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[1])
if not ttl or (#ARGV - 2) % 6 ~= 0 or #ARGV < 8 then
  return redis.error_reply('ERR rmq: send takes a ttl, a retry flag and 6 values per message')
end
local count = (#ARGV - 2) / 6
local SCAN = 1000  -- entries of other producers looked past, after a mark_sent time
-- The chunk's entries from `stored` on, if they are ours (consecutive, msg_ids in order).
local function ours(stored, from)
  local ids = {}
  for k = from, #stored do
    local fields = stored[k][2]
    local n = k - from + 1
    if n > count or fields[1] ~= 'i' or fields[2] ~= ARGV[3 + (n - 1) * 6] then break end
    ids[n] = stored[k][1]
  end
  if #ids == count then return ids end
  return nil
end
if ARGV[2] == '1' then
  local previous = redis.call('GET', record)
  if previous then
    local space = string.find(previous, ' ', 1, true)
    if space and string.sub(previous, 1, space - 1) == ARGV[3] then
      local where = string.sub(previous, space + 1)
      if string.sub(where, 1, 1) == '@' then
        -- stored by a MULTI (mark_sent): from that time on, within the first entries
        local stored = redis.call('XRANGE', stream, string.sub(where, 2) .. '-0', '+', 'COUNT',
          count + SCAN)
        for k = 1, #stored do
          if stored[k][2][2] == ARGV[3] then
            local ids = ours(stored, k)
            if ids then return ids end
            break
          end
        end
      else
        local ids = ours(redis.call('XRANGE', stream, where, '+', 'COUNT', count), 1)
        if ids then return ids end
      end
    end
  end
end
local ids = {}
for j = 3, #ARGV, 6 do
  ids[#ids + 1] = redis.call('XADD', stream, '*', 'i', ARGV[j], 't', ARGV[j + 1], 'k', ARGV[j + 2],
    'p', ARGV[j + 3], 'c', ARGV[j + 4], 'd', ARGV[j + 5])
end
if ttl > 0 then redis.call('SET', record, ARGV[3] .. ' ' .. ids[1], 'PX', ttl) end
return ids

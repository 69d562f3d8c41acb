#!lua flags=no-writes
-- List the half (prepared, unresolved) messages of one queue by next check time, changing
-- nothing: what `rmq transaction list` reads. The payload is packed with cmsgpack, which only
-- Lua unpacks, hence a script.
-- Read-only (flag no-writes): it also runs when Redis is full.
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  <ns>:{<topic>:<q>}:half             zset: msg_id -> next check ms (every group), or
--          <ns>:{<topic>:<q>}:half:g:<group>   the same index of one producer group
-- KEYS[2]  <ns>:{<topic>:<q>}:half:p           hash: msg_id -> packed {group, checks, prepared
--                                               ms, delay kind, delay value, 12 stream fields}
-- ARGV[1]  producer group: list only its messages ("" for every group)
-- ARGV[2]  the most index members to read in this call (1..1000)
-- ARGV[3]  cursor: a next check ms ("" to start at the beginning)
-- ARGV[4]  cursor: a msg_id ("" for none); only members after the cursor in (next check ms,
--          msg_id) order are read, so a page starts after the last message of the previous one
--
-- A member whose payload is gone (removed by hand) or of another group is read but not listed,
-- so a call may list fewer messages than it read: call again from the cursor it returns.
-- Returns: {cursor ms, cursor msg_id, then 8 values per message: msg_id, next check ms, group,
-- checks, prepared ms, delay kind ("", "after" or "at"), delay value (ms or due epoch ms),
-- {the 12 stream fields}}. The cursor is the last member read, or false, false when the index
-- has nothing after it.
local index, payload = KEYS[1], KEYS[2]
local group, limit = ARGV[1], tonumber(ARGV[2])
local after_ms, after_id = ARGV[3], ARGV[4]
local from = tonumber(after_ms)
if not limit or limit < 1 or limit > 1000 or (after_ms ~= '' and not from) then
  return redis.error_reply('ERR rmq: half_list takes a group or "", a limit 1..1000, a cursor '
    .. 'ms or "" and a cursor msg_id or ""')
end

-- a <= b in byte order, as a sorted set orders members of equal score (Lua's own comparison
-- follows the server's locale)
local function not_after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end

local out = {false, false}
local read, offset, more = 0, 0, false
while true do
  local rows = redis.call('ZRANGEBYSCORE', index, from or '-inf', '+inf', 'WITHSCORES',
    'LIMIT', offset, limit)
  offset = offset + limit
  for i = 1, #rows, 2 do
    local msg_id, score = rows[i], tonumber(rows[i + 1])
    if not (from and score == from and not_after(msg_id, after_id)) then
      if read == limit then
        more = true
        break
      end
      read = read + 1
      out[1], out[2] = score, msg_id
      local packed = redis.call('HGET', payload, msg_id)
      local half = packed and cmsgpack.unpack(packed)
      if half and (group == '' or half[1] == group) then
        for _, v in ipairs({msg_id, score, half[1], half[2], half[3], half[4], half[5]}) do
          out[#out + 1] = v
        end
        out[#out + 1] = {unpack(half, 6, 17)}
      end
    end
  end
  if more or #rows < 2 * limit then break end
end
if not more then
  out[1], out[2] = false, false
end
return out

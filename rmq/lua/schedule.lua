#!lua
-- Store delayed messages of one producer chunk until they are due (RocketMQ timer messages).
-- luacheck: globals redis KEYS ARGV cmsgpack cjson
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s                the queue stream (for messages already due)
-- KEYS[2]  <ns>:{<topic>:<q>}:delay            zset: msg_id -> due ms
-- KEYS[3]  <ns>:{<topic>:<q>}:delay:p          hash: msg_id -> packed fields (cmsgpack)
-- KEYS[4]  <ns>:{<topic>:<q>}:dd:<session>:d   the producer session's last delayed chunk here
-- ARGV[1]  record ttl in ms (0 = keep no record)
-- ARGV[2]  "1" when this chunk is a retry of a round trip whose outcome is unknown, else "0"
-- ARGV[3]  wake channel, published (the message: KEYS[2]) when a message is due sooner than
--          anything scheduled
-- ARGV[4..] 8 values per message: "after" or "at", delay ms or due epoch ms, then msg_id, tag,
--           keys, properties, flags, body
--
-- A message whose due time has passed is appended to the stream at once. A retried chunk that
-- was stored before returns its first outcome (the record keeps it), so nothing is doubled.
-- Returns: a flat list, per message: the entry id (appended now) or false, and the due time ms.
local stream, zset, payload, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl = tonumber(ARGV[1])
if not ttl or (#ARGV - 3) % 8 ~= 0 or #ARGV < 11 then
  return redis.error_reply('ERR rmq: schedule takes a ttl, a retry flag, a channel and 8 values per message')
end
if ARGV[2] == '1' then
  local previous = redis.call('GET', record)
  if previous then
    local saved = cjson.decode(previous)
    if saved[1] == ARGV[6] then return saved[2] end
  end
end
for j = 4, #ARGV, 8 do
  if not tonumber(ARGV[j + 1]) or (ARGV[j] ~= 'after' and ARGV[j] ~= 'at') then
    return redis.error_reply('ERR rmq: a delay is "after" <ms> or "at" <epoch ms>')
  end
end
local t = redis.call('TIME')
-- rounded up, so that "after" delays are never short (promote compares with a rounded-down now)
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
local soonest = first[2] and tonumber(first[2]) or nil
local out = {}
local wake = false
for j = 4, #ARGV, 8 do
  local value = tonumber(ARGV[j + 1])
  local due = ARGV[j] == 'after' and now + value or value
  local msg_id = ARGV[j + 2]
  local fields = {'i', msg_id, 't', ARGV[j + 3], 'k', ARGV[j + 4], 'p', ARGV[j + 5],
    'c', ARGV[j + 6], 'd', ARGV[j + 7]}
  if due <= now then
    out[#out + 1] = redis.call('XADD', stream, '*', unpack(fields))
  else
    out[#out + 1] = false
    redis.call('HSET', payload, msg_id, cmsgpack.pack(fields))
    redis.call('ZADD', zset, due, msg_id)
    if not soonest or due < soonest then
      soonest = due
      wake = true
    end
  end
  out[#out + 1] = due
end
if ttl > 0 then redis.call('SET', record, cjson.encode({ARGV[6], out}), 'PX', ttl) end
if wake then redis.call('PUBLISH', ARGV[3], KEYS[2]) end
return out

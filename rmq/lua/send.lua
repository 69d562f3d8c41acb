#!lua
-- Append messages to one queue stream, with a producer dedup window.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s           the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:dd:<b>      dedup hash of the current time bucket
-- KEYS[3]  <ns>:{<topic>:<q>}:dd:<b-1>    dedup hash of the previous time bucket
-- ARGV[1]  dedup bucket ttl in ms (0 = no dedup recording)
-- ARGV[2..] 7 values per message: check, msg_id, tag, keys, properties, flags, body
--           check = "1" looks the msg_id up first (a retried send); "0" only records it
--
-- Returns: one stream entry id per message, in order. A message whose msg_id is found in the
-- dedup window is not appended again; its first entry id is returned.
local stream, cur, prev = KEYS[1], KEYS[2], KEYS[3]
local ttl = tonumber(ARGV[1])
if not ttl or (#ARGV - 1) % 7 ~= 0 then
  return redis.error_reply('ERR rmq: send takes a ttl and 7 values per message')
end
local out = {}
local n = 0
for j = 2, #ARGV, 7 do
  local msg_id = ARGV[j + 1]
  local id = false
  if ARGV[j] == '1' then
    id = redis.call('HGET', cur, msg_id)
    if not id then id = redis.call('HGET', prev, msg_id) end
  end
  if not id then
    id = redis.call('XADD', stream, '*', 'i', msg_id, 't', ARGV[j + 2], 'k', ARGV[j + 3],
      'p', ARGV[j + 4], 'c', ARGV[j + 5], 'd', ARGV[j + 6])
    if ttl > 0 then redis.call('HSET', cur, msg_id, id) end
  end
  n = n + 1
  out[n] = id
end
if ttl > 0 and n > 0 then redis.call('PEXPIRE', cur, ttl) end
return out

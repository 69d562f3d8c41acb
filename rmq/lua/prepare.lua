#!lua
-- Store a producer group's half (prepared) messages on one queue, invisible to every consumer
-- until they are committed (RocketMQ's transactional half messages).
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  <ns>:{<topic>:<q>}:half             zset: msg_id -> next check ms (every group)
-- KEYS[2]  <ns>:{<topic>:<q>}:half:g:<group>   zset: msg_id -> next check ms (this group)
-- KEYS[3]  <ns>:{<topic>:<q>}:half:p           hash: msg_id -> packed {group, checks, prepared
--                                               ms, delay kind, delay value, 12 stream fields}
-- KEYS[4]  <ns>:{<topic>:<q>}:half:d           hash: msg_id -> outcome of a resolved message
-- ARGV[1]  producer group
-- ARGV[2]  check immunity in ms: no check-back asks about a message younger than this
-- ARGV[3..] 8 values per message: delay kind ("" none, "after" or "at"), delay ms or due epoch
--           ms ("0" when none), then msg_id, tag, keys, properties, flags, body
--
-- The msg_id is the dedup key: a prepare retried after its reply was lost finds the message
-- prepared already and stores nothing twice, and a message resolved already (committed, rolled
-- back or discarded) is never prepared again.
-- Returns: per message, 1 (prepared now), 0 (prepared before: a retry), or the outcome it was
-- resolved with: "committed" or "rolled_back".
local all, mine, payload, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, immunity = ARGV[1], tonumber(ARGV[2])
if group == '' or not immunity or immunity < 0 or (#ARGV - 2) % 8 ~= 0 or #ARGV < 10 then
  return redis.error_reply('ERR rmq: prepare takes a group, an immunity ms and 8 values per message')
end
for j = 3, #ARGV, 8 do
  local kind = ARGV[j]
  if not tonumber(ARGV[j + 1]) or (kind ~= '' and kind ~= 'after' and kind ~= 'at') then
    return redis.error_reply('ERR rmq: a delay kind is "", "after" or "at", with a number')
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for j = 3, #ARGV, 8 do
  local msg_id = ARGV[j + 2]
  local outcome = redis.call('HGET', done, msg_id)
  if outcome then
    out[#out + 1] = string.sub(outcome, 1, 1) == 'c' and 'committed' or 'rolled_back'
  elseif redis.call('HEXISTS', payload, msg_id) == 1 then
    out[#out + 1] = 0
  else
    redis.call('HSET', payload, msg_id, cmsgpack.pack({group, 0, now, ARGV[j], ARGV[j + 1],
      'i', msg_id, 't', ARGV[j + 3], 'k', ARGV[j + 4], 'p', ARGV[j + 5], 'c', ARGV[j + 6],
      'd', ARGV[j + 7]}))
    redis.call('ZADD', all, now + immunity, msg_id)
    redis.call('ZADD', mine, now + immunity, msg_id)
    out[#out + 1] = 1
  end
end
return out

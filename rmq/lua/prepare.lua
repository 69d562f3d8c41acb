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
-- variadic calls in parts of at most 4,000 values (Lua's unpack has a limit of a few thousand)
local function in_parts(command, key, values)
  for i = 1, #values, 4000 do
    redis.call(command, key, unpack(values, i, math.min(i + 3999, #values)))
  end
end
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 4000 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 3999, #fields)))
    for k = 1, #part do out[i + k - 1] = part[k] end
  end
  return out
end
local ids = {}
for j = 3, #ARGV, 8 do ids[#ids + 1] = ARGV[j + 2] end
local outcomes = hmget(done, ids)
local stored = hmget(payload, ids)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out, halves, checks, seen = {}, {}, {}, {}
for i, msg_id in ipairs(ids) do
  local j = 3 + (i - 1) * 8
  local outcome = outcomes[i]
  if outcome then
    out[i] = string.sub(outcome, 1, 1) == 'c' and 'committed' or 'rolled_back'
  elseif stored[i] or seen[msg_id] then
    out[i] = 0
  else
    seen[msg_id] = true
    halves[#halves + 1] = msg_id
    halves[#halves + 1] = cmsgpack.pack({group, 0, now, ARGV[j], ARGV[j + 1],
      'i', msg_id, 't', ARGV[j + 3], 'k', ARGV[j + 4], 'p', ARGV[j + 5], 'c', ARGV[j + 6],
      'd', ARGV[j + 7]})
    checks[#checks + 1] = now + immunity
    checks[#checks + 1] = msg_id
    out[i] = 1
  end
end
-- one variadic call per key (not one per message): most of a prepare's cost was the calls
if #halves > 0 then
  in_parts('HSET', payload, halves)
  in_parts('ZADD', all, checks)
  in_parts('ZADD', mine, checks)
end
return out

#!lua flags=allow-oom
-- Roll back half messages of one transaction on one queue: they are discarded, never delivered.
-- Runs when Redis is full (flag allow-oom): it removes half messages (recording a short outcome).
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  <ns>:{<topic>:<q>}:half             zset: msg_id -> next check ms (every group)
-- KEYS[2]  <ns>:{<topic>:<q>}:half:g:<group>   zset: msg_id -> next check ms (this group)
-- KEYS[3]  <ns>:{<topic>:<q>}:half:p           hash: msg_id -> packed half message
-- KEYS[4]  <ns>:{<topic>:<q>}:half:d           hash: msg_id -> outcome of a resolved message
-- KEYS[5]  <ns>:{<topic>:<q>}:half:dx          zset: msg_id -> when its outcome is forgotten
-- ARGV[1]  producer group
-- ARGV[2]  how long an outcome is remembered, ms (so a repeated commit or rollback is answered)
-- ARGV[3..] msg_ids
--
-- Idempotent: rolling back twice is fine. Nothing changes when any message was committed
-- ("committed") or belongs to another group. An unknown msg_id is recorded as rolled back all
-- the same, so a prepare of it that arrives late is refused, and reported.
-- Returns: {"ok", rolled back now, unknown msg_id, ...}; {"committed", msg_id};
-- {"wrong_group", msg_id, group}.
local all, mine, payload, done, expiry = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, ttl = ARGV[1], tonumber(ARGV[2])
if group == '' or not ttl or ttl <= 0 or #ARGV < 3 then
  return redis.error_reply('ERR rmq: rollback takes a group, a ttl ms and msg_ids')
end
local pending, unknown = {}, {}
for j = 3, #ARGV do
  local msg_id = ARGV[j]
  local packed = redis.call('HGET', payload, msg_id)
  if packed then
    local half = cmsgpack.unpack(packed)
    if half[1] ~= group then return {'wrong_group', msg_id, half[1]} end
    pending[#pending + 1] = msg_id
  else
    local outcome = redis.call('HGET', done, msg_id)
    if outcome and string.sub(outcome, 1, 1) == 'c' then return {'committed', msg_id} end
    if not outcome then unknown[#unknown + 1] = msg_id end
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', done, unpack(old))
  redis.call('ZREMRANGEBYRANK', expiry, 0, #old - 1)
end
for _, msg_id in ipairs(pending) do
  redis.call('HDEL', payload, msg_id)
  redis.call('ZREM', all, msg_id)
  redis.call('ZREM', mine, msg_id)
end
for j = 3, #ARGV do
  local msg_id = ARGV[j]
  if redis.call('HSETNX', done, msg_id, 'r') == 1 then
    redis.call('ZADD', expiry, now + ttl, msg_id)
  end
end
local out = {'ok', #pending}
for _, msg_id in ipairs(unknown) do out[#out + 1] = msg_id end
return out

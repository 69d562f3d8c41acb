#!lua
-- Commit half messages of one transaction on one queue, all or none: each is appended to the
-- queue (or, when sent with a delay, scheduled: its delay starts now) and stops being half.
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s                the queue stream
-- KEYS[2]  <ns>:{<topic>:<q>}:delay            zset: delayed messages, msg_id -> due ms
-- KEYS[3]  <ns>:{<topic>:<q>}:delay:p          hash: msg_id -> packed stream fields
-- KEYS[4]  <ns>:{<topic>:<q>}:half             zset: msg_id -> next check ms (every group)
-- KEYS[5]  <ns>:{<topic>:<q>}:half:g:<group>   zset: msg_id -> next check ms (this group)
-- KEYS[6]  <ns>:{<topic>:<q>}:half:p           hash: msg_id -> packed half message
-- KEYS[7]  <ns>:{<topic>:<q>}:half:d           hash: msg_id -> outcome of a resolved message
-- KEYS[8]  <ns>:{<topic>:<q>}:half:dx          zset: msg_id -> when its outcome is forgotten
-- ARGV[1]  producer group
-- ARGV[2]  how long an outcome is remembered, ms (so a repeated commit or rollback is answered)
-- ARGV[3]  wake channel, published (the message: KEYS[2]) when a delayed message is due sooner
--          than anything scheduled
-- ARGV[4..] msg_ids
--
-- Idempotent: a message committed before (or named twice in one call) answers with its first
-- result. Nothing changes when any message was rolled back ("rolled_back"), is unknown
-- ("not_found": never prepared here, or resolved so long ago that its outcome is forgotten) or
-- belongs to another group.
-- Returns: {"ok", entry id or false, due ms or 0, ...} (a pair per message: false when delayed);
-- {"rolled_back", msg_id}; {"not_found", msg_id}; {"wrong_group", msg_id, group}.
local stream, zset, delayed = KEYS[1], KEYS[2], KEYS[3]
local all, mine, payload, done, expiry = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local group, ttl, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if group == '' or not ttl or ttl <= 0 or #ARGV < 4 then
  return redis.error_reply('ERR rmq: commit takes a group, a ttl ms, a channel and msg_ids')
end
local halves, previous, first_at = {}, {}, {}
for j = 4, #ARGV do
  local msg_id = ARGV[j]
  local packed = not first_at[msg_id] and redis.call('HGET', payload, msg_id)
  if first_at[msg_id] then
    -- the same msg_id again in this call: answered like its first place, never appended twice
  elseif packed then
    local half = cmsgpack.unpack(packed)
    if half[1] ~= group then return {'wrong_group', msg_id, half[1]} end
    halves[j] = half
  else
    local outcome = redis.call('HGET', done, msg_id)
    if not outcome then return {'not_found', msg_id} end
    if string.sub(outcome, 1, 1) ~= 'c' then return {'rolled_back', msg_id} end
    previous[j] = outcome
  end
  first_at[msg_id] = first_at[msg_id] or j
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- rounded up, so that "after" delays are never short (promote compares with a rounded-down now)
local now_up = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', done, unpack(old))
  redis.call('ZREMRANGEBYRANK', expiry, 0, #old - 1)
end
local soonest, wake = nil, false
local out = {'ok'}
local answers = {}
for j = 4, #ARGV do
  local msg_id = ARGV[j]
  local half = halves[j]
  local first = first_at[msg_id]
  if first ~= j then
    out[#out + 1] = answers[first][1]
    out[#out + 1] = answers[first][2]
  elseif half then
    local fields = {unpack(half, 6, 17)}
    local kind, value = half[4], tonumber(half[5])
    local entry, due = false, 0
    if kind == 'after' then due = now_up + value elseif kind == 'at' then due = value end
    if due <= now then
      entry = redis.call('XADD', stream, '*', unpack(fields))
    else
      if not wake and not soonest then
        local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
        soonest = first[2] and tonumber(first[2]) or nil
      end
      redis.call('HSET', delayed, msg_id, cmsgpack.pack(fields))
      redis.call('ZADD', zset, due, msg_id)
      if not soonest or due < soonest then
        soonest = due
        wake = true
      end
    end
    redis.call('HDEL', payload, msg_id)
    redis.call('ZREM', all, msg_id)
    redis.call('ZREM', mine, msg_id)
    redis.call('HSET', done, msg_id, 'c ' .. (entry or '') .. ' ' .. due)
    redis.call('ZADD', expiry, now + ttl, msg_id)
    answers[j] = {entry, due}
    out[#out + 1] = entry
    out[#out + 1] = due
  else
    local entry, due = string.match(previous[j], '^c (%S*) (%d+)$')
    answers[j] = {entry ~= '' and entry or false, tonumber(due)}
    out[#out + 1] = answers[j][1]
    out[#out + 1] = answers[j][2]
  end
end
if wake then redis.call('PUBLISH', channel, KEYS[2]) end
return out

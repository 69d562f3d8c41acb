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
for j = 4, #ARGV do ids[#ids + 1] = ARGV[j] end
local packs = hmget(payload, ids)
local unknown = {}
for i, msg_id in ipairs(ids) do
  if not packs[i] then unknown[#unknown + 1] = msg_id end
end
local outcomes = {}
if #unknown > 0 then
  local found = hmget(done, unknown)
  for i, msg_id in ipairs(unknown) do outcomes[msg_id] = found[i] end
end
local halves, previous, first_at = {}, {}, {}
for i, msg_id in ipairs(ids) do
  local packed = packs[i]
  if first_at[msg_id] then
    -- the same msg_id again in this call: answered like its first place, never appended twice
  elseif packed then
    local half = cmsgpack.unpack(packed)
    if half[1] ~= group then return {'wrong_group', msg_id, half[1]} end
    halves[i] = half
  else
    local outcome = outcomes[msg_id]
    if not outcome then return {'not_found', msg_id} end
    if string.sub(outcome, 1, 1) ~= 'c' then return {'rolled_back', msg_id} end
    previous[i] = outcome
  end
  first_at[msg_id] = first_at[msg_id] or i
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
-- what every committed message changes, written with one variadic call per key at the end
local resolved, outcomes_set, forget = {}, {}, {}
for i, msg_id in ipairs(ids) do
  local half = halves[i]
  local first = first_at[msg_id]
  if first ~= i then
    out[#out + 1] = answers[first][1]
    out[#out + 1] = answers[first][2]
  elseif half then
    local kind, value = half[4], tonumber(half[5])
    local entry, due = false, 0
    if kind == 'after' then due = now_up + value elseif kind == 'at' then due = value end
    if due <= now then
      entry = redis.call('XADD', stream, '*', unpack(half, 6, 17))
    else
      if not wake and not soonest then
        local head = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
        soonest = head[2] and tonumber(head[2]) or nil
      end
      redis.call('HSET', delayed, msg_id, cmsgpack.pack({unpack(half, 6, 17)}))
      redis.call('ZADD', zset, due, msg_id)
      if not soonest or due < soonest then
        soonest = due
        wake = true
      end
    end
    resolved[#resolved + 1] = msg_id
    outcomes_set[#outcomes_set + 1] = msg_id
    outcomes_set[#outcomes_set + 1] = 'c ' .. (entry or '') .. ' ' .. due
    forget[#forget + 1] = now + ttl
    forget[#forget + 1] = msg_id
    answers[i] = {entry, due}
    out[#out + 1] = entry
    out[#out + 1] = due
  else
    local entry, due = string.match(previous[i], '^c (%S*) (%d+)$')
    answers[i] = {entry ~= '' and entry or false, tonumber(due)}
    out[#out + 1] = answers[i][1]
    out[#out + 1] = answers[i][2]
  end
end
if #resolved > 0 then
  in_parts('HDEL', payload, resolved)
  in_parts('ZREM', all, resolved)
  in_parts('ZREM', mine, resolved)
  in_parts('HSET', done, outcomes_set)
  in_parts('ZADD', expiry, forget)
end
if wake then redis.call('PUBLISH', channel, KEYS[2]) end
return out

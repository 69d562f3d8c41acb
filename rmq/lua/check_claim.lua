#!lua
-- Claim a producer group's due half messages on one queue for a check-back: bump each one's
-- check count and push its next check one interval ahead, so no other checker asks about it
-- meanwhile. One checked `max checks` times already is rolled back and recorded instead.
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  <ns>:{<topic>:<q>}:half             zset: msg_id -> next check ms (every group)
-- KEYS[2]  <ns>:{<topic>:<q>}:half:g:<group>   zset: msg_id -> next check ms (this group)
-- KEYS[3]  <ns>:{<topic>:<q>}:half:p           hash: msg_id -> packed half message
-- KEYS[4]  <ns>:{<topic>:<q>}:half:d           hash: msg_id -> outcome of a resolved message
-- KEYS[5]  <ns>:{<topic>:<q>}:half:dx          zset: msg_id -> when its outcome is forgotten
-- KEYS[6]  <ns>:{<topic>:<q>}:half:x:<group>   stream: the group's discarded transactions
-- ARGV[1]  producer group
-- ARGV[2]  check interval ms: the claim holds this long, then the message is due again
-- ARGV[3]  max checks: a message due again after this many checks is discarded
-- ARGV[4]  the most messages to claim or discard in this call
-- ARGV[5]  how long an outcome is remembered, ms
--
-- Any number of checkers may call this at once: a due message is claimed by exactly one call
-- per interval. Checkers poll, so this also forgets outcomes older than their ttl (a bounded
-- number per call, as commit and rollback do). A discarded message is rolled back (its outcome is "r") and appended to the
-- audit stream with its fields and group, checks, prepared_ms and reason "max_checks".
-- Returns: {wait, {discarded msg_id, ...}, msg_id, checks, {the 12 stream fields}, ...} where
-- wait is the ms until this group's next message here is due (0 when more are due now, -1 when
-- the group has none here) and checks counts this check (1 on the first).
local all, mine, payload, done, expiry, audit = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local group, interval = ARGV[1], tonumber(ARGV[2])
local max_checks, limit, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if group == '' or not interval or interval <= 0 or not max_checks or max_checks < 1
    or not limit or limit < 1 or not ttl or ttl <= 0 then
  return redis.error_reply('ERR rmq: check_claim takes a group, an interval ms > 0, max checks '
    .. '>= 1, a limit >= 1 and a ttl ms > 0')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', done, unpack(old))
  redis.call('ZREMRANGEBYRANK', expiry, 0, #old - 1)
end
local due = redis.call('ZRANGEBYSCORE', mine, '-inf', now, 'LIMIT', 0, limit)
local discarded = {}
local out = {0, discarded}
for _, msg_id in ipairs(due) do
  local packed = redis.call('HGET', payload, msg_id)
  local half = packed and cmsgpack.unpack(packed)
  if not half then
    redis.call('ZREM', all, msg_id)  -- no payload (removed by hand): nothing left to check
    redis.call('ZREM', mine, msg_id)
  elseif half[1] ~= group then
    redis.call('ZREM', mine, msg_id)  -- another group's message in this index: not ours
  elseif half[2] >= max_checks then
    local record = {unpack(half, 6, 17)}
    for _, v in ipairs({'group', group, 'checks', half[2], 'prepared_ms', half[3],
        'reason', 'max_checks'}) do
      record[#record + 1] = v
    end
    redis.call('XADD', audit, '*', unpack(record))
    redis.call('HDEL', payload, msg_id)
    redis.call('ZREM', all, msg_id)
    redis.call('ZREM', mine, msg_id)
    redis.call('HSET', done, msg_id, 'r')
    redis.call('ZADD', expiry, now + ttl, msg_id)
    discarded[#discarded + 1] = msg_id
  else
    half[2] = half[2] + 1
    redis.call('HSET', payload, msg_id, cmsgpack.pack(half))
    redis.call('ZADD', all, now + interval, msg_id)
    redis.call('ZADD', mine, now + interval, msg_id)
    out[#out + 1] = msg_id
    out[#out + 1] = half[2]
    out[#out + 1] = {unpack(half, 6, 17)}
  end
end
if #due >= limit then
  out[1] = 0
else
  local next = redis.call('ZRANGE', mine, 0, 0, 'WITHSCORES')
  out[1] = next[2] and math.max(0, tonumber(next[2]) - now) or -1
end
return out

#!lua
-- Acknowledge failed deliveries and schedule each for a retry after its backoff (RocketMQ's
-- send-back to %RETRY%<group>), atomically per entry.
-- luacheck: globals redis KEYS ARGV cmsgpack
--
-- KEYS[1]  the stream the entries were delivered from: <ns>:{<topic>:<q>}:s or :rs:<group>
-- KEYS[2]  <ns>:{<topic>:<q>}:retry:<group>     zset: msg_id -> due ms
-- KEYS[3]  <ns>:{<topic>:<q>}:retry:<group>:p   hash: msg_id -> packed fields
-- ARGV[1]  group
-- ARGV[2]  consumer name: only entries this consumer still owns are retried
-- ARGV[3]  wake channel, published (the message: KEYS[2]) when a retry is due sooner than
--          the ones already waiting
-- ARGV[4..] 2 values per entry: entry id, delay in ms
--
-- The retry copy keeps the original fields and msg_id, with r = retries so far (+1), o = the
-- entry id of the first delivery in the queue stream, f = the first failure time (ms).
-- Returns: one status per entry: 1 scheduled, 0 not pending for this consumer (acknowledged or
-- claimed by another: nothing done), -1 its payload was trimmed (acknowledged, nothing to retry).
local source, zset, payload = KEYS[1], KEYS[2], KEYS[3]
local group, me, channel = ARGV[1], ARGV[2], ARGV[3]
if (#ARGV - 3) % 2 ~= 0 then
  return redis.error_reply('ERR rmq: retry takes group, consumer, channel and id/delay pairs')
end
for j = 4, #ARGV, 2 do
  if not tonumber(ARGV[j + 1]) then return redis.error_reply('ERR rmq: delay must be ms') end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.ceil(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
local soonest = first[2] and tonumber(first[2]) or nil
local wake = false
local out = {}
for j = 4, #ARGV, 2 do
  local id, delay = ARGV[j], tonumber(ARGV[j + 1])
  local p = redis.call('XPENDING', source, group, id, id, 1)
  if not p[1] or p[1][2] ~= me then
    out[#out + 1] = 0
  else
    local e = redis.call('XRANGE', source, id, id)
    if not e[1] then
      redis.call('XACK', source, group, id)
      out[#out + 1] = -1
    else
      local old = {}
      local orig = e[1][2]
      for k = 1, #orig, 2 do old[orig[k]] = orig[k + 1] end
      local msg_id = old['i'] or id
      local fields = {'i', msg_id, 't', old['t'] or '', 'k', old['k'] or '', 'p', old['p'] or '',
        'c', old['c'] or '0', 'd', old['d'] or '', 'r', (tonumber(old['r']) or 0) + 1,
        'o', old['o'] or id, 'f', old['f'] or now}
      local due = now + delay
      redis.call('HSET', payload, msg_id, cmsgpack.pack(fields))
      redis.call('ZADD', zset, due, msg_id)
      redis.call('XACK', source, group, id)
      if not soonest or due < soonest then
        soonest = due
        wake = true
      end
      out[#out + 1] = 1
    end
  end
end
if wake then redis.call('PUBLISH', channel, zset) end
return out

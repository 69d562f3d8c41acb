#!lua
-- Move one delivered entry to the group's dead-letter stream: acknowledge it and append a copy.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s             the stream the entry was delivered from
-- KEYS[2]  <ns>:{<topic>:<q>}:dlq:<group>   the dead-letter stream
-- KEYS[3]  optional: <ns>:{<topic>:<q>}:lease:<group>, the orderly lease that must be held
-- ARGV[1]  group
-- ARGV[2]  entry id
-- ARGV[3..] metadata field/value pairs (reason, error, topic, queue, ...); their names never
--           start with "o:". With the optional third key, the first of these values is instead
--           the lease token the caller holds, and the pairs follow it.
--
-- The original fields are copied from the entry itself, each prefixed with "o:", so even an entry
-- written by another client is kept exactly. A trimmed entry is recorded with "lost" = 1.
-- Returns: the dead-letter entry id; false when the entry was no longer pending (someone else
-- acknowledged or dead-lettered it first: nothing is written twice); -1 when fenced (that lease
-- is not held with that token: nothing is written).
local stream, dlq, group, id, lease = KEYS[1], KEYS[2], ARGV[1], ARGV[2], KEYS[3]
local fields = {}
for j = 3, #ARGV do
  if not (lease and j == 3) then fields[#fields + 1] = ARGV[j] end
end
if #fields % 2 ~= 0 then
  return redis.error_reply('ERR rmq: metadata must be field/value pairs')
end
if lease and redis.call('GET', lease) ~= ARGV[3] then return -1 end
local p = redis.call('XPENDING', stream, group, id, id, 1)
if not p[1] then return false end
local e = redis.call('XRANGE', stream, id, id)
if e[1] then
  local orig = e[1][2]
  for j = 1, #orig, 2 do
    fields[#fields + 1] = 'o:' .. orig[j]
    fields[#fields + 1] = orig[j + 1]
  end
else
  fields[#fields + 1] = 'lost'
  fields[#fields + 1] = '1'
end
local dead_id = redis.call('XADD', dlq, '*', unpack(fields))
redis.call('XACK', stream, group, id)
return dead_id

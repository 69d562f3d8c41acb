#!lua
-- Move one delivered entry to the group's dead-letter stream: append a copy, acknowledge it.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s             the stream the entry was delivered from
-- KEYS[2]  <ns>:{<topic>:<q>}:dlq:<group>   the dead-letter stream
-- KEYS[3]  optional: <ns>:{<topic>:<q>}:lease:<group>, the orderly lease that must be held
-- ARGV[1]  group
-- ARGV[2]  entry id
-- ARGV[3]  how: "ack" (the entry is pending in the group: acknowledge it), "copy" (a
--          broadcasting instance read it without a group: only copy it), or, with KEYS[3], the
--          lease token the caller holds (fenced, then as "ack")
-- ARGV[4..] metadata field/value pairs (reason, error, topic, queue, ...); their names never
--           start with "o:"
--
-- The original fields are copied from the entry itself, each prefixed with "o:", so even an entry
-- written by another client is kept exactly. A trimmed entry is recorded with "lost" = 1.
-- Returns: the dead-letter entry id; false when the entry was no longer pending (someone else
-- acknowledged or dead-lettered it first: nothing is written twice); -1 when fenced (that lease
-- is not held with that token: nothing is written).
local stream, dlq, lease = KEYS[1], KEYS[2], KEYS[3]
local group, id, how = ARGV[1], ARGV[2], ARGV[3]
if (#ARGV - 3) % 2 ~= 0 then
  return redis.error_reply('ERR rmq: metadata must be field/value pairs')
end
if lease then
  if redis.call('GET', lease) ~= how then return -1 end
elseif how ~= 'ack' and how ~= 'copy' then
  return redis.error_reply('ERR rmq: how must be ack or copy without a lease')
end
if how ~= 'copy' then
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if not p[1] then return false end
end
local fields = {}
for j = 4, #ARGV do fields[#fields + 1] = ARGV[j] end
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
if how ~= 'copy' then redis.call('XACK', stream, group, id) end
return dead_id

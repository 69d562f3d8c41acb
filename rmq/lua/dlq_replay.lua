#!lua
-- Move one dead letter back for consumption: to the group's retry stream (only that group sees
-- it) or to the queue stream (every group of the topic sees it), and remove it from the DLQ.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:dlq:<group>   the dead-letter stream
-- KEYS[2]  the target: <ns>:{<topic>:<q>}:rs:<group> or <ns>:{<topic>:<q>}:s
-- ARGV[1]  dead-letter entry id
-- ARGV[2]  "group" (keep the origin, reset the retry count) or "topic" (a plain copy)
--
-- One atomic step per message: a crash mid-replay neither loses nor doubles a message.
-- Returns: the new entry id; false when the dead letter no longer exists (replayed or purged
-- already); -1 when it cannot be replayed because its payload was lost before dead-lettering.
local dlq, target, id, mode = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if mode ~= 'group' and mode ~= 'topic' then
  return redis.error_reply('ERR rmq: replay mode is group or topic')
end
local e = redis.call('XRANGE', dlq, id, id)
if not e[1] then return false end
local fields, original = e[1][2], {}
local lost, origin, has_origin = false, nil, false
for k = 1, #fields, 2 do
  local name = fields[k]
  if string.sub(name, 1, 2) == 'o:' then
    local field = string.sub(name, 3)
    local keep = true
    if field == 'r' or field == 'f' then keep = false end
    if field == 'o' and mode == 'topic' then keep = false end
    if keep then
      original[#original + 1] = field
      original[#original + 1] = fields[k + 1]
      if field == 'o' then has_origin = true end
    end
  elseif name == 'lost' then
    lost = true
  elseif name == 'offset' then
    origin = fields[k + 1]
  end
end
if lost or #original == 0 then return -1 end
if mode == 'group' and not has_origin and origin then
  original[#original + 1] = 'o'
  original[#original + 1] = origin
end
local new_id = redis.call('XADD', target, '*', unpack(original))
redis.call('XDEL', dlq, id)
return new_id

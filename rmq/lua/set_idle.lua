#!lua flags=allow-oom
-- Reset (or set) the idle time of pending entries that this consumer still owns.
-- Runs when Redis is full (flag allow-oom): it only resets idle times (XCLAIM, which Redis
-- allows when full).
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]  <ns>:{<topic>:<q>}:s    the queue stream
-- ARGV[1]  group
-- ARGV[2]  consumer name (the owner)
-- ARGV[3]  idle time to set, in ms: 0 keeps a long-running delivery from being claimed by others;
--          the visibility timeout hands an unstarted entry to other consumers at their next claim
-- ARGV[4..] entry ids
--
-- Returns: the ids that are no longer pending for this consumer (acked, claimed by another, or
-- deleted/trimmed: those leave the pending list here).
-- The delivery counter is not changed.
local stream, group, me, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for j = 4, #ARGV do
  local id = ARGV[j]
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if p[1] and p[1][2] == me then
    -- an entry deleted while pending is dropped from the PEL by XCLAIM and not returned
    local claimed = redis.call('XCLAIM', stream, group, me, 0, id, 'IDLE', idle, 'JUSTID')
    if not claimed[1] then lost[#lost + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return lost

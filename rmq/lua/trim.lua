#!lua flags=allow-oom
-- Retention: trim one queue's stream and its groups' retry streams, never removing an entry a
-- group has not acknowledged (undelivered, or pending in a group's PEL) unless a hard cap is set.
-- Runs when Redis is full (flag allow-oom): it only removes.
-- luacheck: globals redis KEYS ARGV
--
-- KEYS[1]    <ns>:{<topic>:<q>}:s      the queue stream
-- KEYS[2..]  two keys per group i = 1..n (the groups of ARGV[7..], in order):
--            KEYS[2i]   <ns>:{<topic>:<q>}:rs:<group i>     group i's retry stream
--            KEYS[2i+1] <ns>:{<topic>:<q>}:bcast:<group i>  group i's broadcasting offsets
-- ARGV[1]  retention ms: entries younger than this are kept (0 = only unacknowledged ones)
-- ARGV[2]  hard cap: the most entries a stream keeps (0 = no cap)
-- ARGV[3]  hard cap: the oldest entry a stream keeps, as an age in ms (0 = no cap)
-- ARGV[4]  budget: the most entries removed per stream and step in one call (>= 1)
-- ARGV[5]  1 = dry run (count what would go, remove nothing), 0 = trim
-- ARGV[6]  the most entries to count as "kept" (0 = do not count)
-- ARGV[7..] the n group names (the topic's groups set), in the order of KEYS
--
-- The bound of a stream is the smallest of: now - retention; for each consumer group of the
-- stream (XINFO GROUPS), its first pending entry and the entry after its last delivered one; for
-- the queue stream, the entry after each broadcasting instance's offset. Entries below the bound
-- go with XTRIM MINID: first `~ LIMIT budget` (whole nodes, cheap), then exactly (at most one
-- node left below the bound) unless the budget stopped the first step (then more = 1). A retry
-- stream without a consumer group is not trimmed by retention (its group reads it "first").
-- Hard caps then remove the oldest entries beyond max length / max age whatever their state
-- (read in slices to tell which were unacknowledged; at most `budget`, then more = 1).
--
-- Returns: one row per stream (the queue stream first, then each group's retry stream):
--   {removed, removed_unacked, kept, bound, held_by, more}
-- removed_unacked: removed by a hard cap while some group had not acknowledged them;
-- kept: entries older than the retention kept because a group had not acknowledged them (or an
-- entry before them), counted up to ARGV[6]; bound: the MINID used ("" = none);
-- held_by: "retention", "group <name>", "broadcast <group>", "cap" or "" (nothing to do);
-- more: 1 when the budget stopped this call before the bound (call again).
local retention, max_len, max_age = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, dry, count_kept = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local names = {}
for j = 7, #ARGV do names[#names + 1] = ARGV[j] end
local n = #names
if not (retention and max_len and max_age and budget and count_kept) or budget < 1
    or #KEYS ~= 1 + 2 * n then
  return redis.error_reply('ERR rmq: trim takes 6 numbers and a group name per key pair')
end

local MAXSEQ = '18446744073709551615'

local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end

-- -1, 0, 1 as a < b, a == b, a > b (ids compared as decimal strings: no precision loss)
local function cmp(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  if #am ~= #bm then return #am < #bm and -1 or 1 end
  if am ~= bm then return am < bm and -1 or 1 end
  if #as ~= #bs then return #as < #bs and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end

-- The smallest id after `id` (or `id` itself when its sequence is too big to add to exactly:
-- that keeps one entry more, never one less).
local function succ(id)
  local ms, seq = split(id)
  if seq == MAXSEQ then return string.format('%.0f', tonumber(ms) + 1) .. '-0' end
  if #seq < 14 then return ms .. '-' .. string.format('%.0f', tonumber(seq) + 1) end
  return id
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The first id of millisecond `ms` ("0-1" for 0 and before: 0-0 is no entry's id).
local function id_at(ms)
  if ms <= 0 then return '0-1' end
  return string.format('%.0f', ms) .. '-0'
end
-- entries below this are older than the retention (entry ids are ms timestamps)
local cutoff = id_at(now - retention)

-- Every consumer group of `stream`: {name, bound (first unacknowledged), next undelivered, pending}
local function groups_of(stream)
  local out = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local row = {}
    for i = 1, #g, 2 do row[g[i]] = g[i + 1] end
    local next = succ(row['last-delivered-id'])
    local bound = next
    if tonumber(row['pending']) > 0 then
      local summary = redis.call('XPENDING', stream, row['name'])
      if summary[2] and cmp(summary[2], bound) < 0 then bound = summary[2] end
    end
    out[#out + 1] = {row['name'], bound, next, tonumber(row['pending'])}
  end
  return out
end

-- Every pending id of `group` on `stream` from `first` to `last` (in pages).
local function pending_ids(stream, group, first, last, page, into)
  local from = first
  while true do
    local rows = redis.call('XPENDING', stream, group, from, last, page)
    for _, p in ipairs(rows) do into[p[1]] = true end
    if #rows < page then return end
    from = '(' .. rows[#rows][1]
  end
end

-- Trim `stream` below its bound, then to the hard caps. `offsets` = {{group, last id}, ...} of
-- broadcasting instances (queue stream only); `keep_ungrouped`: no trim without a group.
local function trim(stream, offsets, keep_ungrouped)
  local row = {0, 0, 0, '', '', 0}
  if redis.call('EXISTS', stream) == 0 then return row end
  local groups = groups_of(stream)
  local bound, held_by, unread = cutoff, 'retention', nil
  for _, g in ipairs(groups) do
    if cmp(g[2], bound) < 0 then bound, held_by = g[2], 'group ' .. g[1] end
    if not unread or cmp(g[3], unread) < 0 then unread = g[3] end
  end
  for _, o in ipairs(offsets) do
    local next = succ(o[2])
    if cmp(next, bound) < 0 then bound, held_by = next, 'broadcast ' .. o[1] end
    if not unread or cmp(next, unread) < 0 then unread = next end
  end
  if keep_ungrouped and #groups == 0 then bound, held_by = nil, '' end

  local removed, more, head = 0, 0, '-'
  if bound then
    row[4], row[5], head = bound, held_by, bound
    if dry then
      local below = redis.call('XRANGE', stream, '-', '(' .. bound, 'COUNT', budget + 1)
      removed = math.min(#below, budget)
      if #below > budget then more = 1 end
    else
      removed = redis.call('XTRIM', stream, 'MINID', '~', bound, 'LIMIT', budget)
      if removed * 2 < budget then
        -- not stopped by the budget: what is left below the bound is in the first node only
        removed = removed + redis.call('XTRIM', stream, 'MINID', bound)
      else
        more = 1
      end
    end
  end

  local unacked = 0
  if more == 0 and (max_len > 0 or max_age > 0) then
    local need = 0
    if max_len > 0 then
      local length = redis.call('XLEN', stream)
      if dry then length = length - removed end
      need = math.max(0, length - max_len)
    end
    local too_old = max_age > 0 and id_at(now - max_age) or nil
    local cut, next_id, from = {}, nil, head
    while true do
      local slice = redis.call('XRANGE', stream, from, '+', 'COUNT', 100)
      if #slice == 0 then break end
      for _, e in ipairs(slice) do
        if #cut < need or (too_old and cmp(e[1], too_old) < 0) then
          if #cut >= budget then more = 1; next_id = e[1]; break end
          cut[#cut + 1] = e[1]
        else
          next_id = e[1]
          break
        end
      end
      if next_id then break end
      from = '(' .. slice[#slice][1]
    end
    if #cut > 0 then
      local pending = {}
      for _, g in ipairs(groups) do
        if g[4] > 0 then pending_ids(stream, g[1], cut[1], cut[#cut], #cut + 1, pending) end
      end
      for _, id in ipairs(cut) do
        if pending[id] or (unread and cmp(id, unread) >= 0) then unacked = unacked + 1 end
      end
      if not dry then
        if next_id then
          redis.call('XTRIM', stream, 'MINID', next_id)
        else
          redis.call('XTRIM', stream, 'MAXLEN', 0)
        end
      end
      removed = removed + #cut
      head = next_id  -- nil: nothing left
      row[4], row[5] = next_id or succ(cut[#cut]), 'cap'
    end
  end

  if count_kept > 0 and bound and more == 0 and head and cmp(head, cutoff) < 0 then
    row[3] = #redis.call('XRANGE', stream, head, '(' .. cutoff, 'COUNT', count_kept)
  end
  row[1], row[2], row[6] = removed, unacked, more
  return row
end

local offsets = {}
for i = 1, n do
  for _, v in ipairs(redis.call('HVALS', KEYS[2 * i + 1])) do
    offsets[#offsets + 1] = {names[i], v}
  end
end
local out = {trim(KEYS[1], offsets, false)}
for i = 1, n do out[#out + 1] = trim(KEYS[2 * i], {}, true) end
return out

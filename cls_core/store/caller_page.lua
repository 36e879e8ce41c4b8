-- One page of the resources a caller may read, over every project they belong to, in creation
-- order, and the total (read-only). Indexes are per project; the page is their merge.
-- KEYS: first ARGV[1] sorted sets of project ids the caller belongs to (their own memberships,
-- then one per gateway group), then one index per project of ARGV[5..] (the projects the caller
-- expects to read: the personal one, or what an earlier call answered).
-- ARGV: membership key count, offset, limit, the project filter ("" for none), the caller's
-- personal project (which they always belong to), then the ids of the projects whose indexes
-- follow in KEYS.
-- Returns {"page", total, ids...} or, when the caller's projects are not those given,
-- {"projects", ids...}: call again with the indexes of those projects.
local nmember = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local filter = ARGV[4]

local given = {}
for i = 6, #ARGV do given[ARGV[i]] = nmember + (i - 5) end

-- The projects to read: every membership (and the personal project), or only the filtered one.
local wanted, seen = {}, {}
local function want(project)
  if not seen[project] and (filter == "" or project == filter) then
    seen[project] = true
    wanted[#wanted + 1] = project
  end
end
want(ARGV[5])
for i = 1, nmember do
  for _, project in ipairs(redis.call("ZRANGE", KEYS[i], 0, -1)) do want(project) end
end

local indexes = {}
for _, project in ipairs(wanted) do
  if not given[project] then
    local reply = {"projects"}
    for _, p in ipairs(wanted) do reply[#reply + 1] = p end
    return reply
  end
  indexes[#indexes + 1] = KEYS[given[project]]
end

local total = 0
for _, index in ipairs(indexes) do total = total + redis.call("ZCARD", index) end
local reply = {"page", total}
if limit <= 0 or offset >= total or #indexes == 0 then return reply end
if #indexes == 1 then
  for _, id in ipairs(redis.call("ZRANGE", indexes[1], offset, offset + limit - 1)) do
    reply[#reply + 1] = id
  end
  return reply
end

-- Several indexes: the merge in (score, id) order, as one sorted set would order it.
local function num(x) return string.format("%.17g", x) end
local function before(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end
local function take(entries, from, min, excl)
  -- entries of every index with a score at least ``min`` (above, when ``excl``), ``from``
  -- of them at most per index
  local range = min == nil and "-inf" or ((excl and "(" or "") .. num(min))
  for _, index in ipairs(indexes) do
    local flat = redis.call("ZRANGEBYSCORE", index, range, "+inf", "WITHSCORES", "LIMIT", 0, from)
    for i = 1, #flat, 2 do entries[#entries + 1] = {tonumber(flat[i + 1]), flat[i]} end
  end
end

local entries, skip = {}, offset
if offset + limit <= 1000 then
  take(entries, offset + limit, nil, false)
else
  -- Far into the list: find by bisection the lowest score at which the merged count passes
  -- the offset (each step one ZCOUNT per index, O(log n)), then read from that score on.
  local low, high = math.huge, -math.huge
  for _, index in ipairs(indexes) do
    local first = redis.call("ZRANGE", index, 0, 0, "WITHSCORES")
    local last = redis.call("ZRANGE", index, -1, -1, "WITHSCORES")
    if first[2] then
      low = math.min(low, tonumber(first[2]))
      high = math.max(high, tonumber(last[2]))
    end
  end
  local function count_to(score)
    local n = 0
    for _, index in ipairs(indexes) do n = n + redis.call("ZCOUNT", index, "-inf", num(score)) end
    return n
  end
  for _ = 1, 200 do
    if low >= high then break end
    local mid = low + (high - low) / 2
    if mid <= low or mid >= high then break end  -- adjacent doubles: nothing between them
    if count_to(mid) > offset then high = mid else low = mid end
  end
  -- The boundary: the lowest score with more than ``offset`` entries at or below it. ``low``
  -- when the bisection did not move; otherwise a score in (low, high], which is ``high`` only
  -- once they are adjacent doubles. The bisection may stop short of that (doubles are far
  -- denser near 0 than 200 halvings reach): step up through the scores present from ``low``.
  local boundary = low
  if count_to(low) <= offset then
    while true do
      local next_score = high
      for _, index in ipairs(indexes) do
        local first = redis.call(
          "ZRANGEBYSCORE", index, "(" .. num(low), num(high), "WITHSCORES", "LIMIT", 0, 1)
        if first[2] then next_score = math.min(next_score, tonumber(first[2])) end
      end
      if next_score >= high or count_to(next_score) > offset then
        boundary = next_score
        break
      end
      low = next_score
    end
  end
  local below = 0
  for _, index in ipairs(indexes) do
    below = below + redis.call("ZCOUNT", index, "-inf", "(" .. num(boundary))
  end
  skip = offset - below
  take(entries, skip + limit, boundary, false)
end
table.sort(entries, before)
for i = skip + 1, math.min(#entries, skip + limit) do reply[#reply + 1] = entries[i][2] end
return reply

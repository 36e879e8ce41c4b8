-- One page of an index, with the records it points to, in one round trip (read-only).
-- KEYS[1]: sorted set of ids ordered by creation. ARGV: offset, limit, record key prefix.
-- The records' keys come from the ids it reads, so they cannot be in KEYS (a standalone Redis
-- allows that; a Redis Cluster would not). Pages read as an MGET of stored views would fix it.
-- Returns {total, then one value per record}: its rendered view when that is current
-- (view_rv == rv), else {doc, rv, status} for the caller to assemble the view from.
-- (Joining the views here, into one string, made every page ~150 us slower in Redis.)
local total = redis.call("ZCARD", KEYS[1])
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local out = {total}
if limit <= 0 or offset >= total then return out end
local ids = redis.call("ZRANGE", KEYS[1], offset, offset + limit - 1)
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local found = redis.call("HMGET", key, "rv", "view_rv", "view")
  if found[1] then
    if found[2] == found[1] and found[3] then
      out[#out + 1] = found[3]
    else
      local parts = redis.call("HMGET", key, "doc", "status")
      out[#out + 1] = {parts[1], found[1], parts[2]}
    end
  end
end
return out

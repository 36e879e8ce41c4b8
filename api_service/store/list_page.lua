-- One page of an index, with the records it points to, in one round trip (read-only).
-- KEYS[1]: sorted set of ids ordered by creation. ARGV: offset, limit, record key prefix.
-- Returns {total, "joined", the page's views joined with ","} when every record's rendered
-- view is current (view_rv == rv): the usual case, one string for the API to send as it is;
-- otherwise {total, "items", then per record either its view or {doc, rv, status}} for the
-- caller to assemble the stale ones.
local total = redis.call("ZCARD", KEYS[1])
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit <= 0 or offset >= total then return {total, "joined", ""} end
local ids = redis.call("ZRANGE", KEYS[1], offset, offset + limit - 1)
local items = {}
local all_current = true
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local found = redis.call("HMGET", key, "rv", "view_rv", "view")
  if found[1] then
    if found[2] == found[1] and found[3] then
      items[#items + 1] = found[3]
    else
      all_current = false
      local parts = redis.call("HMGET", key, "doc", "status")
      items[#items + 1] = {parts[1], found[1], parts[2]}
    end
  end
end
if all_current then return {total, "joined", table.concat(items, ",")} end
return {total, "items", unpack(items)}

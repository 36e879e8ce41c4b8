-- One page of an index and the index's size, in one round trip (read-only).
-- KEYS[1]: sorted set of ids ordered by creation. ARGV: offset, limit.
-- Returns {total, then the ids of the page in index order}; the caller reads their views.
local total = redis.call("ZCARD", KEYS[1])
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit <= 0 or offset >= total then return {total} end
local page = redis.call("ZRANGE", KEYS[1], offset, offset + limit - 1)
table.insert(page, 1, total)
return page

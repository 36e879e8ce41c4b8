-- One page of an index, with the records it points to, in one round trip (read-only).
-- KEYS[1]: sorted set of ids ordered by creation. ARGV: offset, limit, record key prefix,
-- then the hash fields to return for each record.
-- Returns {total, id1, f1, f2, ..., id2, f1, f2, ...}.
local total = redis.call("ZCARD", KEYS[1])
local offset = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local out = {total}
if limit <= 0 or offset >= total then return out end
local ids = redis.call("ZRANGE", KEYS[1], offset, offset + limit - 1)
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
for _, id in ipairs(ids) do
  out[#out + 1] = id
  local values = redis.call("HMGET", ARGV[3] .. id, unpack(fields))
  for _, v in ipairs(values) do out[#out + 1] = v end
end
return out

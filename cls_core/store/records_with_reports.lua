-- Records' fields and their controllers' reports, several resources in one call (read-only: all
-- of them as of one moment).
-- KEYS: pairs, one per resource: its record hash, then its reports hash. ARGV: the record fields
-- to read.
-- Returns one reply per resource, in order: {values of the fields (false when absent),
-- {name1, report1, name2, report2, ...}}, or {"error", message} when its keys cannot be read (a
-- key of another type): the other resources are still read.
local replies = {}
for i = 1, #KEYS, 2 do
  local done, values = pcall(redis.call, "HMGET", KEYS[i], unpack(ARGV))
  local read, reports = pcall(redis.call, "HGETALL", KEYS[i + 1])
  if not done or not read then
    local err = done and reports or values
    if type(err) == "table" then err = err.err end  -- a string; a table in some versions
    replies[#replies + 1] = {"error", tostring(err)}
  else
    replies[#replies + 1] = {values, reports}
  end
end
return replies

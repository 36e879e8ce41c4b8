-- What a GET answers, read atomically in one round trip (read-only): a record's project and
-- resource_version, and its view; and, when asked, the caller's grants in the project the
-- caller expects the record to be in (the reply's project says whether it is).
-- KEYS[1]: the record hash, KEYS[2]: its view (a string); optionally KEYS[3]: the expected
-- project's members hash, KEYS[4]: its groups hash.
-- ARGV (with KEYS[3] and KEYS[4]): the caller's email, then their groups.
-- Returns {project, rv, view}, each nil when absent, and with the grants
-- {project, rv, view, the email's grant or nil, {each group's grant or false}}.
local found = redis.call("HMGET", KEYS[1], "project", "rv")
local reply = {found[1], found[2], redis.call("GET", KEYS[2])}
if #KEYS == 4 then
  reply[4] = redis.call("HGET", KEYS[3], ARGV[1])
  if #ARGV > 1 then
    reply[5] = redis.call("HMGET", KEYS[4], unpack(ARGV, 2))
  else
    reply[5] = {}
  end
end
return reply

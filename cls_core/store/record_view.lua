-- What a GET answers, read atomically in one round trip (read-only): a record's project and
-- resource_version, and its view.
-- KEYS[1]: the record hash, KEYS[2]: its view (a string).
-- Returns {project, rv, view}, each nil when absent.
local found = redis.call("HMGET", KEYS[1], "project", "rv")
return {found[1], found[2], redis.call("GET", KEYS[2])}

-- A record's fields and its controllers' reports, read atomically in one round trip (read-only).
-- KEYS[1]: the record hash, KEYS[2]: its reports hash. ARGV: the record fields to read.
-- Returns {values of the fields (false when absent), {name1, report1, name2, report2, ...}}.
return {redis.call("HMGET", KEYS[1], unpack(ARGV)), redis.call("HGETALL", KEYS[2])}

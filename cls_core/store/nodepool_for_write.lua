-- What a nodepool write decides on, read atomically in one round trip (read-only): the nodepool,
-- its controllers' reports and its cluster.
-- KEYS[1]: the nodepool hash, KEYS[2]: its reports hash.
-- ARGV[1]: the record key prefix of clusters; ARGV[2..]: the record fields to read (both records).
-- The cluster's key comes from the nodepool's cluster_id, so it cannot be in KEYS (a standalone
-- Redis allows that; a Redis Cluster would need a hash tag).
-- Returns {nodepool field values (false when absent), {name1, report1, ...}, cluster field values
-- or false}.
local fields = {unpack(ARGV, 2)}
local cluster = false
local cluster_id = redis.call("HGET", KEYS[1], "cluster_id")
if cluster_id then
    cluster = redis.call("HMGET", ARGV[1] .. cluster_id, unpack(fields))
end
return {redis.call("HMGET", KEYS[1], unpack(fields)), redis.call("HGETALL", KEYS[2]), cluster}

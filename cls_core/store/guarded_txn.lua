-- One atomic, guarded write: every check must hold, then every op runs. Nothing runs otherwise.
--
-- ARGV[1] is JSON: {"checks": [...], "ops": [...]}; "k" fields are 1-based indexes into KEYS.
-- Checks:
--   {"c": "hget",  "k": i, "f": field, "v": value|null, "fail": code}   HGET must equal v (null: absent)
--   {"c": "zcard", "k": i, "v": n, "fail": code}                        ZCARD must equal n
--   {"c": "zscore_le", "k": i, "m": member, "v": n, "fail": code}       member present, score <= n
--   {"c": "absent", "k": i, "fail": code}                               string key must not exist
--   {"c": "get",   "k": i, "v": value, "fail": code}                    string key must hold v
--   {"c": "zcard_lt", "k": i, "v": n, "fail": code}                     ZCARD must be below n
-- Ops: hset {kv}, hdel {f}, del, zadd {s, m}, zrem {m}, xadd {kv}, set {v, px?},
--      del_json_eq {f, v}: delete the string key if it holds a JSON object whose field f is v
-- Every key a check or an op touches is in KEYS (what Redis Cluster needs).
-- Returns {"ok"} or {"fail", code, actual value of the failed check}; an unknown check or op is
-- an error reply, before anything is written.
local plan = cjson.decode(ARGV[1])

local function absent(v) return v == nil or v == cjson.null end

local OPS = {hset = true, hdel = true, del = true, zadd = true, zrem = true, xadd = true,
             set = true, del_json_eq = true}
for _, op in ipairs(plan.ops or {}) do
  if not OPS[op.o] then return redis.error_reply("unknown op " .. tostring(op.o)) end
end

for _, chk in ipairs(plan.checks or {}) do
  local key = KEYS[chk.k]
  local actual
  local ok
  if chk.c == "hget" then
    actual = redis.call("HGET", key, chk.f)
    if absent(chk.v) then ok = (actual == false) else ok = (actual == chk.v) end
  elseif chk.c == "zcard" then
    actual = redis.call("ZCARD", key)
    ok = (actual == tonumber(chk.v))
  elseif chk.c == "zscore_le" then
    actual = redis.call("ZSCORE", key, chk.m)
    ok = (actual ~= false and tonumber(actual) <= tonumber(chk.v))
  elseif chk.c == "absent" then
    actual = redis.call("GET", key)
    ok = (actual == false)
  elseif chk.c == "get" then
    actual = redis.call("GET", key)
    ok = (actual == chk.v)
  elseif chk.c == "zcard_lt" then
    actual = redis.call("ZCARD", key)
    ok = (actual < tonumber(chk.v))
  else
    return redis.error_reply("unknown check " .. tostring(chk.c))
  end
  if not ok then
    if actual == false then actual = "" end
    return {"fail", chk.fail, tostring(actual)}
  end
end

-- A dry run answers as if it had written: every check ran, nothing changes.
if plan.dry then return {"ok"} end

for _, op in ipairs(plan.ops or {}) do
  local key = KEYS[op.k]
  if op.o == "hset" then
    redis.call("HSET", key, unpack(op.kv))
  elseif op.o == "hdel" then
    redis.call("HDEL", key, unpack(op.f))
  elseif op.o == "del" then
    redis.call("DEL", key)
  elseif op.o == "zadd" then
    redis.call("ZADD", key, op.s, op.m)
  elseif op.o == "zrem" then
    redis.call("ZREM", key, op.m)
  elseif op.o == "xadd" then
    redis.call("XADD", key, "*", unpack(op.kv))
  elseif op.o == "set" then
    if op.px then redis.call("SET", key, op.v, "PX", op.px) else redis.call("SET", key, op.v) end
  elseif op.o == "del_json_eq" then
    local held = redis.call("GET", key)
    if held then
      local parsed, doc = pcall(cjson.decode, held)
      if parsed and type(doc) == "table" and doc[op.f] == op.v then redis.call("DEL", key) end
    end
  else
    return redis.error_reply("unknown op " .. tostring(op.o))
  end
end
return {"ok"}

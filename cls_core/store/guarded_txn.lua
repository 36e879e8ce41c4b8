-- Guarded writes: for each plan, every check must hold, then every op runs; nothing of a plan
-- runs otherwise. One call runs one plan (a write) or several (an ingest window, a cascade),
-- each atomic on its own and failing on its own: a check that fails or an error stops its plan
-- only, and the plans after it still run.
--
-- ARGV holds pairs, one per plan: how many KEYS the plan has (its keys follow those of the plans
-- before it), then the plan as JSON: {"checks": [...], "ops": [...], "dry": bool}; "k" fields
-- are 1-based indexes into the plan's own keys.
-- Checks:
--   {"c": "hget",  "k": i, "f": field, "v": value|null, "fail": code}   HGET must equal v (null: absent)
--   {"c": "hget_ne", "k": i, "f": field, "v": value, "fail": code}     HGET must not be v
--   {"c": "zcard", "k": i, "v": n, "fail": code}                        ZCARD must equal n
--   {"c": "zscore_le", "k": i, "m": member, "v": n, "fail": code}       member present, score <= n
--   {"c": "absent", "k": i, "fail": code}                               string key must not exist
--   {"c": "get",   "k": i, "v": value, "fail": code}                    string key must hold v
--   {"c": "zcard_lt", "k": i, "v": n, "fail": code}                     ZCARD must be below n
--   {"c": "hexists", "k": i, "f": field, "fail": code}                  the hash has the field
--   {"c": "hlen_lt", "k": i, "v": n, "fail": code}                      HLEN must be below n
-- Ops: hset {kv}, hdel {f}, del, zadd {s, m}, zrem {m}, xadd {kv, max?}, set {v, px?},
--      del_json_eq {f, v}: delete the string key if it holds a JSON object whose field f is v,
--      pexpire {px}: the key expires in px milliseconds
-- Every key a check or an op touches is in KEYS (what Redis Cluster needs), among its plan's own.
-- Returns one reply per plan, in order: {"ok"}, {"fail", code, actual value of the failed check}
-- or {"error", message}. An unknown check or op, a key outside the plan's own or a plan that is
-- not JSON is refused before anything of that plan is written; a command's error reply stops
-- its plan where it happened (what an error in a lone script does too).

local function absent(v) return v == nil or v == cjson.null end

local OPS = {hset = true, hdel = true, del = true, zadd = true, zrem = true, xadd = true,
             set = true, del_json_eq = true, pexpire = true}

local function run(plan, base, count)
  local function key(i)
    if type(i) ~= "number" or i < 1 or i > count or i % 1 ~= 0 then
      error("key index " .. tostring(i) .. " is not one of the plan's " .. count .. " keys", 0)
    end
    return KEYS[base + i]
  end

  for _, op in ipairs(plan.ops or {}) do
    if not OPS[op.o] then error("unknown op " .. tostring(op.o), 0) end
    key(op.k)
  end

  for _, chk in ipairs(plan.checks or {}) do
    local k = key(chk.k)
    local actual
    local ok
    if chk.c == "hget" then
      actual = redis.call("HGET", k, chk.f)
      if absent(chk.v) then ok = (actual == false) else ok = (actual == chk.v) end
    elseif chk.c == "hget_ne" then
      actual = redis.call("HGET", k, chk.f)
      ok = (actual ~= chk.v)
    elseif chk.c == "zcard" then
      actual = redis.call("ZCARD", k)
      ok = (actual == tonumber(chk.v))
    elseif chk.c == "zscore_le" then
      actual = redis.call("ZSCORE", k, chk.m)
      ok = (actual ~= false and tonumber(actual) <= tonumber(chk.v))
    elseif chk.c == "absent" then
      actual = redis.call("GET", k)
      ok = (actual == false)
    elseif chk.c == "get" then
      actual = redis.call("GET", k)
      ok = (actual == chk.v)
    elseif chk.c == "zcard_lt" then
      actual = redis.call("ZCARD", k)
      ok = (actual < tonumber(chk.v))
    elseif chk.c == "hexists" then
      actual = redis.call("HEXISTS", k, chk.f)
      ok = (actual == 1)
    elseif chk.c == "hlen_lt" then
      actual = redis.call("HLEN", k)
      ok = (actual < tonumber(chk.v))
    else
      error("unknown check " .. tostring(chk.c), 0)
    end
    if not ok then
      if actual == false then actual = "" end
      return {"fail", chk.fail, tostring(actual)}
    end
  end

  -- A dry run answers as if it had written: every check ran, nothing changes.
  if plan.dry then return {"ok"} end

  for _, op in ipairs(plan.ops or {}) do
    local k = KEYS[base + op.k]
    if op.o == "hset" then
      redis.call("HSET", k, unpack(op.kv))
    elseif op.o == "hdel" then
      redis.call("HDEL", k, unpack(op.f))
    elseif op.o == "del" then
      redis.call("DEL", k)
    elseif op.o == "zadd" then
      redis.call("ZADD", k, op.s, op.m)
    elseif op.o == "zrem" then
      redis.call("ZREM", k, op.m)
    elseif op.o == "xadd" then
      if op.max then
        redis.call("XADD", k, "MAXLEN", "~", op.max, "*", unpack(op.kv))
      else
        redis.call("XADD", k, "*", unpack(op.kv))
      end
    elseif op.o == "set" then
      if op.px then redis.call("SET", k, op.v, "PX", op.px) else redis.call("SET", k, op.v) end
    elseif op.o == "pexpire" then
      redis.call("PEXPIRE", k, op.px)
    elseif op.o == "del_json_eq" then
      local held = redis.call("GET", k)
      if held then
        local parsed, doc = pcall(cjson.decode, held)
        if parsed and type(doc) == "table" and doc[op.f] == op.v then redis.call("DEL", k) end
      end
    end
  end
  return {"ok"}
end

-- The plans must share KEYS out exactly, or no plan could be sure of its keys.
local total = 0
for i = 1, #ARGV, 2 do
  local count = tonumber(ARGV[i])
  if count == nil or count < 0 or ARGV[i + 1] == nil then
    return redis.error_reply("ARGV must be pairs of a key count and a plan")
  end
  total = total + count
end
if total ~= #KEYS then
  return redis.error_reply("the plans have " .. total .. " keys, KEYS has " .. #KEYS)
end

local replies = {}
local base = 0
for i = 1, #ARGV, 2 do
  local count = tonumber(ARGV[i])
  local done, reply = pcall(function() return run(cjson.decode(ARGV[i + 1]), base, count) end)
  if not done then
    -- An error raised here, by cjson or by redis.call (a string; a table in some versions).
    if type(reply) == "table" then reply = reply.err end
    reply = {"error", tostring(reply)}
  end
  replies[#replies + 1] = reply
  base = base + count
end
return replies

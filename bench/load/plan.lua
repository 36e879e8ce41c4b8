-- wrk script: replays a LoadPlan (see plan.py) and prints one JSON line of results.
-- Usage: wrk -t1 -cN -dS -s plan.lua URL -- /path/to/plan_table.lua
local plan
local counter = 0

function init(args)
  plan = dofile(args[1])
end

function request()
  local n = plan.start + counter
  counter = counter + 1
  local count = #plan.ids
  local index = (n % count) + 1
  local id = plan.ids[index]
  local nodes = 2 + (math.floor(n / count) % 9)
  local path = string.gsub(plan.path, "{id}", id)
  local body = nil
  if plan.body ~= "" then
    body = string.gsub(plan.body, "{n}", tostring(n))
    body = string.gsub(body, "{c}", tostring(nodes))
    if #plan.names > 0 then body = string.gsub(body, "{name}", plan.names[index]) end
  end
  return wrk.format(plan.method, path, plan.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end

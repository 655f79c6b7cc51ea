-- bench_http's load for wrk: a weighted mix of requests, one chosen per request.
--
-- The plan is the file named by CRM_WRK_PLAN, one "weight<TAB>path" per
-- line; CRM_WRK_TOKEN, if set, is sent as the API token. When the run is
-- over, the summary goes to the file named by CRM_WRK_RESULT as one JSON
-- object (latencies in microseconds), for bench_http to read.

local paths, cumulative, total = {}, {}, 0
for line in io.lines(os.getenv("CRM_WRK_PLAN")) do
  local weight, path = line:match("^(%S+)\t(.+)$")
  if weight then
    total = total + tonumber(weight)
    paths[#paths + 1] = path
    cumulative[#cumulative + 1] = total
  end
end

local headers = { ["X-Forwarded-Proto"] = "https" }
local token = os.getenv("CRM_WRK_TOKEN")
if token and token ~= "" then
  headers["Authorization"] = "Token " .. token
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
end

function request()
  local r = math.random() * total
  for i = 1, #cumulative do
    if r <= cumulative[i] then
      return wrk.format("GET", paths[i], headers)
    end
  end
  return wrk.format("GET", paths[#paths], headers)
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("CRM_WRK_RESULT"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, '
      .. '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max))
  out:close()
end

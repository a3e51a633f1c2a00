-- wrk script for the benchmark suite (bench/loadgen.py writes the environment it reads).
--   RVT_METHOD        GET or POST
--   RVT_BODY_FILE     file whose bytes are the body of every request (POST only)
--   RVT_MAX_REQUESTS  each wrk thread stops after this many responses (0: only -d bounds it)
-- At the end it prints one line "RVT_JSON {...}": counts, errors and the latency percentiles
-- (microseconds) that bench/loadgen.py reads.

local method = os.getenv("RVT_METHOD") or "GET"
local body_file = os.getenv("RVT_BODY_FILE")
local max_requests = tonumber(os.getenv("RVT_MAX_REQUESTS") or "0")

wrk.method = method
if body_file ~= nil and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

if max_requests > 0 then
  local seen = 0
  function response(status, headers, body)
    seen = seen + 1
    if seen >= max_requests then
      wrk.thread:stop()
    end
  end
end

local percentiles = {}
for p = 1, 99 do percentiles[#percentiles + 1] = p end
for _, p in ipairs({ 99.5, 99.9, 99.99 }) do percentiles[#percentiles + 1] = p end

function done(summary, latency, requests)
  local parts = {}
  for _, p in ipairs(percentiles) do
    parts[#parts + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'RVT_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(parts, ",")))
end

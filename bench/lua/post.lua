-- POSTs events to sluice (or the raw baseline) with a fresh dedupe_key per event, so every request is
-- a real write rather than a duplicate answered from the index. Configured through the environment:
-- BENCH_PATH, BENCH_CONTENT_TYPE, BENCH_LINES (events per request), BENCH_TEMPLATE (one event, with a
-- %s where the dedupe key goes), BENCH_RUN (key prefix), BENCH_TOKEN, BENCH_TENANT.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  path = os.getenv("BENCH_PATH")
  lines = tonumber(os.getenv("BENCH_LINES"))
  template = os.getenv("BENCH_TEMPLATE")
  prefix = os.getenv("BENCH_RUN") .. "-t" .. tid .. "-"
  headers = {
    ["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE"),
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
    ["X-Tenant-Id"] = os.getenv("BENCH_TENANT"),
  }
  counter = 0
end

function request()
  counter = counter + 1
  local body
  if lines == 1 then
    body = string.format(template, prefix .. counter)
  else
    local parts = {}
    for i = 1, lines do
      parts[i] = string.format(template, prefix .. counter .. "-" .. i)
    end
    body = table.concat(parts, "\n")
  end
  return wrk.format("POST", path, headers, body)
end

-- One machine-readable line; percentiles are in microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end

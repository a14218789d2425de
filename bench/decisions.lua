-- wrk script for bench/http_bench.py: POSTs decision request bodies, one per line of a file, in turn.
--
--   wrk -t1 -c16 -d10s -s bench/decisions.lua http://127.0.0.1:8080 -- BODIES_FILE [PATH] [API_KEY]
--
-- BODIES_FILE "-" sends GET PATH without a body (the floor: GET /healthz).
-- Otherwise BODIES_FILE holds one JSON body per line (bench/workload.py's mix for /v1/decisions, or
-- {"operations": [...100...]} lines for /v1/decisions/batch). PATH defaults to /v1/decisions.
-- Each wrk thread starts at a different line. At the end one line "WRK_JSON {...}" carries the
-- figures (latencies in microseconds) for http_bench.py to read.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local bodies = {}
local counter = 1
local path = "/v1/decisions"
local get_only = false

function init(args)
  local file = args[1]
  if file == nil then
    error("usage: wrk ... -s decisions.lua URL -- BODIES_FILE [PATH] [API_KEY]")
  end
  if file == "-" then
    get_only = true
    bodies[1] = ""
  else
    for line in io.lines(file) do
      if #line > 0 then
        bodies[#bodies + 1] = line
      end
    end
  end
  if #bodies == 0 then
    error("no bodies in " .. file)
  end
  if args[2] ~= nil and #args[2] > 0 then
    path = args[2]
  end
  wrk.headers["Content-Type"] = "application/json"
  if args[3] ~= nil and #args[3] > 0 then
    wrk.headers["Authorization"] = "Bearer " .. args[3]
  end
  -- spread the threads over the file
  counter = ((id or 0) * 7919) % #bodies + 1
end

function request()
  if get_only then
    return wrk.format("GET", path)
  end
  local body = bodies[counter]
  counter = counter % #bodies + 1
  return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end

-- wrk script of bench/receive.py: POSTs pre-signed VCC notifications, cycling through a file,
-- at a fixed offered rate (or as fast as the connections allow), and prints a JSON summary.
--
--   wrk -t1 -c64 -d30s -s bench/receive.lua http://127.0.0.1:PORT/ -- REQUESTS_FILE RATE THREADS
--
-- REQUESTS_FILE: one request a line, "<Vonage-Signature value>\t<body>" (bodies are NDJSON).
-- RATE: requests/s offered in total (0: no pacing); THREADS: wrk's -t, to split the rate.
-- Pacing: each thread keeps a schedule of one request every THREADS/RATE seconds; before a
-- connection sends its next request it waits for the next free slot of the schedule (wrk's
-- delay()). Latency is wrk's, from the first byte sent to the last byte received. A thread
-- whose connections are all busy falls behind its schedule: the achieved rate says so.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } vcc_timespec;
  int clock_gettime(int clk_id, vcc_timespec *tp);
]]
local ts = ffi.new("vcc_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local requests = {}
local index = 0
local interval = 0
local next_at = nil
local statuses = {}

function init(args)
  local path, rate, threads = args[1], tonumber(args[2] or "0"), tonumber(args[3] or "1")
  for line in io.lines(path) do
    local tab = line:find("\t", 1, true)
    local headers = {
      ["Content-Type"] = "application/cloudevents+json",
      ["Vonage-Signature"] = line:sub(1, tab - 1),
    }
    requests[#requests + 1] = wrk.format("POST", wrk.path, headers, line:sub(tab + 1))
  end
  if rate > 0 then
    interval = 1000 * threads / rate
  end
  -- threads start on different requests
  index = math.random(#requests) - 1
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function delay()
  if interval == 0 then
    return 0
  end
  local now = now_ms()
  if next_at == nil then
    next_at = now
  end
  next_at = next_at + interval
  local wait = next_at - now
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
end

-- per-status counts, read by done() from every thread (wrk copies numbers, not tables)
local STATUSES = { 200, 201, 202, 204, 400, 401, 404, 405, 413, 415, 429, 500, 502, 503, 504 }
for _, status in ipairs(STATUSES) do
  _G["status_" .. status] = 0
end

function response(status, headers, body)
  local name = "status_" .. status
  _G[name] = (_G[name] or 0) + 1
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests_)
  local parts = {}
  for _, status in ipairs(STATUSES) do
    local n = 0
    for _, thread in ipairs(threads) do
      n = n + (thread:get("status_" .. status) or 0)
    end
    if n > 0 then
      parts[#parts + 1] = string.format('"%d": %d', status, n)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"statuses": {%s}, "latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", "),
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)
  ))
end

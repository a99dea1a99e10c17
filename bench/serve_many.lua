-- wrk script of bench/serve_many.py: POSTs spread over many models by a Zipf law.
--
--   wrk -s bench/serve_many.lua URL -- REQUESTS_FILE ZIPF_S SEED
--
-- REQUESTS_FILE has one line per model, hottest first: "<path>\t<JSON body>". The model of each
-- request is drawn from P(rank k) ~ k^-s over those lines: the cumulative table is computed once
-- per thread, each thread seeds its generator with SEED + its number. One line: every request
-- is that one (the single-model reference). done() prints one JSON line, prefixed "JSON ".

local requests, cdf, n = {}, {}, 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(args)
  local file, s, seed = args[1], tonumber(args[2]), tonumber(args[3])
  for line in io.lines(file) do
    local path, body = line:match("^(%S+)\t(.*)$")
    if path then
      n = n + 1
      requests[n] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
    end
  end
  local total = 0
  for k = 1, n do
    total = total + k ^ (-s)
    cdf[k] = total
  end
  for k = 1, n do
    cdf[k] = cdf[k] / total
  end
  math.randomseed(seed + (thread_number or 0))
end

function request()
  local u, lo, hi = math.random(), 1, n
  while lo < hi do -- the first rank whose cumulative share reaches u
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return requests[lo]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end

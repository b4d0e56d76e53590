-- Shared by every scenario script: per-thread status counts and a one-line JSON summary.
-- Each scenario script starts with: dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local threads = {}
statuses = {}      -- per thread: HTTP status -> count
counters = {}      -- per thread: scenario-specific counts (purchases, ...)
tid = 0            -- set by setup(): 0-based thread index
-- wrk runs each thread's init() right after its own setup(), before the next thread exists, so
-- the thread count comes from the driver (BENCH_THREADS = wrk -t).
nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function count(name, n) counters[name] = (counters[name] or 0) + (n or 1) end

function read_lines(path)
  local lines = {}
  local f = io.open(path, "r")
  if not f then return lines end
  for line in f:lines() do if #line > 0 then lines[#lines + 1] = line end end
  f:close()
  return lines
end

function fields(line)
  local t = {}
  for w in line:gmatch("%S+") do t[#t + 1] = w end
  return t
end

-- The lines [first, last] of `lines` that belong to this thread.
function my_slice(lines)
  local per = math.floor(#lines / nthreads)
  local first = tid * per + 1
  local last = (tid == nthreads - 1) and #lines or (first + per - 1)
  local out = {}
  for i = first, last do out[#out + 1] = lines[i] end
  return out
end

function now_ns()
  local p = io.popen("date +%s%N")
  local v = tonumber(p:read("*l"))
  p:close()
  return v
end

function record_status(status)
  statuses[status] = (statuses[status] or 0) + 1
end

local function json_table(t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = string.format('"%s":%s', tostring(k), tostring(v)) end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local st, ct = {}, {}
  local t0, t1 = nil, nil
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("statuses") or {}) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(thread:get("counters") or {}) do
      if k == "t_start" then t0 = (t0 == nil or v < t0) and v or t0
      elseif k == "t_end" then t1 = (t1 == nil or v > t1) and v or t1
      else ct[k] = (ct[k] or 0) + v end
    end
  end
  if t0 and t1 then ct["active_seconds"] = (t1 - t0) / 1e9 end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_timeout":%d,"non2xx":%d,"statuses":%s,"counters":%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, e.connect, e.read, e.write, e.timeout, e.status,
    json_table(st), json_table(ct)))
end

-- POST /v1/payments alone, over reservations held and charged beforehand (flow.lua in prep mode):
-- BENCH_PAY_FILES lists files of "n jwt queueToken reservationId" lines. Each thread pays its own
-- slice once; when as many answers came back as it had payments it stops (counters.exhausted),
-- and payments/s is taken over the time the threads were active rather than the whole -d.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local items, i, received = {}, 0, 0
local conns_per_thread = math.max(1, math.floor(tonumber(os.getenv("BENCH_CONNS") or "64") / nthreads))
function init(args)
  local lines = {}
  for path in (os.getenv("BENCH_PAY_FILES") or ""):gmatch("%S+") do
    for _, line in ipairs(read_lines(path)) do lines[#lines + 1] = line end
  end
  for _, line in ipairs(my_slice(lines)) do
    local f = fields(line)
    items[#items + 1] = wrk.format("POST", "/v1/payments",
      { ["Authorization"] = "Bearer " .. f[2], ["Queue-Token"] = f[3], ["Content-Type"] = "application/json" },
      '{"reservationId":' .. f[4] .. '}')
  end
  counters.t_start = now_ns()
end
function request()
  i = i + 1
  if i > #items then
    -- Every payment is out; the other connections of this thread send /healthz until the last
    -- payment answers (not counted as payments, counted as "filler").
    count("filler")
    return wrk.format("GET", "/healthz")
  end
  return items[i]
end
function response(status, headers, body)
  record_status(status)
  if status == 201 then count("payments") end
  -- /healthz (filler) answers 200; a payment answers 201 or an error, never 200.
  if status ~= 200 then received = received + 1 end
  -- Stop once every payment answered; or, should wrk have dropped a generated request on a
  -- reconnect (it regenerates it, so one item is skipped), once the fillers show that nothing is
  -- outstanding any more (a few rounds of /healthz on every connection: a few milliseconds).
  local done_all = received >= #items
  local drained = i > #items and (counters.filler or 0) > 8 * conns_per_thread
  if (done_all or drained) and not counters.exhausted then
    counters.exhausted = 1
    counters.t_end = now_ns()
    wrk.thread:stop()
  end
end

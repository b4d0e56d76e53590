-- POST /v1/payments alone, over reservations held and charged beforehand (flow.lua in prep mode):
-- BENCH_PAY_FILES lists files of "n jwt queueToken reservationId" lines. Each thread pays its own
-- slice once; when it runs out it stops (counters.exhausted) and payments/s is taken over the
-- time the threads were active rather than the whole -d.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local items, i = {}, 0
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
    if not counters.exhausted then
      counters.exhausted = 1
      counters.t_end = now_ns()
      wrk.thread:stop()
    end
    count("filler")
    return wrk.format("GET", "/healthz")
  end
  return items[i]
end
function response(status, headers, body)
  record_status(status)
  if status == 201 then count("payments") end
end

-- GET /v1/schedules/{id}/seats by users with ACTIVE queue tokens (BENCH_USERS), over the
-- schedules in BENCH_SCHEDULES (space-separated ids).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local reqs, i = {}, 0
function init(args)
  local schedules = fields(os.getenv("BENCH_SCHEDULES"))
  for n, line in ipairs(my_slice(read_lines(os.getenv("BENCH_USERS")))) do
    local f = fields(line)
    local s = schedules[(n % #schedules) + 1]
    reqs[#reqs + 1] = wrk.format("GET", "/v1/schedules/" .. s .. "/seats",
      { ["Authorization"] = "Bearer " .. f[2], ["Queue-Token"] = f[3] })
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function response(status, headers, body) record_status(status) end

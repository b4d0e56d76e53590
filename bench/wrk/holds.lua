-- POST /v1/reservations under contention: every request is the next user of this thread's own
-- slice of BENCH_USERS (ACTIVE queue tokens, prepared beforehand) asking for a random seat
-- 1..BENCH_SEATS of a random schedule of BENCH_SCHEDULES. Exactly one hold per seat may win.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local users, schedules, seats, i = {}, {}, 50, 0
function init(args)
  math.randomseed(os.time() + tid * 7919)
  schedules = fields(os.getenv("BENCH_SCHEDULES"))
  seats = tonumber(os.getenv("BENCH_SEATS") or "50")
  for _, line in ipairs(my_slice(read_lines(os.getenv("BENCH_USERS")))) do
    local f = fields(line)
    users[#users + 1] = { ["Authorization"] = "Bearer " .. f[2], ["Queue-Token"] = f[3],
                          ["Content-Type"] = "application/json" }
  end
end
function request()
  i = i % #users + 1
  local body = string.format('{"scheduleId":%s,"seatNumber":%d}', schedules[math.random(#schedules)], math.random(seats))
  return wrk.format("POST", "/v1/reservations", users[i], body)
end
function response(status, headers, body) record_status(status) end

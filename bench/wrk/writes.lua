-- The purchase write path alone, one user after another on each connection (run with -t N -c N):
--   POST /v1/reservations    (the thread's next seat: no two threads share a schedule, so no
--                             contention; a 409 would mean a bug and counts as an error)
--   POST /v1/points/charges  (the seat's price)
--   POST /v1/payments        (ends the user's queue token)
-- and then the next fresh user. ops/s = purchases/s.
-- BENCH_WRITE_USERS: "userId jwt queueToken status" lines (users joined beforehand, all ACTIVE),
-- sliced per thread; BENCH_WRITE_SCHEDULES: "scheduleId seats" lines, line tid+1 is this thread's.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local users, u = {}, 0
local schedule, seats, seat = nil, 0, 0
local price
local step, auth, qtoken, resv = "hold", nil, nil, nil

local function next_user()
  u = u + 1
  seat = seat + 1
  if u > #users or seat > seats then
    counters.exhausted = 1
    wrk.thread:stop()
    u = math.min(u, #users)
    seat = math.min(seat, seats)
  end
  local f = fields(users[u])
  auth, qtoken = "Bearer " .. f[2], f[3]
  step = "hold"
end

function init(args)
  price = os.getenv("BENCH_PRICE") or "50000"
  users = my_slice(read_lines(os.getenv("BENCH_WRITE_USERS")))
  local f = fields(read_lines(os.getenv("BENCH_WRITE_SCHEDULES"))[tid + 1])
  schedule, seats = f[1], tonumber(f[2])
  next_user()
end

function request()
  local h = { ["Authorization"] = auth, ["Queue-Token"] = qtoken, ["Content-Type"] = "application/json" }
  if step == "hold" then
    return wrk.format("POST", "/v1/reservations", h, '{"scheduleId":' .. schedule .. ',"seatNumber":' .. seat .. '}')
  elseif step == "charge" then
    return wrk.format("POST", "/v1/points/charges", h, '{"amount":' .. price .. '}')
  end
  return wrk.format("POST", "/v1/payments", h, '{"reservationId":' .. resv .. '}')
end

function response(status, headers, body)
  record_status(status)
  if step == "hold" then
    if status ~= 201 then count("write_errors"); return next_user() end
    resv = body:match('"id"%s*:%s*(%d+)')
    step = "charge"
  elseif step == "charge" then
    if status ~= 200 then count("write_errors"); return next_user() end
    step = "pay"
  else
    if status == 201 then count("purchases") else count("write_errors") end
    next_user()
  end
end

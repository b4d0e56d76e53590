-- The purchase flow, one user after another on each connection (run with -t N -c N: one
-- connection per thread, so each response belongs to the thread's only flow):
--   POST /v1/concerts/{c}/queue/tokens  (poll GET /v1/queue/tokens/current while WAITING)
--   GET  /v1/schedules/{s}/seats        (pick the first AVAILABLE seat)
--   POST /v1/reservations               (409: back to the seat map)
--   POST /v1/points/charges             (the seat's price)
--   POST /v1/payments                   (BENCH_FLOW_MODE=full; with =prep the flow stops before
--                                        paying and writes "userId jwt queueToken reservationId"
--                                        to BENCH_OUT.<tid>, for the payments-alone scenario)
-- BENCH_FLOW_USERS: "userId jwt" lines (fresh users, sliced per thread);
-- BENCH_FLOW_CONCERTS: "concertId scheduleId..." lines, line tid+1 is this thread's concert.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local users, schedules, concert = {}, {}, nil
local mode, price, out
local u, s, step = 0, 1, "join"
local auth, qtoken, seat, resv

local function next_user()
  u = u + 1
  if u > #users then
    counters.exhausted = 1
    wrk.thread:stop()
    u = #users
  end
  auth = "Bearer " .. users[u]
  step = "join"
end

local function fail(what)
  count("flow_errors")
  count("flow_error_" .. what)
  next_user()
end

function init(args)
  mode = os.getenv("BENCH_FLOW_MODE") or "full"
  price = os.getenv("BENCH_PRICE") or "50000"
  for _, line in ipairs(my_slice(read_lines(os.getenv("BENCH_FLOW_USERS")))) do
    users[#users + 1] = fields(line)[2]
  end
  local concerts = read_lines(os.getenv("BENCH_FLOW_CONCERTS"))
  local f = fields(concerts[(tid % #concerts) + 1])
  concert = f[1]
  for k = 2, #f do schedules[#schedules + 1] = f[k] end
  if mode == "prep" then out = io.open(os.getenv("BENCH_OUT") .. "." .. tid, "w") end
  next_user()
end

function request()
  local h = { ["Authorization"] = auth }
  if step == "join" then
    return wrk.format("POST", "/v1/concerts/" .. concert .. "/queue/tokens", h)
  end
  h["Queue-Token"] = qtoken
  if step == "poll" then
    return wrk.format("GET", "/v1/queue/tokens/current", h)
  elseif step == "seats" then
    return wrk.format("GET", "/v1/schedules/" .. schedules[s] .. "/seats", h)
  end
  h["Content-Type"] = "application/json"
  if step == "hold" then
    return wrk.format("POST", "/v1/reservations", h, '{"scheduleId":' .. schedules[s] .. ',"seatNumber":' .. seat .. '}')
  elseif step == "charge" then
    return wrk.format("POST", "/v1/points/charges", h, '{"amount":' .. price .. '}')
  else
    return wrk.format("POST", "/v1/payments", h, '{"reservationId":' .. resv .. '}')
  end
end

function response(status, headers, body)
  record_status(status)
  if step == "join" or step == "poll" then
    if status ~= 200 and status ~= 201 then return fail(step) end
    qtoken = body:match('"token"%s*:%s*"([^"]+)"')
    step = body:find('"ACTIVE"', 1, true) and "seats" or "poll"
  elseif step == "seats" then
    if status ~= 200 then return fail("seats") end
    seat = nil
    for obj in body:gmatch("{[^{}]*}") do
      if obj:find('"AVAILABLE"', 1, true) then seat = obj:match('"number"%s*:%s*(%d+)') break end
    end
    if seat then step = "hold" else
      s = s + 1
      if s > #schedules then counters.sold_out = 1; s = #schedules; wrk.thread:stop() end
    end
  elseif step == "hold" then
    if status == 201 then
      resv = body:match('"id"%s*:%s*(%d+)')
      step = "charge"
    elseif status == 409 then
      count("hold_conflicts"); step = "seats"
    else return fail("hold") end
  elseif step == "charge" then
    if status ~= 200 then return fail("charge") end
    if mode == "prep" then
      out:write(users[u]:sub(1, 0), u, " ", auth:sub(8), " ", qtoken, " ", resv, "\n")
      count("prepared")
      next_user()
    else
      step = "pay"
    end
  else
    if status ~= 201 then return fail("pay") end
    count("purchases")
    next_user()
  end
end

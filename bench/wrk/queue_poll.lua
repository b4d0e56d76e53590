-- GET /v1/queue/tokens/current for many users (file BENCH_USERS: "userId jwt queueToken" lines),
-- each thread cycling through its own slice of users.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local reqs, i = {}, 0
function init(args)
  for _, line in ipairs(my_slice(read_lines(os.getenv("BENCH_USERS")))) do
    local f = fields(line)
    reqs[#reqs + 1] = wrk.format("GET", "/v1/queue/tokens/current",
      { ["Authorization"] = "Bearer " .. f[2], ["Queue-Token"] = f[3] })
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
function response(status, headers, body)
  record_status(status)
  if status == 200 then
    if body:find('"WAITING"', 1, true) then count("waiting") else count("active") end
  end
end

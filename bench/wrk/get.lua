-- A plain GET of BENCH_PATH (healthz, the reservable concerts list), counting statuses.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local req
function init(args) req = wrk.format("GET", os.getenv("BENCH_PATH") or "/healthz") end
function request() return req end
function response(status, headers, body) record_status(status) end

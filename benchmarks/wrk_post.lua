-- wrk script for benchmarks/bench_serving.py: POST JSON bodies, one per request, cycling through the
-- lines of the file named by the WRK_BODIES environment variable (one JSON body per line). WRK_AUTHORIZATION,
-- when set and not empty, is sent as the Authorization header (the service's bearer token, MLOPS_API_TOKEN).
--   WRK_BODIES=bodies.jsonl wrk -t1 -c8 -d8s --latency -s benchmarks/wrk_post.lua http://127.0.0.1:3000/classify
local requests = {}
local next_index = 0

function init(args)
  local path = os.getenv("WRK_BODIES")
  assert(path, "set WRK_BODIES to a file with one JSON body per line")
  local headers = {["Content-Type"] = "application/json"}
  local authorization = os.getenv("WRK_AUTHORIZATION")
  if authorization and #authorization > 0 then
    headers["Authorization"] = authorization
  end
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  assert(#requests > 0, "no request bodies in " .. path)
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

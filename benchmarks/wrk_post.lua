-- wrk script for benchmarks/bench_serving.py: POST JSON bodies, one per request, cycling through the
-- lines of the file named by the WRK_BODIES environment variable (one JSON body per line).
--   WRK_BODIES=bodies.jsonl wrk -t1 -c8 -d8s --latency -s benchmarks/wrk_post.lua http://127.0.0.1:3000/classify
local requests = {}
local next_index = 0

function init(args)
  local path = os.getenv("WRK_BODIES")
  assert(path, "set WRK_BODIES to a file with one JSON body per line")
  for line in io.lines(path) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
    end
  end
  assert(#requests > 0, "no request bodies in " .. path)
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

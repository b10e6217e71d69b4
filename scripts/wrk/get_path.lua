-- wrk script: GET one fixed path (with its query string), counting statuses.
-- usage: wrk ... -s get_path.lua URL -- PATH
local threads = {}
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function init(args) statuses = {}; path = args[1] end
function request() return wrk.format("GET", path) end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local agg = {}
  for _, t in ipairs(threads) do for k, v in pairs(t:get("statuses")) do agg[k] = (agg[k] or 0) + v end end
  local secs = summary.duration / 1e6
  io.write(string.format("SUMMARY requests=%d ok200=%d ok_rps=%.1f\n", summary.requests, agg[200] or 0, (agg[200] or 0) / secs))
  io.write(string.format("LATENCY_MS p50=%.2f p99=%.2f\n", latency:percentile(50)/1000, latency:percentile(99)/1000))
end

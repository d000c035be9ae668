-- wrk script: a chat-completions POST. BENCH_KEY (empty: the baseline's fake key is
-- set by the proxy), BENCH_MODEL, BENCH_STREAM=1 for a streamed answer, BENCH_DELAY_MS.
local key = os.getenv("BENCH_KEY") or ""
local model = os.getenv("BENCH_MODEL") or "bench"
local stream = os.getenv("BENCH_STREAM") == "1"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"system","content":"You are brief."},'
  .. '{"role":"user","content":"Hello, how are you today? Tell me something nice."}],'
  .. '"temperature":0.7,"max_tokens":64' .. (stream and ',"stream":true' or '') .. '}'

-- BENCH_DELAY_MS: a pause before each request, for a moderate load rather than saturation
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms then
  function delay()
    return delay_ms
  end
end

-- exact percentiles in microseconds (wrk's --latency table rounds to its unit)
function done(summary, latency, requests)
  io.write(string.format("percentiles_us p50=%d p99=%d\n",
                         latency:percentile(50), latency:percentile(99)))
  io.write(string.format("latency_max_us %d\n", latency.max))
end

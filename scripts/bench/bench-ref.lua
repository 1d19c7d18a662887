-- bench-ref.lua - the machine-speed reference of scripts/bench/bench.lua.
--
--   luajit scripts/bench/bench-ref.lua SCENARIO LINES
--
-- Runs the filter of a benchmark scenario (2: returns its batch; 3: the
-- work filter; the same source text as the engine runs, from
-- scripts/bench/bench-filters.lua) in this plain LuaJIT process, JIT on, over
-- LINES records built beforehand as tables shaped like the engine's (line,
-- stream, time, container name), lines like the fake Docker server's
-- --logfmt ones, in batches of 1000 (the engine's batch.max_lines). Nothing
-- is read, decoded or written: what it measures is the speed of this
-- machine and LuaJIT at the filter alone, which the engine's figures are
-- divided by. Prints "lines_per_s cpu_s_per_million_lines".
local filters = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench-filters.lua")
local scenario, n = tonumber(arg[1]), tonumber(arg[2])
assert(filters[scenario] and n, "usage: bench-ref.lua 2|3 LINES")
local fn = assert(loadstring("return {" .. filters[scenario] .. "}"))().filters[1]

local BATCH = 1000
local batches = {}
local seq = 0
for b = 1, math.ceil(n / BATCH) do
  local batch = {}
  for i = 1, math.min(BATCH, n - (b - 1) * BATCH) do
    seq = seq + 1
    local r = (seq * 2654435761) % 4294967296 % 100
    local level = r < 70 and "info" or r < 85 and "debug" or r < 95 and "warn" or "error"
    batch[i] = {
      line = string.format('level=%s msg="request served" status=200 path=/api/v1/items/%d dur_ms=%d seq=%d container=c0',
                           level, 10000 + seq % 90000, seq % 97, seq),
      stream = seq % 2 == 1 and "stdout" or "stderr",
      time = 1700000000 + seq * 1e-6,
      container = { name = "c0", id = "0123456789ab" },
    }
  end
  batches[b] = batch
end

local kept = 0
local t0 = os.clock()
for b = 1, #batches do
  local out = fn(batches[b])
  kept = kept + #out
end
local cpu = os.clock() - t0
assert(kept > 0)
io.write(string.format("%.0f %.4f\n", n / cpu, cpu / n * 1e6))

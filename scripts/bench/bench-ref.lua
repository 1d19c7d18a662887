-- bench-ref.lua - the machine-speed reference of scripts/bench/bench.lua.
--
--   luajit scripts/bench/bench-ref.lua SCENARIO LINES
--
-- Runs the filter of a benchmark scenario (2: returns its batch; 3: the
-- work filter; the same source text as the engine runs, from
-- scripts/bench/bench-filters.lua) in this plain LuaJIT process, JIT on, over
-- LINES records built as tables shaped like the engine's (line, stream,
-- time, container name), lines like the fake Docker server's --logfmt ones,
-- in batches of 1000 (the engine's batch.max_lines). Nothing is read,
-- decoded or written: what it measures is the speed of this machine and
-- LuaJIT at the filter alone, which the engine's figures are divided by.
--
-- The live heap stays bounded, as the engine's does: the line strings come
-- from a pool of POOL lines made beforehand, and each batch's tables are
-- built just before its filter call, outside the timed part; only the
-- filter calls are timed. The collector runs as usual: LuaJIT's incremental
-- collector does work in proportion to what is allocated, when it is
-- allocated, so the timed calls pay for the collection their own
-- allocations cause (the `keep` tables, the records' new `severity` keys)
-- and the untimed building for its own. (Building every record up front
-- instead makes a heap of over a gigabyte at 2,000,000 lines, and the
-- collector's passes over it made the figure vary by almost 2x from run
-- to run.) Prints "lines_per_s cpu_us_per_line".
local filters = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench-filters.lua")
local scenario, n = tonumber(arg[1]), tonumber(arg[2])
assert(filters[scenario] and n, "usage: bench-ref.lua 2|3 LINES")
local fn = assert(loadstring("return {" .. filters[scenario] .. "}"))().filters[1]

local BATCH, POOL = 1000, 10000
local lines = {}
for seq = 1, POOL do
  local r = (seq * 2654435761) % 4294967296 % 100
  local level = r < 70 and "info" or r < 85 and "debug" or r < 95 and "warn" or "error"
  lines[seq] = string.format('level=%s msg="request served" status=200 path=/api/v1/items/%d dur_ms=%d seq=%d container=c0',
                             level, 10000 + seq % 90000, seq % 97, seq)
end
local container = { name = "c0", id = "0123456789ab" }

local clock = os.clock
local kept, cpu, seq = 0, 0, 0
for b = 1, math.ceil(n / BATCH) do
  local batch = {}
  for i = 1, math.min(BATCH, n - (b - 1) * BATCH) do
    seq = seq + 1
    batch[i] = {
      line = lines[(seq - 1) % POOL + 1],
      stream = seq % 2 == 1 and "stdout" or "stderr",
      time = 1700000000 + seq * 1e-6,
      container = container,
    }
  end
  local t0 = clock()
  local out = fn(batch)
  cpu = cpu + (clock() - t0)
  kept = kept + #out
end
assert(kept > 0)
io.write(string.format("%.0f %.4f\n", n / cpu, cpu / n * 1e6))

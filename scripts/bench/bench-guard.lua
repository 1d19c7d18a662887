-- bench-guard.lua - what the runaway guard costs, measured.
--
--   luajit scripts/bench/bench-guard.lua [LINES]
--
-- Filters run with LuaJIT's JIT compiler off and a count hook (see
-- engine/pipeline.h), because a hook does not interrupt a loop that was
-- compiled to a trace. This measures three filters over batches of 1,000
-- records built like the engine builds them, with the JIT on, with the JIT
-- off, and with the JIT off plus the count hook every 1,000 instructions:
--   pass  returns its batch unchanged
--   work  drops lines containing "level=debug", sets severity to the
--         upper-cased value of level=(%w+)
--   loop  a numeric loop (the worst case for the interpreter)
-- and prints lines per second for each. Not a test: numbers for people.
local N = tonumber(arg[1]) or 2000000
local BATCH = 1000

local levels = { "info", "info", "info", "info", "info", "info", "info",
                 "debug", "debug", "warn", "error", "info", "debug", "warn", "info", "info",
                 "info", "info", "error", "info" }
local lines = {}
for i = 1, BATCH do
  lines[i] = string.format('level=%s msg="request served" status=200 path=/api/v1/items/%d dur_ms=%d',
                           levels[i % #levels + 1], 10000 + i, i % 97)
end

local function make_batch()
  local b = {}
  for i = 1, BATCH do
    b[i] = { line = lines[i], stream = i % 3 == 0 and "stderr" or "stdout",
             time = "2026-11-27T22:55:45.123456789Z", name = "web", container = "abc" }
  end
  return b
end

local filters = {
  pass = function(batch) return batch end,
  work = function(batch)
    local keep = {}
    for _, r in ipairs(batch) do
      if not r.line:find("level=debug", 1, true) then
        local lvl = r.line:match("level=(%w+)")
        if lvl then r.severity = lvl:upper() end
        keep[#keep + 1] = r
      end
    end
    return keep
  end,
  loop = function(batch)
    local s = 0
    for i = 1, #batch * 50 do s = s + i % 7 end
    batch.sum = s
    return batch
  end,
}

local function run(f)
  local t0 = os.clock()
  for _ = 1, N / BATCH do f(make_batch()) end
  return N / (os.clock() - t0)
end

local modes = {
  { "jit on", function() jit.on(); debug.sethook() end },
  { "jit off", function() jit.off(); jit.flush(); debug.sethook() end },
  { "jit off + hook", function() jit.off(); jit.flush(); debug.sethook(function() end, "", 1000) end },
}

print(string.format("%-6s %16s %16s %16s", "filter", modes[1][1], modes[2][1], modes[3][1]))
for _, name in ipairs { "pass", "work", "loop" } do
  local row = {}
  for i, m in ipairs(modes) do
    m[2]()
    row[i] = string.format("%13.0f l/s", run(filters[name]))
  end
  debug.sethook()
  jit.on()
  print(string.format("%-6s %16s %16s %16s", name, row[1], row[2], row[3]))
end

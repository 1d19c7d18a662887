-- bench-smaps.lua - where the memory of benchmark scenarios 1-3 goes.
--
--   luajit scripts/bench/bench-smaps.lua SCENARIO [thread|process] [LINES]
--
-- Runs scenario 1, 2 or 3 of scripts/bench/bench.lua once (one container of
-- LINES lines, default 2,000,000, from the fake Docker API server, the
-- scenario's filter, the null output; "process": filters in their own
-- process) and reads /proc/PID/smaps of the engine, its zygote and its
-- filter process every 20 ms until the engine has read every line. At the
-- sample where the engine's RSS plus what the other two do not share with
-- it (their private pages, as bench.lua counts them) was highest, it prints
-- that figure, the engine's peak RSS (VmHWM) and each process's mappings
-- grouped: file-backed (the binary and the shared libraries), [heap] (the
-- main malloc arena: batches read ahead, buffers), anonymous (LuaJIT's heap,
-- the other threads' malloc arenas, allocations large enough to be mapped on
-- their own such as the cursor's window and its replay index), [stack],
-- and the largest mappings. Sampling can miss a peak shorter than 20 ms:
-- VmHWM cannot.
package.path = "./?.lua;" .. package.path
local proc = require "spec.support.proc"
local fake = require "spec.support.fake"

local scenario, iso, n = tonumber(arg[1]), arg[2] or "thread", tonumber(arg[3] or 2000000)
local FILTERS = dofile("scripts/bench/bench-filters.lua")
assert(FILTERS[scenario] and (iso == "thread" or iso == "process") and n,
       "usage: bench-smaps.lua 1|2|3 [thread|process] [LINES]")
local ENGINE = os.getenv("ENGINE_BIN") or "build/engine"

local srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(n), "--lines",
                         tostring(n), "--retain", tostring(n), "--logfmt", "--start-delay", "3" }
local dir = select(2, proc.sh("mktemp -d /tmp/smaps.XXXXXX")):gsub("%s+$", "")
local f = assert(io.open(dir .. "/p.lua", "w"))
f:write(string.format([[
return {
  docker = { host = %q },
  engine = { filter_isolation = %q },
  %s
  outputs = { { type = "null" } },
}]], srv.host, iso, FILTERS[scenario]))
f:close()
local p = proc.spawn { argv = { ENGINE, "run", dir .. "/p.lua", "--state-dir", "" },
                       stdout = "/dev/null", stderr = dir .. "/stderr" }

-- The engine and its descendants (zygote, filter process), engine first.
local family = proc.family

-- One process's mappings: { name, range, rss, priv } (KiB) and their sums.
local function smaps(pid)
  local maps, cur = {}, nil
  for line in (proc.read("/proc/" .. pid .. "/smaps") or ""):gmatch("[^\n]+") do
    local range, name = line:match("^(%x+%-%x+) %S+ %x+ %S+ %d+%s*(.*)$")
    if range then
      cur = { range = range, name = name ~= "" and name or "[anon]", rss = 0, priv = 0 }
      maps[#maps + 1] = cur
    else
      local k, v = line:match("^([%w_]+):%s+(%d+) kB")
      if k == "Rss" then cur.rss = tonumber(v)
      elseif k == "Private_Clean" or k == "Private_Dirty" then cur.priv = cur.priv + tonumber(v) end
    end
  end
  return maps
end

local function kind(m)
  if m.name:sub(1, 1) == "/" then return "file-backed" end
  if m.name == "[heap]" or m.name == "[stack]" or m.name == "[anon]" then return m.name end
  return "other"
end

local best, peak = -1, nil
local function sample()
  local procs, total = {}, 0
  for i, pid in ipairs(family(p:pid())) do
    local maps, rss, priv = smaps(pid), 0, 0
    for _, m in ipairs(maps) do rss, priv = rss + m.rss, priv + m.priv end
    total = total + (i == 1 and rss or priv)
    procs[#procs + 1] = { pid = pid, maps = maps, rss = rss, priv = priv }
  end
  if total > best then best, peak = total, procs end
end

local deadline = proc.now() + 600
while proc.now() < deadline do
  sample()
  if (proc.read(dir .. "/stderr") or ""):find("stopped following", 1, true) then break end
  proc.sleep(0.02)
end
sample()
local hwm = tonumber((proc.read("/proc/" .. p:pid() .. "/status") or ""):match("VmHWM:%s*(%d+)"))
p:signal("TERM")
p:wait(30)
p:cleanup()
srv:stop()
proc.sh("rm -rf " .. proc.quote(dir))

print(string.format("scenario %d (%s), %d lines: peak %.1f MiB (engine RSS + the others' private "
                    .. "pages, sampled); engine VmHWM %.1f MiB", scenario, iso, n, best / 1024,
                    (hwm or 0) / 1024))
for i, pr in ipairs(peak) do
  print(string.format("%s %d: RSS %.1f MiB, private %.1f MiB", i == 1 and "engine" or "child", pr.pid,
                      pr.rss / 1024, pr.priv / 1024))
  local g = {}
  for _, m in ipairs(pr.maps) do
    local k = kind(m)
    g[k] = g[k] or { rss = 0, priv = 0 }
    g[k].rss, g[k].priv = g[k].rss + m.rss, g[k].priv + m.priv
  end
  for _, k in ipairs { "file-backed", "[heap]", "[anon]", "[stack]", "other" } do
    if g[k] then print(string.format("  %-12s RSS %7d KiB, private %7d KiB", k, g[k].rss, g[k].priv)) end
  end
  table.sort(pr.maps, function(a, b) return a.rss > b.rss end)
  for j = 1, math.min(#pr.maps, 6) do
    local m = pr.maps[j]
    print(string.format("    %7d KiB (%d private)  %s %s", m.rss, m.priv, m.range, m.name))
  end
end

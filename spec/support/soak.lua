--- soak.lua - many containers, a very short cycle, for a bounded time.
--
-- Runs the engine against the fake Docker API server with `containers`
-- containers logging `rate` lines/s each and every follow stream cycled
-- every `cycle` seconds, for `seconds`. Samples the engine's open file
-- descriptors and RSS once a second and reads its "stats:" log lines.
-- Used by spec/integration/soak_spec.lua (short) and scripts/bench/soak.sh (long).
local dirent = require "posix.dirent"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local M = {}

local function fds(pid)
  local ok, list = pcall(dirent.dir, "/proc/" .. pid .. "/fd")
  return ok and (#list - 2) or nil -- without . and ..
end

local function rss_kb(pid)
  local s = proc.read("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- The newest "cycled N" count of the stats lines in log, or 0.
local function cycled_so_far(log)
  local last = 0
  for c in log:gmatch("stats: readers live %d+ .-cycled (%d+)") do last = tonumber(c) end
  return last
end

-- Lines "cN seq" of stdout text, counted per container.
local function lines_per_container(text)
  local per = {}
  for line in text:gmatch("([^\n]*)\n") do
    local name = line:match("^(c%d+) %d+")
    if name then per[name] = (per[name] or 0) + 1 end
  end
  return per
end

--- o = { containers = 100, rate = 10, cycle = 0.05, seconds = 10 }
-- Runs `seconds`, then, when o.want is given, on until what it asks for has
-- arrived or o.timeout (default 120) seconds have passed since the start:
--   want.cycles   stream cycles the stats lines count
--   want.lines    lines delivered for every container
--   want.stats    stats lines logged
-- These are counts that must arrive; the time is a limit, not a measure.
-- Returns a report table (see the fields at the end); report.wanted is true
-- when everything o.want asks for arrived.
function M.run(o)
  local n, seconds = o.containers or 100, o.seconds or 10
  local srv = fake.start { "--containers", tostring(n), "--rate", tostring(o.rate or 10),
                           "--stdout-only" }
  local e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.2 },
  outputs = { { type = "stdout", format = "plain" } },
  engine = { cycle = %g, stats_interval = 1, reconcile_interval = 5 },
}]], srv.host, o.cycle or 0.05) }
  local report = { containers = n, seconds = seconds, samples = {} }
  local ok, err = pcall(function()
    proc.wait_for(function() return e:stderr_text():find("readers live " .. n, 1, true) end, 30,
                  "all readers live")
    local t0 = proc.now()
    local want, limit = o.want, o.timeout or 120
    local function arrived()
      if not want then return true end
      local log = e:stderr_text()
      local _, stats = log:gsub("stats: readers live", "")
      if stats < (want.stats or 0) or cycled_so_far(log) < (want.cycles or 0) then return false end
      if want.lines then
        local per = lines_per_container(proc.read(e.dir .. "/stdout") or "")
        for i = 0, n - 1 do
          if (per["c" .. i] or 0) < want.lines then return false end
        end
      end
      return true
    end
    while proc.now() - t0 < seconds or (not arrived() and proc.now() - t0 < limit) do
      proc.sleep(1)
      report.samples[#report.samples + 1] = { t = proc.now() - t0, fds = fds(e:pid()),
                                              rss_kb = rss_kb(e:pid()) }
    end
    report.wanted = arrived()
    report.elapsed = proc.now() - t0
    report.exit_code = e:stop("TERM", 30)
  end)
  local log = e:stderr_text()
  local lines = e:stdout_lines()
  engine.release(e, srv)
  if not ok then error(err, 0) end
  -- every "stats:" line after the first: readers live and cycled
  report.live = {}
  for live, cycled in log:gmatch("stats: readers live (%d+) .-cycled (%d+)") do
    report.live[#report.live + 1] = tonumber(live)
    report.cycled = tonumber(cycled)
  end
  report.final = log:match("stopped: (readers live %d+, started %d+, stopped %d+, cycled %d+)")
  report.live_after_stop = tonumber(log:match("stopped: readers live (%d+)"))
  report.cycled = tonumber(log:match("stopped: readers live %d+, started %d+, stopped %d+, cycled (%d+)"))
  -- each container's lines "cN seq": every seq from 1 to the highest, once
  local seen, dups, gaps, total = {}, 0, 0, 0
  for _, line in ipairs(lines) do
    local name, seq = line:match("^(c%d+) (%d+)")
    if name then
      total = total + 1
      seen[name] = seen[name] or {}
      seq = tonumber(seq)
      if seen[name][seq] then dups = dups + 1 end
      seen[name][seq] = true
    end
  end
  for _, s in pairs(seen) do
    local max = 0
    for seq in pairs(s) do if seq > max then max = seq end end
    for i = 1, max do if not s[i] then gaps = gaps + 1 end end
  end
  report.lines, report.duplicates, report.gaps = total, dups, gaps
  report.fewest = nil -- the fewest lines one container delivered
  for i = 0, n - 1 do
    local k = 0
    for _ in pairs(seen["c" .. i] or {}) do k = k + 1 end
    if not report.fewest or k < report.fewest then report.fewest = k end
  end
  -- the baselines are taken once every stream has connected: the third
  -- second for RSS; for descriptors the most open in the first half of the
  -- run (a slow engine, such as a sanitizer build, may still be connecting
  -- at the third second), so a leak shows as growth in the second half
  local first, last = report.samples[math.min(3, #report.samples)], report.samples[#report.samples]
  local peak
  for i = 1, math.max(1, math.floor(#report.samples / 2)) do
    local s = report.samples[i]
    if s and s.fds and (not peak or s.fds > peak) then peak = s.fds end
  end
  report.fds_start, report.fds_end = peak, last and last.fds
  report.rss_start_kb, report.rss_end_kb = first and first.rss_kb, last and last.rss_kb
  return report
end

--- One line per figure, for people.
function M.format(r)
  return string.format(
    "soak: %d containers, %.0f s: cycles %s, live readers per second %s, after stop %s; " ..
    "fds %s -> %s, RSS %s KiB -> %s KiB; lines %d (fewest per container %s), duplicates %d, " ..
    "gaps %d; exit %s",
    r.containers, r.elapsed or r.seconds, tostring(r.cycled), table.concat(r.live, ","),
    tostring(r.live_after_stop), tostring(r.fds_start), tostring(r.fds_end),
    tostring(r.rss_start_kb), tostring(r.rss_end_kb), r.lines, tostring(r.fewest), r.duplicates, r.gaps,
    tostring(r.exit_code))
end

return M

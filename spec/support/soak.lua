--- soak.lua - many containers, a very short cycle, for a bounded time.
--
-- Runs the engine against the fake Docker API server with `containers`
-- containers logging `rate` lines/s each and every follow stream cycled
-- every `cycle` seconds, for `seconds`. Samples the engine's open file
-- descriptors and RSS once a second and reads its "stats:" log lines.
-- Used by spec/integration/soak_spec.lua (short) and scripts/soak.sh (long).
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

--- o = { containers = 100, rate = 10, cycle = 0.05, seconds = 10 }
-- Returns a report table (see the fields at the end).
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
    while proc.now() - t0 < seconds do
      proc.sleep(1)
      report.samples[#report.samples + 1] = { t = proc.now() - t0, fds = fds(e:pid()),
                                              rss_kb = rss_kb(e:pid()) }
    end
    report.exit_code = e:stop("TERM", 30)
  end)
  local log = e:stderr_text()
  local lines = e:stdout_lines()
  e:cleanup()
  srv:stop()
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
  -- the baseline is taken once every stream has connected (third second)
  local first, last = report.samples[math.min(3, #report.samples)], report.samples[#report.samples]
  report.fds_start, report.fds_end = first and first.fds, last and last.fds
  report.rss_start_kb, report.rss_end_kb = first and first.rss_kb, last and last.rss_kb
  return report
end

--- One line per figure, for people.
function M.format(r)
  return string.format(
    "soak: %d containers, %d s: cycles %s, live readers per second %s, after stop %s; " ..
    "fds %s -> %s, RSS %s KiB -> %s KiB; lines %d, duplicates %d, gaps %d; exit %s",
    r.containers, r.seconds, tostring(r.cycled), table.concat(r.live, ","),
    tostring(r.live_after_stop), tostring(r.fds_start), tostring(r.fds_end),
    tostring(r.rss_start_kb), tostring(r.rss_end_kb), r.lines, r.duplicates, r.gaps,
    tostring(r.exit_code))
end

return M

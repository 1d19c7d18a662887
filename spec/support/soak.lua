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

-- readlink(2) itself: luaposix's readlink refuses /proc's descriptor links,
-- whose lstat size is not their length ("readlink wrote only 9 of 64 bytes").
local ffi = require "ffi"
ffi.cdef [[ long readlink(const char *path, char *buf, unsigned long size); ]]
local linkbuf = ffi.new("char[?]", 4096)

-- The engine's open descriptors: their number, and a count per target
-- ("socket:[inode]", "pipe:[inode]", "anon_inode:[eventfd]", a path), or nil
-- when the process is gone.
local function fds(pid)
  local dir = "/proc/" .. pid .. "/fd"
  local ok, list = pcall(dirent.dir, dir)
  if not ok then return nil end
  local n, targets = 0, {}
  for _, name in ipairs(list) do
    if name ~= "." and name ~= ".." then
      n = n + 1
      local len = tonumber(ffi.C.readlink(dir .. "/" .. name, linkbuf, 4096))
      if len > 0 then -- a descriptor closed since the listing has no target
        local t = ffi.string(linkbuf, len)
        targets[t] = (targets[t] or 0) + 1
      end
    end
  end
  return n, targets
end

-- Descriptors open in every one of samples[i - span + 1 .. i]: per target,
-- the fewest any of them held. A follow stream lives one cycle (50 ms in
-- the soak), so its socket is never open a whole span of samples a second
-- apart; what is still open after seconds is the engine's own lasting set
-- (listening and event sockets, pipes, files, eventfds) and anything it
-- leaked. nil before the span is complete.
local function lasting(samples, i, span)
  if i < span then return nil end
  local held
  for k = i - span + 1, i do
    local t = samples[k].targets
    if not t then return nil end
    if not held then
      held = {}
      for name, c in pairs(t) do held[name] = c end
    else
      for name, c in pairs(held) do held[name] = math.min(c, t[name] or 0) end
    end
  end
  local n = 0
  for _, c in pairs(held) do n = n + c end
  return n
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
      local n_fds, targets = fds(e:pid())
      report.samples[#report.samples + 1] = { t = proc.now() - t0, fds = n_fds,
                                              targets = targets, rss_kb = rss_kb(e:pid()) }
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
  -- Descriptors: a count of open descriptors at one instant includes the
  -- sockets of the streams reconnecting at that instant (100 streams cycled
  -- every 50 ms: on a slow engine, such as a sanitizer build, several at
  -- every instant), so the measure is of the lasting ones (see lasting()):
  -- those held through 3 samples. The baseline is the fewest lasting over
  -- the first half of the run, from the third sample on (every stream has
  -- connected), and the end is the fewest over the last 3 samples: a
  -- descriptor leaked in the second half is held in every sample after it
  -- and shows in both minima's difference; a stream that happened to stay
  -- open for seconds does not.
  local span = 3
  for i, s in ipairs(report.samples) do s.lasting = lasting(report.samples, i, span) end
  local function fewest(from, to)
    local m
    for i = math.max(1, from), to do
      local v = report.samples[i] and report.samples[i].lasting
      if v and (not m or v < m) then m = v end
    end
    return m
  end
  local ns = #report.samples
  report.fds_start = fewest(span, math.max(span, math.floor(ns / 2)))
  report.fds_end = fewest(ns - span + 1, ns)
  report.fds_first, report.fds_last = nil, nil -- the plain counts, for people
  for _, s in ipairs(report.samples) do
    report.fds_first = report.fds_first or s.fds
    report.fds_last = s.fds or report.fds_last
  end
  local first, last = report.samples[math.min(3, ns)], report.samples[ns]
  report.rss_start_kb, report.rss_end_kb = first and first.rss_kb, last and last.rss_kb
  return report
end

--- One line per figure, for people.
function M.format(r)
  return string.format(
    "soak: %d containers, %.0f s: cycles %s, live readers per second %s, after stop %s; " ..
    "lasting fds %s -> %s (open fds %s -> %s), RSS %s KiB -> %s KiB; lines %d (fewest per container %s), duplicates %d, " ..
    "gaps %d; exit %s",
    r.containers, r.elapsed or r.seconds, tostring(r.cycled), table.concat(r.live, ","),
    tostring(r.live_after_stop), tostring(r.fds_start), tostring(r.fds_end),
    tostring(r.fds_first), tostring(r.fds_last),
    tostring(r.rss_start_kb), tostring(r.rss_end_kb), r.lines, tostring(r.fewest), r.duplicates, r.gaps,
    tostring(r.exit_code))
end

return M

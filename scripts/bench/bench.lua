-- bench.lua - the engine's benchmark suite (see scripts/bench/bench.sh).
--
--   luajit scripts/bench/bench.lua [--quick] [--runs N] [--lines N] [--out FILE] (and see below)
--
-- Runs the engine (build/engine) against the fake Docker API server
-- (build/fakedocker), which serves pre-generated timestamped, multiplexed
-- streams over a unix socket as fast as the engine reads, and prints a
-- Markdown table (also written to --out, default build/bench/results.md).
-- Scenarios:
--   1  one container, N lines (default 2,000,000), no filter, null output
--   2  the same through a filter that returns its batch unchanged
--   3  the same through the work filter: drop lines containing level=debug,
--      set severity to the upper-cased value of level=(%w+)
--   4  C containers logging 10 lines/s each for S seconds: RSS, CPU share,
--      RSS per reader beyond the first
--   5  100 idle containers for S seconds: CPU share and wake-ups per second
--   6  stop with C live readers: time from SIGTERM to exit
--   7  a real dockerd: a container that logged --docker-lines lines (default
--      1,000,000, about 180 bytes each) is drained by the engine (pass-through
--      filter, null output, a backfill run) while its CPU and dockerd's are
--      recorded, then read by `docker logs` for comparison; 7b: a tenth as
--      many lines logged live by a container the engine follows, with the
--      default docker.read_delay and with none. Uses the daemon
--      at $ENGINE_TEST_DOCKER_HOST (its folder $ENGINE_TEST_DOCKER_DIR), or
--      starts a private one with scripts/test/dockerd.sh and stops it at the end.
--   8  the network outputs: one container, --out-lines lines (default
--      300,000), no filter, through each of the http (NDJSON), Loki, OTLP
--      (protobuf, then encoding = "json") and ClickHouse outputs to a local HTTP receiver (build/receiver),
--      and the mqtt output to a local mosquitto (QoS 1, scripts/test/mosquitto.sh) until a subscriber got
--      every message, and the nats output to a private nats-server
--      (scripts/test/nats.sh, a JetStream file stream; its message count is
--      checked): engine CPU seconds per million lines, from start to exit
--   9  shipping to a slow collector: --ship-containers containers (default
--      50) backfill --ship-lines lines each (default 400, batches of 100
--      lines) through the http output to a local receiver that answers at
--      once or each request 100 ms after it came, with concurrency 1, 2, 4
--      and 8 and merging off (batch_max_bytes = 0), then 1 and 4 with the
--      default merging (queued batches merged into one request of up to
--      1 MiB), and 4 with batch_max_bytes = 256 KiB and 4 MiB: seconds from
--      the containers' start until the receiver holds every line, requests
--      made, and the ratio delayed/undelayed. --ship-runs C:B,... picks the
--      runs: concurrency C with batch_max_bytes B (0: merging off; d: the
--      default), e.g. --ship-containers 100 --ship-lines 4000
--      --ship-runs 4:d,4:0 for 400,000 lines
--  11  filters that fail hard (an FFI segfault, a pattern stuck in C, a
--      JIT-compiled endless loop): seconds from the line that sets each off
--      to its report, lines delivered, seconds a SIGTERM then takes
--  10  compression: one container's --out-lines lines (default 300,000,
--      logfmt, about 120 bytes each) through the http output (NDJSON, the
--      default batches of up to 1000 lines, one a request as when
--      compressed) to a local receiver, which keeps each request body;
--      build/bench_compress then compresses every body with gzip and with
--      zstd as the output does: MiB/s per core and ratio
-- Each of 1-3 reports lines/s, CPU seconds per million lines (the engine,
-- its zygote and filter process) and memory (the engine's peak RSS plus what
-- its zygote and filter process do not share with it),
-- the median of --runs runs, and lines/s as a ratio to a machine-speed
-- reference timed after each run (row R, scripts/bench/bench-ref.lua: the work
-- filter alone in a plain LuaJIT process with the JIT on, over the same
-- lines pre-built as tables), so that figures from different or busy
-- machines can be compared. --quick runs every scenario once at a tiny size
-- (what `make test` does, to keep the script working).
package.path = "./?.lua;" .. package.path
local proc = require "spec.support.proc"
local fake = require "spec.support.fake"
local unistd = require "posix.unistd"

local opt = { runs = 3, lines = 2000000, out = "build/bench/results.md", seconds = 60,
              containers = 1000, docker_lines = 1000000, out_lines = 300000,
              ship_containers = 50, ship_lines = 400 }
local function ship_runs(text)
  local runs = {}
  for c, b in text:gmatch("(%d+):(%w+)") do runs[#runs + 1] = { tonumber(c), tonumber(b) } end
  return runs
end
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--quick" then opt.quick = true
  elseif a == "--runs" then i = i + 1; opt.runs = tonumber(arg[i])
  elseif a == "--lines" then i = i + 1; opt.lines = tonumber(arg[i])
  elseif a == "--seconds" then i = i + 1; opt.seconds = tonumber(arg[i])
  elseif a == "--containers" then i = i + 1; opt.containers = tonumber(arg[i])
  elseif a == "--out" then i = i + 1; opt.out = arg[i]
  elseif a == "--docker-lines" then i = i + 1; opt.docker_lines = tonumber(arg[i])
  elseif a == "--out-lines" then i = i + 1; opt.out_lines = tonumber(arg[i])
  elseif a == "--ship-containers" then i = i + 1; opt.ship_containers = tonumber(arg[i])
  elseif a == "--ship-lines" then i = i + 1; opt.ship_lines = tonumber(arg[i])
  elseif a == "--ship-runs" then i = i + 1; opt.ship_runs = ship_runs(arg[i])
  elseif a == "--only" then i = i + 1; opt.only = {}
    for n in arg[i]:gmatch("%d+") do opt.only[tonumber(n)] = true end
  else io.stderr:write("bench: unknown argument ", a, "\n"); os.exit(2) end
  i = i + 1
end
if opt.quick then
  opt.runs, opt.lines, opt.seconds, opt.containers, opt.docker_lines = 1, 20000, 2, 50, 20000
  opt.out_lines = 5000
  opt.ship_containers, opt.ship_lines = 5, 100
end
local function want(s) return not opt.only or opt.only[s] end

local HZ = tonumber((select(2, proc.sh("getconf CLK_TCK")) or ""):match("%d+")) or 100
local ENGINE = os.getenv("ENGINE_BIN") or "build/engine"

-- CPU seconds (user + system, all threads) of a process.
local function cpu(pid)
  local s = proc.read("/proc/" .. pid .. "/stat") or ""
  local rest = s:match("%) (.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  return (tonumber(f[12]) + tonumber(f[13])) / HZ
end

local function status_kb(pid, key)
  return tonumber((proc.read("/proc/" .. pid .. "/status") or ""):match(key .. ":%s*(%d+)"))
end

-- pid and its descendants (the zygote and the filter process it forked),
-- as a list, pid first.
local family = proc.family

-- The sum over pid's family of cpu() and of a status field (KiB).
local function family_cpu(pid)
  local n = 0
  for _, p in ipairs(family(pid)) do n = n + (cpu(p) or 0) end
  return n
end

-- The engine's memory: its peak RSS, plus the memory its zygote and filter
-- process do not share (private pages, now: the kernel keeps no peak of
-- those; the pages they share after the forks count once).
local function family_kb(pid)
  local n = status_kb(pid, "VmHWM") or 0
  for i, c in ipairs(family(pid)) do
    if i > 1 then
      local r = proc.read("/proc/" .. c .. "/smaps_rollup") or ""
      n = n + (tonumber(r:match("Private_Clean:%s*(%d+)")) or 0) +
              (tonumber(r:match("Private_Dirty:%s*(%d+)")) or 0)
    end
  end
  return n
end

-- Context switches of every thread of pid (wake-ups).
local function switches(pid)
  local ok, list = pcall(require("posix.dirent").dir, "/proc/" .. pid .. "/task")
  local n = 0
  for _, t in ipairs(ok and list or {}) do
    if t:match("^%d+$") then
      local s = proc.read("/proc/" .. pid .. "/task/" .. t .. "/status") or ""
      n = n + (tonumber(s:match("voluntary_ctxt_switches:%s*(%d+)")) or 0) +
              (tonumber(s:match("nonvoluntary_ctxt_switches:%s*(%d+)")) or 0)
    end
  end
  return n
end

-- Starts the engine on pipeline_src (where @DIR@ stands for the run's own
-- folder) with the extra arguments o.args. With o.timed, a shell runs it and
-- reports its CPU once it has waited for it (engine_cpu); its pid is kept
-- for finish. Returns the process and the folder.
local function start_engine(pipeline_src, o)
  o = o or {}
  local dir = select(2, proc.sh("mktemp -d /tmp/bench.XXXXXX")):gsub("%s+$", "")
  local f = assert(io.open(dir .. "/p.lua", "w"))
  f:write((pipeline_src:gsub("@DIR@", dir)))
  f:close()
  local argv = { ENGINE, "run", dir .. "/p.lua", "--state-dir", "" }
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  if not o.timed then
    return proc.spawn { argv = argv, stdout = "/dev/null", stderr = dir .. "/stderr" }, dir
  end
  return proc.spawn { argv = { "sh", "-c", proc.join(argv) .. " & echo $! > " .. proc.quote(dir .. "/pid") ..
                                           "; wait $!; code=$?; times; exit $code" },
                      stdout = dir .. "/times", stderr = dir .. "/stderr" }, dir
end

local function log_of(dir) return proc.read(dir .. "/stderr") or "" end

-- CPU seconds of a timed engine (children's user and system times, as the
-- shell's `times` printed them once the engine ended).
local function engine_cpu(dir)
  local u, s = (proc.read(dir .. "/times") or ""):match("[^\n]*\n(%d+m[%d.]+s) (%d+m[%d.]+s)")
  local function secs(t)
    local m, x = (t or "0m0s"):match("(%d+)m([%d.]+)s")
    return tonumber(m) * 60 + tonumber(x)
  end
  return secs(u) + secs(s)
end

-- Waits (bounded) for the engine to end, after a SIGTERM unless it ended
-- by itself. Returns its exit code, its log and, when timed, its CPU
-- seconds; removes its folder.
local function finish(p, dir)
  if p:running() then
    local pid = tonumber(proc.read(dir .. "/pid") or "")
    if pid then
      require("posix.signal").kill(pid, require("posix.signal").SIGTERM)
    else
      p:signal("TERM")
    end
  end
  local code = p:wait(60)
  if code == nil then p:kill() end
  local log, c = log_of(dir), engine_cpu(dir)
  p:cleanup()
  proc.sh("rm -rf " .. proc.quote(dir))
  return code, log, c
end

-- The filters of scenarios 1-3, shared with the reference (bench-ref.lua).
local FILTERS = dofile("scripts/bench/bench-filters.lua")

-- Scenarios 1-3: one run. Returns lines/s, CPU s per million lines, peak RSS KiB.
local function throughput(scenario, isolation)
  local n = opt.lines
  -- the container starts (and exits: its lines are all preloaded) a little
  -- after the engine, which follows it from that start event; a container
  -- that exited before the engine started would not be followed
  local DELAY = 3
  local srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(n), "--lines",
                           tostring(n), "--retain", tostring(n), "--logfmt",
                           "--start-delay", tostring(DELAY) }
  local t_start = proc.now() + DELAY -- about when the container starts
  local src = string.format([[
return {
  docker = { host = %q },
  engine = { filter_isolation = %q },
  %s
  outputs = { { type = "null" } },
}]], srv.host, isolation or "thread", FILTERS[scenario])
  local p, dir = start_engine(src)
  local c, hwm
  proc.wait_for(function()
    if log_of(dir):find("stopped following", 1, true) then
      c = family_cpu(p:pid())
      hwm = family_kb(p:pid())
      return true
    end
  end, 600, "the engine to read every line")
  local t = proc.now() - t_start
  finish(p, dir)
  srv:stop()
  return n / t, c / n * 1e6, hwm
end

local function median(xs)
  table.sort(xs)
  return xs[math.ceil(#xs / 2)]
end

local rows = {}
local function row(...) rows[#rows + 1] = "| " .. table.concat({ ... }, " | ") .. " |" end

local names = { "one container, no filter, null output", "filter returning its batch",
                "work filter (drop debug, severity)" }
-- The machine-speed reference (scripts/bench/bench-ref.lua): the work filter in a
-- plain LuaJIT process, JIT on, over the same lines pre-built as tables.
-- Timed right after each engine run, so that each ratio compares two
-- figures taken on the machine as it was at that moment.
local function reference()
  local ok, out = proc.sh("luajit scripts/bench/bench-ref.lua 3 " .. opt.lines, 600)
  local lps, us = (out or ""):match("^(%S+) (%S+)")
  assert(ok and lps, "the reference failed: " .. tostring(out))
  return tonumber(lps), tonumber(us)
end

local refs = {}
-- 1-3 with the filters on the pipeline thread (the default), then 2 and 3
-- with them in their own process (engine.filter_isolation = "process")
for _, sc in ipairs { { 1 }, { 2 }, { 3 }, { 2, "process" }, { 3, "process" } } do
  local s, iso = sc[1], sc[2]
  if not want(s) then goto next end
  local r, c, m, q = {}, {}, {}, {}
  for _ = 1, opt.runs do
    local a, b, d = throughput(s, iso)
    local ra = reference()
    r[#r + 1], c[#c + 1], m[#m + 1], q[#q + 1] = a, b, d, a / ra
    refs[#refs + 1] = ra
  end
  row(s .. (iso and "p" or ""), names[s] .. (iso and ", filters in their own process" or ""),
      string.format("%.0f lines/s = %.2fx the reference", median(r), median(q)),
      string.format("%.2f s per M lines (%.2f us/line)", median(c), median(c)),
      string.format("%.1f MiB", median(m) / 1024))
  ::next::
end
if #refs > 0 then
  local ra = median(refs)
  row("R", "reference: work filter in plain LuaJIT, JIT on, lines pre-built as tables",
      string.format("%.0f lines/s", ra), string.format("%.2f us/line", 1e6 / ra), "")
end

-- Scenario 4: many containers logging steadily.
if want(4) then
  local n = opt.containers
  local srv = fake.start { "--containers", tostring(n), "--rate", "10", "--logfmt" }
  local p, dir = start_engine(string.format([[
return { docker = { host = %q }, outputs = { { type = "null" } }, engine = { stats_interval = 1 } }]],
                                            srv.host))
  proc.wait_for(function() return log_of(dir):find("readers live " .. n, 1, true) end, 120, "all readers")
  proc.sleep(1)
  local c0, t0 = cpu(p:pid()), proc.now()
  proc.sleep(opt.seconds)
  local share = (cpu(p:pid()) - c0) / (proc.now() - t0)
  local rss = status_kb(p:pid(), "VmRSS")
  finish(p, dir)
  srv:stop()
  -- the same engine with one container, for RSS per reader
  local srv1 = fake.start { "--containers", "1", "--rate", "10", "--logfmt" }
  local p1, dir1 = start_engine(string.format([[
return { docker = { host = %q }, outputs = { { type = "null" } } }]], srv1.host))
  proc.wait_for(function() return log_of(dir1):find("following container", 1, true) end, 30, "a reader")
  proc.sleep(2)
  local rss1 = status_kb(p1:pid(), "VmRSS")
  finish(p1, dir1)
  srv1:stop()
  row("4", string.format("%d containers x 10 lines/s, %d s", n, opt.seconds),
      string.format("%.1f MiB RSS", rss / 1024), string.format("%.2f%% of a core", share * 100),
      string.format("%.1f KiB per reader beyond the first", (rss - rss1) / (n - 1)))
end

-- Scenario 5: idle containers.
if want(5) then
  local srv = fake.start { "--containers", "100", "--rate", "0" }
  local p, dir = start_engine(string.format([[
return { docker = { host = %q }, outputs = { { type = "null" } } }]], srv.host))
  proc.wait_for(function()
    local _, k = log_of(dir):gsub("following container", "")
    return k >= 100
  end, 60, "100 readers")
  proc.sleep(1)
  local c0, w0, t0 = cpu(p:pid()), switches(p:pid()), proc.now()
  proc.sleep(opt.seconds)
  local dt = proc.now() - t0
  local share, wakeups = (cpu(p:pid()) - c0) / dt, (switches(p:pid()) - w0) / dt
  finish(p, dir)
  srv:stop()
  row("5", string.format("100 idle containers, %d s", opt.seconds),
      string.format("%.3f%% of a core", share * 100), string.format("%.1f wake-ups/s", wakeups), "")
end

-- Scenario 6: stop with many live readers.
if want(6) then
  local n = opt.containers
  local srv = fake.start { "--containers", tostring(n), "--rate", "1" }
  local p, dir = start_engine(string.format([[
return { docker = { host = %q }, outputs = { { type = "null" } }, engine = { stats_interval = 1 } }]],
                                            srv.host))
  proc.wait_for(function() return log_of(dir):find("readers live " .. n, 1, true) end, 120, "all readers")
  local t0 = proc.now()
  p:signal("TERM")
  local code = p:wait(30)
  local t = proc.now() - t0
  p:cleanup()
  proc.sh("rm -rf " .. proc.quote(dir))
  srv:stop()
  row("6", string.format("stop with %d live readers", n), string.format("%.0f ms to exit", t * 1000),
      "exit " .. tostring(code), "")
end

-- Scenario 7: a real dockerd serving one container's history.
if want(7) then
  local host, dir = os.getenv("ENGINE_TEST_DOCKER_HOST"), os.getenv("ENGINE_TEST_DOCKER_DIR")
  local own = not (host and host ~= "" and dir and dir ~= "")
  if own then
    dir = select(2, proc.sh("mktemp -d /tmp/ebd.XXXXXX")):gsub("%s+$", "")
    local ok, out = proc.sh("sh scripts/test/dockerd.sh start " .. proc.quote(dir), 180)
    if not ok then error("cannot start a private dockerd: " .. out) end
    host = out:match("(unix://%S+)%s*$")
  end
  require("posix.stdlib").setenv("ENGINE_TEST_DOCKER_HOST", host)
  local dockerenv = require "spec.support.dockerenv"
  local env = dockerenv.get()
  local dpid = tonumber(proc.read(dir .. "/dockerd.pid") or "")
  local n = opt.docker_lines
  local name = dockerenv.unique("bench7")
  local ok7, err7 = pcall(function()
    env:run { name = name, cmd = string.format([[awk 'BEGIN {
      split("info info info info info info info info info info info info info info debug debug debug warn warn error", lv, " ")
      for (i = 0; i < %d; i++)
        printf "level=%%s msg=\"request served\" status=200 path=/api/v1/items/%%d dur_ms=%%d trace=%%040d user_agent=\"bench/1.0 (edge)\" bytes=%%d\n", lv[i %% 20 + 1], i, i %% 97, i, i %% 4096
    }']], n) }
    env:wait_exit(name, 600)
    -- the engine: a backfill run drains the container's whole history
    local d0, t0 = cpu(dpid), proc.now()
    local p, pdir = start_engine(string.format([[return { docker = { host = %q },
      select = { include = { name = { %q } } },
      filters = { function(batch) return batch end },
      outputs = { { type = "null" } } }]], host, name),
      { args = { "--since", "1970-01-01T00:00:00Z" }, timed = true })
    p:wait(600)
    local te, de = proc.now() - t0, cpu(dpid) - d0
    local code, log, ecpu = finish(p, pdir)
    local read = tonumber(log:match("records in (%d+)")) or -1
    if code ~= 0 or read ~= n then
      error(string.format("the engine read %d of %d lines (exit %s)", read, n, tostring(code)))
    end
    -- docker logs on the same container: with timestamps (what the engine
    -- asks for, more work for the daemon) and without
    local function docker_logs(extra)
      local d, t = cpu(dpid), proc.now()
      local ok = proc.sh(proc.join { dockerenv.CLIENT, "-H", host, "logs", extra, name } .. " >/dev/null 2>&1", 600)
      assert(ok, "docker logs failed")
      return proc.now() - t, cpu(dpid) - d
    end
    local tt, dt = docker_logs("-t")
    local tl, dl = docker_logs("--details=false")
    row("7", string.format("real dockerd, %d lines: engine drain vs `docker logs`", n),
        string.format("engine %.2f s (%.0f lines/s); docker logs -t %.2f s; docker logs %.2f s", te,
                      n / te, tt, tl),
        string.format("engine %.2f s while dockerd %.2f s (%.0f%%); dockerd %.2f s for docker logs -t, %.2f s for docker logs",
                      ecpu, de, de > 0 and ecpu / de * 100 or 0, dt, dl), "")
    -- 7b: the same lines logged live by a container the engine follows,
    -- with the default read_delay and with none
    local m = math.floor(n / 10)
    local cells = {}
    for _, delay in ipairs({ "0.5", "0" }) do
      local lname = dockerenv.unique("bench7b")
      local lp, ldir = start_engine(string.format([[return { docker = { host = %q, read_delay = %s },
        select = { include = { name = { %q } } },
        outputs = { { type = "file", path = "@DIR@/out.log", format = "plain" } } }]], host, delay,
        lname))
      proc.wait_for(function() return log_of(ldir):find("connected to the Docker daemon", 1, true) end,
                    30, "the engine to connect")
      proc.sleep(1)
      local l0 = proc.now()
      env:run { name = lname, cmd = string.format([[awk 'BEGIN { for (i = 0; i < %d; i++)
        printf "level=info msg=\"request served\" status=200 path=/api/v1/items/%%d dur_ms=%%d\n", i, i %% 97 }']], m) }
      local lt
      proc.wait_for(function() -- the lines are written as their batches go through
        local ok, out = proc.sh("wc -l < " .. proc.quote(ldir .. "/out.log"))
        if ok and (tonumber(out:match("%d+")) or 0) >= m then lt = proc.now() - l0; return true end
      end, 600, "every live line")
      local _, log = finish(lp, ldir)
      local rests = log:match("rests (%d+)") or "?"
      env:rm(lname)
      cells[#cells + 1] = string.format("read_delay %s: %.2f s, %s rests", delay, lt, rests)
    end
    row("7b", string.format("real dockerd, a container logging %d lines live, followed", m),
        table.concat(cells, "; "), "(time from the container's start to its last line written)", "")
  end)
  env:rm(name)
  if own then proc.sh("sh scripts/test/dockerd.sh stop " .. proc.quote(dir), 120) end
  if not ok7 then error(err7, 0) end
end

-- Scenario 8: the network outputs' encoders and HTTP client.
if want(8) then
  local receiver = require "spec.support.receiver"
  local n = opt.out_lines
  local kinds = {
    { "http (NDJSON)", 'type = "http", url = "%s/ingest"' },
    { "loki", 'type = "loki", url = "%s/loki/api/v1/push"' },
    { "otlp (protobuf)", 'type = "otlp", url = "%s/v1/logs"' },
    { "otlp (json)", 'type = "otlp", url = "%s/v1/logs", encoding = "json"' },
    { "clickhouse", 'type = "clickhouse", url = "%s/", table = "logs"' },
    -- a local mosquitto (scripts/test/mosquitto.sh), QoS 1; a subscriber counts
    -- the messages and the engine stops once it got all of them
    { "mqtt (QoS 1)", 'type = "mqtt", host = "127.0.0.1", port = %d, topic = "bench/{name}"', mqtt = true },
    { "nats", 'type = "nats", url = "%s", subject = "logs.{name}", stream = "LOGS"', nats = true },
  }
  local cells = {}
  for _, k in ipairs(kinds) do
    local srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(n), "--lines",
                             tostring(n), "--retain", tostring(n), "--logfmt" }
    local rx, mq, sub, natsdir, url
    if k.mqtt then
      local unistd = require "posix.unistd"
      mq = { dir = require("spec.support.server").folder("mqtt"), port = 19500 + unistd.getpid() % 400 }
      local ok, out = proc.sh(proc.join { "sh", "scripts/test/mosquitto.sh", "start", mq.dir, tostring(mq.port) }, 60)
      if not ok then error("mosquitto: " .. out, 0) end
      sub = proc.spawn { argv = { "mosquitto_sub", "-h", "127.0.0.1", "-p", tostring(mq.port), "-q", "1",
                                  "-t", "bench/#", "-C", tostring(n) }, stdout = "/dev/null" }
      proc.sleep(0.5) -- subscribed
      url = mq.port
    elseif k.nats then
      local port = require("spec.support.metrics").random_port()
      natsdir = select(2, proc.sh("mktemp -d /tmp/bench-nats.XXXXXX")):gsub("%s+$", "")
      local ok, out = proc.sh(proc.join { "sh", "scripts/test/nats.sh", "start", natsdir .. "/srv", tostring(port),
                                          tostring(port + 1) }, 30)
      assert(ok, out)
      url = out:gsub("%s+$", "")
      ok, out = proc.sh(proc.join { "build/natsjs", url, "add", "LOGS", "logs.>" }, 30)
      assert(ok, out)
      rx = { stop = function()
        local got = select(2, proc.sh(proc.join { "build/natsjs", url, "count", "LOGS" }, 30))
        proc.sh(proc.join { "sh", "scripts/test/nats.sh", "stop", natsdir .. "/srv" }, 30)
        proc.sh("rm -rf " .. proc.quote(natsdir))
        if tonumber(got:match("%d+")) ~= n then
          error(string.format("nats: the stream holds %s of %d lines", got:gsub("%s+$", ""), n))
        end
      end }
    else
      rx = receiver.start {}
      url = rx.url
    end
    local p, dir = start_engine(string.format("return { docker = { host = %q }, outputs = { { %s } } }",
                                              srv.host, k[2]:format(url)), { timed = true })
    proc.wait_for(function() return log_of(dir):find("stopped following", 1, true) end, 600,
                  "the engine to read every line")
    if sub then
      local code = sub:wait(600)
      if code ~= 0 then error("mqtt: the subscriber did not get every message (exit " .. tostring(code) .. ")", 0) end
    end
    local code, log, c = finish(p, dir)
    if mq then proc.sh(proc.join { "sh", "scripts/test/mosquitto.sh", "stop", mq.dir }, 60) end
    local out = tonumber(log:match("records in %d+, out (%d+)")) or -1
    if rx then rx:stop() end
    srv:stop()
    if code ~= 0 or out ~= n then
      error(string.format("%s: the engine wrote %d of %d lines (exit %s)", k[1], out, n, tostring(code)))
    end
    cells[#cells + 1] = string.format("%s %.2f s", k[1], c / n * 1e6)
  end
  row("8", string.format("network outputs, %d lines each, no filter", n),
      "every line written", table.concat(cells, "; ") .. " per M lines", "")
end

-- Scenario 9: an http output with several requests in flight, to a slow
-- collector. One run: seconds until the receiver holds every line, and the
-- requests it got.
local function ship(concurrency, delay_ms, max_bytes)
  local receiver = require "spec.support.receiver"
  local c, n = opt.ship_containers, opt.ship_lines
  local DELAY = 2 -- the containers start after the engine, which reads them from their start
  local srv = fake.start { "--containers", tostring(c), "--rate", "0", "--preload", tostring(n),
                           "--lines", tostring(n), "--stdout-only", "--start-delay", tostring(DELAY) }
  local rx = receiver.start { "--delay-ms", tostring(delay_ms) }
  local t_start = proc.now() + DELAY
  local p, dir = start_engine(string.format([[
return {
  docker = { host = %q },
  batch = { max_lines = 100 },
  outputs = { { type = "http", url = %q, concurrency = %d, %s } },
}]], srv.host, rx.url, concurrency, max_bytes and "batch_max_bytes = " .. max_bytes or ""))
  local glob = proc.quote(rx.dir .. "/req") .. "/*.body"
  local t
  local ok, err = pcall(proc.wait_for, function()
    if not p:running() then error("the engine stopped: " .. log_of(dir), 0) end
    local _, out = proc.sh("cat " .. glob .. " 2>/dev/null | wc -l")
    if tonumber(out) >= c * n then
      t = proc.now() - t_start
      return true
    end
  end, 600, "the receiver to hold every line")
  local _, reqs = proc.sh("ls " .. proc.quote(rx.dir .. "/req") .. " | grep -c '[.]req$'")
  finish(p, dir)
  rx:stop()
  srv:stop()
  if not ok then error(err, 0) end
  return t, tonumber(reqs)
end

if want(9) then
  local cells = {}
  local runs = opt.ship_runs or (opt.quick and { { 1, 0 }, { 4 } })
               or { { 1, 0 }, { 2, 0 }, { 4, 0 }, { 8, 0 }, { 1 }, { 4 }, { 4, 262144 }, { 4, 4194304 } }
  for _, r in ipairs(runs) do
    local conc, max_bytes = r[1], r[2]
    local fast, fast_reqs = ship(conc, 0, max_bytes)
    local slow, slow_reqs = ship(conc, 100, max_bytes)
    local merging = max_bytes == 0 and " unmerged" or not max_bytes and " merged (default)"
                    or string.format(" merged, batch_max_bytes %d", max_bytes)
    cells[#cells + 1] = string.format("concurrency %d%s: %.2f s / %.2f s = %.1fx (%d / %d requests)",
                                      conc, merging, slow, fast, slow / fast, slow_reqs, fast_reqs)
  end
  row("9", string.format("%d containers backfill %d lines each to an http receiver answering "
                         .. "after 100 ms / at once", opt.ship_containers, opt.ship_lines),
      table.concat(cells, "; "), "", "")
end

-- Scenario 10: gzip against zstd on the bodies the http output writes.
if want(10) then
  local receiver = require "spec.support.receiver"
  local n = opt.out_lines
  local srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(n), "--lines",
                           tostring(n), "--retain", tostring(n), "--logfmt" }
  local rx = receiver.start {}
  local p, dir = start_engine(string.format(
    -- one batch a body, as a compressing output sends them (never merged)
    'return { docker = { host = %q }, outputs = { { type = "http", url = "%s/ingest", batch_max_bytes = 0 } } }',
    srv.host, rx.url))
  proc.wait_for(function() return log_of(dir):find("stopped following", 1, true) end, 600,
                "the engine to read every line")
  finish(p, dir)
  local ok, out = proc.sh("make -s build/bench_compress >/dev/null && build/bench_compress "
                          .. proc.quote(rx.dir .. "/req") .. "/*.body", 600)
  rx:stop()
  srv:stop()
  assert(ok, out)
  io.stderr:write(out)
  local bodies = out:match("^(%d+ bodies[^\n]*)")
  local cells = {}
  for name, mibs, ms, ratio in out:gmatch("\n| ([^|]-) | ([%d.]+) | ([%d.]+) | ([%d.]+) |") do
    cells[#cells + 1] = string.format("%s: %s MiB/s, %s ms CPU per MiB, ratio %s", name, mibs, ms, ratio)
  end
  row("10", string.format("compressing the http output's bodies of %d logfmt lines (%s)", n, bodies or "?"),
      table.concat(cells, "; "), "", "")
end

-- Scenario 11: filters that fail hard, in their own process.
-- For each failure, the seconds from the Docker timestamp of the line that
-- sets it off to the engine's report of it (filter_timeout 1 s, batches
-- flushed every 50 ms), whether every line of the container arrived, and
-- the seconds a SIGTERM then takes to end the engine.
-- Seconds of the day of an RFC3339 time (the log's, a record's).
local function day_secs(t)
  local h, m, sec = t:match("T(%d+):(%d+):([%d.]+)")
  return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec)
end
if want(11) then
  local cases = {
    { "FFI segfault", "ffi.cast('int *', 0)[0] = 1", "the filter process" },
    { "pattern stuck in C", "local s = string.rep('x', 5000); s:match('(.-)x(.-)x(.-)y')", "timed out" },
    { "JIT-compiled endless loop", "local x = 0; while true do x = x + 1 end", "timed out" },
  }
  local cells = {}
  for _, k in ipairs(cases) do
    local srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "100", "--linger",
                             "--stdout-only" }
    local p, dir = start_engine(string.format([[
local ffi = require("ffi")
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { filter_isolation = "process", filter_timeout = 1, stop_timeout = 5 },
  filters = { { name = "fragile", process = function(b)
    for _, r in ipairs(b) do if r.line == "c0 50" then %s end end
    return b
  end } },
  outputs = { { type = "file", path = "@DIR@/out.jsonl" } },
}]], srv.host, k[2]))
    local out = function() return proc.read(dir .. "/out.jsonl") or "" end
    proc.wait_for(function() return out():find('"line":"c0 100"', 1, true) end, 60, "every line")
    local log = log_of(dir)
    local trigger = out():match('"time":"([^"]+)","stream":"stdout","container":"%x+","name":"c0",[^\n]-"line":"c0 50"')
    local report = log:match("\n(%S+) error %[c0%] filter fragile[^\n]*" .. k[3]:gsub("%p", "%%%0"))
    local lines = select(2, out():gsub('"line":"c0 %d+"', ""))
    local t0 = proc.now()
    local code = finish(p, dir)
    local stop = proc.now() - t0
    srv:stop()
    local dt = trigger and report and day_secs(report) - day_secs(trigger)
    cells[#cells + 1] = string.format("%s: reported %s s after its line, %d of 100 lines, stop %.2f s (exit %s)",
                                      k[1], dt and string.format("%.2f", dt) or "?", lines, stop,
                                      tostring(code))
  end
  row("11", "filters failing hard (filter_timeout 1 s)", table.concat(cells, "; "), "", "")
end

local head = "| # | scenario | result | CPU | memory |\n|---|---|---|---|---|\n"
local text = head .. table.concat(rows, "\n") .. "\n"
io.write(text)
proc.sh("mkdir -p " .. proc.quote(opt.out:match("^(.*)/") or "."))
local f = io.open(opt.out, "w")
if f then f:write(text); f:close() end

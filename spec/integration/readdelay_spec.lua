-- docker.read_delay: a slow follow stream is read a few lines at a time
-- (one read per delay, not one per line) and still delivers every line
-- exactly once; a busy stream is read as fast as it comes, also from a real
-- daemon, which writes and flushes each line on its own.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local LINES = 60

local function pipeline(host, delay)
  return string.format([[
return {
  docker = { host = %q, read_delay = %s },
  batch = { flush_interval = 0.05 },
}]], host, delay)
end

local function each_once(e)
  local count = {}
  for _, r in ipairs(e:json_records()) do
    local seq = tonumber(r.line:match("^c0 (%d+)"))
    if seq then count[seq] = (count[seq] or 0) + 1 end
  end
  for i = 1, LINES do assert.equal(1, count[i], "line " .. i) end
end

-- Runs the engine on one container logging LINES lines at 40 lines/s;
-- returns the Docker reads and rests of its run.
local function run(delay)
  local srv = fake.start { "--containers", "1", "--rate", "40", "--lines", tostring(LINES) }
  local e = engine.start { pipeline = pipeline(srv.host, delay) }
  local ok, err = pcall(function()
    proc.wait_for(function()
      local n = 0
      for _, r in ipairs(e:json_records()) do if r.line:match("^c0 ") then n = n + 1 end end
      return n >= LINES
    end, 60, "every line of c0")
    assert.equal(0, e:stop("TERM", 10))
    each_once(e)
  end)
  local reads, rests = e:stderr_text():match("docker reads (%d+), rests (%d+)")
  engine.release(e, srv)
  assert(ok, err)
  return tonumber(reads), tonumber(rests)
end

describe("docker.read_delay #sanitize", function()
  it("reads a slow stream a few lines at a time, every line once", function()
    local at_once_reads, at_once_rests = run("0")
    local delayed, rests = run("0.5")
    print(string.format("reads: %d (rests %d) at once, %d (rests %d) with a 0.5 s delay",
                        at_once_reads, at_once_rests, delayed, rests))
    -- Without a delay a stream never rests. With one, the 60 lines the
    -- container writes over 1.5 s are read after rests of 0.5 s each: a
    -- handful of reads (plus the list, inspect and ping answers). A busy
    -- machine only joins more lines into a read, so the bound holds
    -- whatever the load; a delay that is not honoured reads about a line
    -- per read.
    assert.equal(0, at_once_rests)
    assert.is_true(rests >= 1, "the slow stream never rested")
    assert.is_true(delayed <= LINES / 3, "reads with a 0.5 s delay: " .. tostring(delayed))
  end)

  it("reads a busy stream without resting, with a delay set", function()
    local n = 200000
    local srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(n), "--lines",
                             tostring(n), "--retain", tostring(n) }
    local e, url = metrics.start_engine { docker_host = srv.host, docker = "read_delay = 5",
                                          outputs = '{ type = "null" }' }
    local ok, err = pcall(function()
      -- a stream that rested 5 s after each read would show its rests in
      -- the metrics long before it read the history: fail then, not at
      -- the time limit
      proc.wait_for(function()
        local _, body = metrics.get(url .. "/metrics")
        local rested = metrics.parse(body):value("engine_docker_read_rests_total")
        if rested and rested > 5 then error("the busy stream rested " .. rested .. " times", 0) end
        return e:stderr_text():find("stopped following", 1, true)
      end, 300, "the whole history")
      assert.equal(0, e:stop("TERM", 10))
      assert.equal(n, tonumber(e:stderr_text():match("records in (%d+)")))
      local rests = tonumber(e:stderr_text():match("docker reads %d+, rests (%d+)"))
      assert.is_true(rests <= 5, "rests: " .. tostring(rests))
    end)
    engine.release(e, srv)
    assert(ok, err)
  end)

  it("reads a busy container of a real daemon as data comes, not once per delay", function()
    local dockerenv = require "spec.support.dockerenv"
    local env = dockerenv.get()
    local n = 50000
    local name = dockerenv.unique("rdbusy")
    local e = engine.start { pipeline = string.format([[
return { docker = { host = %q }, select = { include = { name = { %q } } },
         outputs = { { type = "stdout", format = "plain" } } }]], env.host, name) }
    local ok, err = pcall(function()
      proc.wait_for(function() return e:stderr_text():find("connected to the Docker daemon", 1, true) end,
                    20, "the engine to connect")
      proc.sleep(1) -- its event stream is open
      env:run { name = name, cmd = string.format(
        [[awk 'BEGIN { for (i = 1; i <= %d; i++) printf "busy %%d level=info msg=\"request served\" path=/api/v1/items/%%d\n", i, i }']], n) }
      proc.wait_for(function()
        local t = proc.read(e.dir .. "/stdout") or ""
        local _, k = t:gsub("\n", "")
        return k >= n
      end, 240, n .. " lines")
      assert.equal(0, e:stop("TERM", 10))
      local seen, i = {}, 0
      for line in (proc.read(e.dir .. "/stdout") or ""):gmatch("[^\n]+") do
        local k = tonumber(line:match("^busy (%d+) "))
        if k then seen[k] = (seen[k] or 0) + 1; i = i + 1 end
      end
      assert.equal(n, i)
      for k = 1, n do assert.equal(1, seen[k], "line " .. k) end
      -- A rest per delay would hold the stream to what the daemon's socket
      -- buffers per delay (a few hundred lines): hundreds of rests for
      -- these lines. Read as data comes, it rests until its rate is known.
      local rests = tonumber(e:stderr_text():match("docker reads %d+, rests (%d+)"))
      print(string.format("busy container of a real daemon: %d lines, %d rests", n, rests))
      assert.is_true(rests <= 5, "rests: " .. tostring(rests))
    end)
    proc.each(function() e:cleanup() end, function() env:rm(name) end)
    assert(ok, err)
  end)
end)

-- Faults a Docker daemon can throw at a reader, from the fake API server:
-- each is logged clearly, recovered from where that is possible, loses no
-- line that was received, and the engine still stops within its bound.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local LINES = 60
-- how long a stop may take: the pipelines' stop_timeout (3 s) and a second
local STOP_BOUND = 3 + 1

local function pipeline(host, extra)
  return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { cycle = 1, backoff_initial = 0.05, backoff_max = 0.5, reconcile_interval = 1,
             stop_timeout = 3, %s },
}]], host, extra or "")
end

-- The sequence numbers delivered for container `name`, checking the fake
-- server's layout: odd numbers on stdout, even on stderr.
local function seqs(recs, name)
  local count = {}
  for _, r in ipairs(recs) do
    local n, seq = r.line:match("^(%S+) (%d+)")
    if n == name then
      seq = tonumber(seq)
      assert.equal(seq % 2 == 1 and "stdout" or "stderr", r.stream)
      count[seq] = (count[seq] or 0) + 1
    end
  end
  return count
end

local function assert_each_once(recs, name, n)
  local count = seqs(recs, name)
  for i = 1, n do
    assert.equal(1, count[i], string.format("%s line %d arrived %s times", name, i, tostring(count[i] or 0)))
  end
  for seq in pairs(count) do assert.is_true(seq >= 1 and seq <= n, "unexpected line " .. seq) end
end

local function received(e, name)
  local c = 0
  for _ in pairs(seqs(e:json_records(), name)) do c = c + 1 end
  return c
end

describe("a reader facing a faulty daemon #tsan #sanitize", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  local cases = {
    { "stall-headers", nil },
    { "stall-body", nil },
    { "stall-mid-frame", nil },
    { "truncate", "log stream failed" },
    { "bad-header", "protocol error" },
    { "huge-frame", "protocol error" },
    { "reset", nil }, -- libcurl itself retries a request whose reused connection was closed
    { "drip", nil },
    { "500", "HTTP 500" },
  }
  for _, case in ipairs(cases) do
    local mode, says = case[1], case[2]
    it("recovers from '" .. mode .. "' and delivers every line once", function()
      -- the container stays running after its lines (--linger): an engine
      -- that starts late still finds it
      srv = fake.start { "--containers", "1", "--rate", "200", "--lines", tostring(LINES), "--linger",
                         "--fault", mode .. ":1" }
      e = engine.start { pipeline = pipeline(srv.host) }
      proc.wait_for(function() return received(e, "c0") >= LINES end, 30, "every line of c0")
      if says then assert.matches(says, e:stderr_text(), 1, true) end
      -- the fault happened, once: the recovery was tested, not a clean run
      assert.equal(1, srv:faults()[mode])
      e:stop_in_bound(STOP_BOUND)
      assert_each_once(e:json_records(), "c0", LINES)
    end)
  end

  -- The daemon says the container is gone (404) or dying (409): the reader
  -- ends; a container that still runs is attached again by the next list.
  for _, status in ipairs { "404", "409" } do
    it("ends the reader on HTTP " .. status .. " and attaches again a container that runs", function()
      srv = fake.start { "--containers", "1", "--rate", "200", "--fault", status .. ":1" }
      e = engine.start { pipeline = pipeline(srv.host) }
      proc.wait_for(function() return received(e, "c0") >= LINES end, 30, "lines of c0")
      assert.equal(1, srv:faults()[status])
      e:stop_in_bound(STOP_BOUND)
      local log = e:stderr_text()
      assert.matches("stopped following: HTTP " .. status, log, 1, true)
      local count = seqs(e:json_records(), "c0")
      local max = 0
      for seq in pairs(count) do if seq > max then max = seq end end
      assert.is_true(max >= LINES)
      for i = 1, max do assert.equal(1, count[i], "line " .. i) end
    end)
  end

  it("stops following a container whose log driver cannot be read (501), with one warning", function()
    srv = fake.start { "--containers", "1", "--rate", "50", "--fault", "501:1000" }
    e = engine.start { pipeline = pipeline(srv.host) }
    proc.wait_for(function() return e:stderr_text():find("cannot be read", 1, true) end, 20, "the warning")
    proc.sleep(2.5) -- reconcile runs twice meanwhile: the container is not attached again
    assert.equal(1, srv:faults()["501"]) -- one request: the container was not asked again
    e:stop_in_bound(STOP_BOUND)
    local _, warnings = e:stderr_text():gsub("log driver cannot be read through the API", "")
    assert.equal(1, warnings)
    assert.matches("readers live 0, started 1, stopped 1", e:stderr_text(), 1, true)
  end)

  it("follows at most max_readers containers, warning once for each one left out", function()
    srv = fake.start { "--containers", "3", "--rate", "20" }
    e = engine.start { pipeline = pipeline(srv.host, "max_readers = 2") }
    proc.wait_for(function() return e:stderr_text():find("not followed: max_readers (2)", 1, true) end, 20,
                  "the warning")
    proc.sleep(2.5) -- two periodic lists meanwhile: no second warning
    e:stop_in_bound(STOP_BOUND)
    local _, n = e:stderr_text():gsub("not followed: max_readers", "")
    assert.equal(1, n)
    assert.matches("started 2, stopped 2", e:stderr_text(), 1, true)
  end)

  it("skips container events over max_events_per_second and lists containers instead", function()
    srv = fake.start { "--containers", "20", "--rate", "10", "--start-delay", "1.5" }
    e = engine.start { pipeline = pipeline(srv.host, "max_events_per_second = 5, reconcile_interval = 30") }
    proc.wait_for(function()
      local _, n = e:stderr_text():gsub("following container", "")
      return n >= 20
    end, 30, "all 20 containers followed")
    e:stop_in_bound(STOP_BOUND)
    assert.matches("skipping container events over max_events_per_second (5)", e:stderr_text(), 1, true)
  end)

  it("reconnects an events stream that ends, and sees containers start afterwards", function()
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", tostring(LINES),
                       "--start-delay", "2" }
    srv:post("/fake/fault?mode=events-end&count=1&after=0")
    e = engine.start { pipeline = pipeline(srv.host, "reconcile_interval = 30") }
    proc.wait_for(function() return received(e, "c0") >= LINES end, 30, "every line of c0")
    assert.matches("events stream: the daemon ended the events stream", e:stderr_text(), 1, true)
    assert.equal(1, srv:faults()["events-end"])
    e:stop_in_bound(STOP_BOUND)
    assert_each_once(e:json_records(), "c0", LINES)
  end)

  it("follows a container restarted by the daemon from where it stopped", function()
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", "40" }
    e = engine.start { pipeline = pipeline(srv.host) }
    proc.wait_for(function() return received(e, "c0") >= 40 end, 30, "the first run")
    srv:post("/fake/restart/c0")
    proc.wait_for(function() return received(e, "c0") >= 80 end, 30, "the second run")
    e:stop_in_bound(STOP_BOUND)
    assert_each_once(e:json_records(), "c0", 80)
  end)
end)

describe("stop #tsan #sanitize", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  it("returns within stop_timeout while the daemon stalls after the headers", function()
    srv = fake.start { "--containers", "3", "--rate", "10", "--fault", "stall-body:100" }
    e = engine.start { pipeline = pipeline(srv.host, "cycle = 300") }
    proc.wait_for(function() return e:stderr_text():find("following container", 1, true) end, 20, "readers")
    proc.sleep(0.5)
    -- every reader is stalled, so the stop meets three stalled streams
    proc.wait_for(function() return srv:faults()["stall-body"] >= 3 end, 20, "three stalled streams")
    e:stop_in_bound(STOP_BOUND)
    assert.matches("readers live 0, started 3, stopped 3", e:stderr_text(), 1, true)
  end)

  it("interrupts a filter that never returns, and still stops within its bound", function()
    srv = fake.start { "--containers", "2", "--rate", "100", "--lines", "20" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { { name = "spin", process = function(batch)
    local x = 0
    while true do x = x + 1 end
  end } },
  engine = { filter_timeout = 100, stop_timeout = 2 },
}]], srv.host) }
    proc.wait_for(function() return e:stderr_text():find("following container", 1, true) end, 20, "readers")
    proc.sleep(1)
    e:stop_in_bound(2 + 1)
    assert.matches("filter aborted: engine stopping", e:stderr_text(), 1, true)
    assert.is_true(#e:json_records() > 0, "the batches reached the output unfiltered")
  end)

  local function api(srv_host, ...)
    local dir = select(2, proc.sh("mktemp -d /tmp/api.XXXXXX")):gsub("%s+$", "")
    local f = assert(io.open(dir .. "/p.lua", "w"))
    f:write(pipeline(srv_host))
    f:close()
    local argv = { (os.getenv("ENGINE_TOOLS") or "build") .. "/engine_api", dir .. "/p.lua", ... }
    local _, out, status = proc.sh(proc.join(argv) .. " 2>" .. proc.quote(dir .. "/err") .. " >/dev/null", 30)
    local err = proc.read(dir .. "/err") or ""
    proc.sh("rm -rf " .. proc.quote(dir))
    local json = err:match("result: ({[^\n]*})")
    assert(json, "engine_api printed no result (status " .. status .. "): " .. out .. err)
    return require("cjson").decode(json), status, err
  end

  it("before any reader started: engine_run returns at once, leaving nothing", function()
    srv = fake.start { "--containers", "2" }
    local r, status = api(srv.host, "stop-before-run")
    assert.equal(0, status)
    assert.equal(0, r.rc)
    assert.equal(0, r.live)
    assert.equal(0, r.handles)
  end)

  it("twice from another thread, in the middle of reads: one stop, nothing left", function()
    srv = fake.start { "--containers", "20", "--rate", "200", "--preload", "2000" }
    local r, status, err = api(srv.host, "stop-from-thread", "700")
    assert.equal(0, status, err)
    assert.equal(0, r.rc)
    assert.equal(20, r.started)
    assert.equal(20, r.stopped)
    assert.equal(0, r.live)
    assert.equal(0, r.handles)
    assert.is_true(r.records > 0)
    assert.is_true(r.stop_ms < 3000 + 1000, "stop took " .. r.stop_ms .. " ms")
  end)
end)

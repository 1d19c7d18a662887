-- docker.read_delay: a slow follow stream is read a few lines at a time
-- (one read per delay, not one per line) and still delivers every line
-- exactly once; a busy stream is read as fast as it comes.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
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
-- returns the Docker reads of its run.
local function run(delay)
  local srv = fake.start { "--containers", "1", "--rate", "40", "--lines", tostring(LINES) }
  local e = engine.start { pipeline = pipeline(srv.host, delay) }
  local ok, err = pcall(function()
    proc.wait_for(function()
      local n = 0
      for _, r in ipairs(e:json_records()) do if r.line:match("^c0 ") then n = n + 1 end end
      return n >= LINES
    end, 30, "every line of c0")
    assert.equal(0, e:stop("TERM", 10))
    each_once(e)
  end)
  local reads = tonumber(e:stderr_text():match("docker reads (%d+)"))
  e:cleanup()
  srv:stop()
  assert(ok, err)
  return reads
end

describe("docker.read_delay #sanitize", function()
  it("reads a slow stream a few lines at a time, every line once", function()
    local at_once = run("0")
    local delayed = run("0.5")
    print(string.format("reads: %d at once, %d with a 0.5 s delay", at_once, delayed))
    -- 60 lines over 1.5 s: about one read per line at once, about one per
    -- half second with the delay (plus the list, inspect and ping answers)
    assert.is_true(at_once >= LINES, "reads without a delay: " .. tostring(at_once))
    assert.is_true(delayed <= LINES / 3, "reads with a 0.5 s delay: " .. tostring(delayed))
  end)

  it("reads a busy stream at full speed with a delay set", function()
    local n = 200000
    local srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(n), "--lines",
                             tostring(n), "--retain", tostring(n) }
    local e = engine.start { pipeline = string.format([[
return { docker = { host = %q, read_delay = 5 }, outputs = { { type = "null" } } }]], srv.host) }
    local ok, err = pcall(function()
      -- a 5 s delay after every read could not read 200,000 lines in 60 s
      proc.wait_for(function() return e:stderr_text():find("stopped following", 1, true) end, 60,
                    "the whole history")
      assert.equal(0, e:stop("TERM", 10))
      assert.equal(n, tonumber(e:stderr_text():match("records in (%d+)")))
    end)
    e:cleanup()
    srv:stop()
    assert(ok, err)
  end)
end)

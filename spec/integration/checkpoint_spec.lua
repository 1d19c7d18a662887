-- Cursors saved in the state directory: an engine stopped (or killed) and
-- started again goes on where the last one's outputs acknowledged.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local function pipeline(host)
  return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { backoff_initial = 0.05, backoff_max = 0.5 },
}]], host)
end

-- How many times each sequence number of container c0 was delivered, over
-- the outputs of several engine runs.
local function counts(...)
  local count, max = {}, 0
  for _, e in ipairs { ... } do
    for _, r in ipairs(e:json_records()) do
      local name, seq = r.line:match("^(%S+) (%d+)")
      if name == "c0" then
        seq = tonumber(seq)
        count[seq] = (count[seq] or 0) + 1
        if seq > max then max = seq end
      end
    end
  end
  return count, max
end

local function received(e)
  local n = 0
  for _, r in ipairs(e:json_records()) do if r.line:match("^c0 ") then n = n + 1 end end
  return n
end

describe("an engine restarted on the same state directory #sanitize", function()
  local srv, a, b, state
  before_each(function()
    local _, dir = proc.sh("mktemp -d /tmp/state.XXXXXX")
    state = dir:gsub("%s+$", "")
  end)
  after_each(function()
    local done = { a, b, srv }
    a, b, srv = nil, nil, nil
    proc.each(function() engine.release(unpack(done, 1, 3)) end,
              function() proc.sh("rm -rf " .. proc.quote(state)) end)
  end)

  it("after SIGTERM, resumes with no line lost and none repeated", function()
    srv = fake.start { "--containers", "1", "--rate", "300" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(a) >= 300 end, 20, "lines in the first run")
    assert.equal(0, a:stop("TERM"))
    proc.sleep(0.5) -- the container logs on meanwhile
    b = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(b) >= 300 end, 20, "lines in the second run")
    assert.matches("resuming from the saved cursor", b:stderr_text(), 1, true)
    assert.equal(0, b:stop("TERM"))
    local count, max = counts(a, b)
    for i = 1, max do assert.equal(1, count[i], "line " .. i) end
  end)

  it("after SIGKILL, resumes with no line lost, repeating only what was not yet saved", function()
    srv = fake.start { "--containers", "1", "--rate", "300" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    -- the lines on the first run's stdout, sampled until the kill
    local samples = {}
    local function lines_out()
      local _, n = (proc.read(a.dir .. "/stdout") or ""):gsub("\n", "")
      return n
    end
    proc.wait_for(function()
      samples[#samples + 1] = { t = proc.now(), n = lines_out() }
      return samples[#samples].n >= 1500
    end, 60, "lines in the first run")
    a:signal("KILL")
    local killed_at = proc.now()
    a:wait(10)
    -- What one checkpoint_interval can hold, measured from outside: the
    -- lines the first run wrote in the last interval (1 s) before the kill,
    -- and half a second for a save's time and the sampling.
    local before = 0
    for _, sample in ipairs(samples) do
      if sample.t <= killed_at - 1.5 then before = sample.n end
    end
    local window = lines_out() - before
    b = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(b) >= 300 end, 20, "lines in the second run")
    assert.equal(0, b:stop("TERM"))
    local count, max = counts(a, b)
    local dups = 0
    for i = 1, max do
      assert.is_true((count[i] or 0) >= 1, "line " .. i .. " was lost")
      dups = dups + (count[i] - 1)
    end
    print(string.format("SIGKILL restart: %d lines, %d repeated, %d written in the last 1.5 s before the kill",
                        max, dups, window))
    assert.is_true(dups <= window, dups .. " lines repeated, more than the " .. window ..
                   " written in the last checkpoint_interval before the kill")
  end)

  it("starts empty, with a warning, when the cursor file is corrupt", function()
    local f = assert(io.open(state .. "/cursors.json", "w"))
    f:write("{not json")
    f:close()
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "20" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(a) >= 20 end, 20, "every line")
    assert.equal(0, a:stop("TERM"))
    assert.matches("could not be read", a:stderr_text(), 1, true)
    assert.truthy(proc.read(state .. "/cursors.json.corrupt"))
  end)

  it("keeps running in memory when the state directory cannot be written", function()
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "20" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = "/proc/engine-state" }
    proc.wait_for(function() return received(a) >= 20 end, 20, "every line")
    assert.equal(0, a:stop("TERM"))
    assert.matches("cursors are kept in memory only", a:stderr_text(), 1, true)
  end)
end)

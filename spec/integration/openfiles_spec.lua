-- The limit of open files: the engine raises its soft limit to the hard one,
-- follows as many containers as that limit allows and says why it follows
-- no more; running out of descriptors never looks like a network error.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local CONTAINERS = 300

local function pipeline(host)
  return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.1 },
  engine = { reconcile_interval = 1, checkpoint_interval = 0.2 },
}]], host)
end

-- The fake containers that delivered at least one line.
local function followed(recs)
  local names, n = {}, 0
  for _, r in ipairs(recs) do
    local name = r.line:match("^(c%d+) ")
    if name and not names[name] then names[name], n = true, n + 1 end
  end
  return n
end

describe("the limit of open files #sanitize", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  it("with ulimit -n 200 and 300 containers: follows what the limit allows, says why, no misleading error", function()
    srv = fake.start { "--containers", tostring(CONTAINERS), "--rate", "2" }
    e = engine.start { pipeline = pipeline(srv.host), wrap = { "prlimit", "--nofile=200:200", "--" } }
    proc.wait_for(function() return e:stderr_text():find("max_readers lowered", 1, true) end, 30,
                  "the engine's word on the limit")
    local log = e:stderr_text()
    local lowered = tonumber(log:match("open files: limit 200 %(hard limit 200%): max_readers lowered from 4096 to (%d+)"))
    assert.is_number(lowered, log)
    assert.is_true(lowered > 50 and lowered < 200, log)
    -- every reader it may have gets its container's lines
    e:wait_records(function(recs) return followed(recs) >= lowered end, 60)
    proc.sleep(3) -- reconciles and cursor saves go on at the limit
    assert.equal(lowered, followed(e:json_records()))
    assert.equal(0, e:stop("TERM"))
    log = e:stderr_text()
    assert.matches("not followed: max_readers %(" .. lowered .. "%) readers are live", log)
    assert.is_nil(log:find("Couldn't connect", 1, true), log)
    assert.is_nil(log:find("port 80", 1, true), log)
    assert.is_nil(log:find("too many open files", 1, true), log)
    assert.is_nil(log:find("Too many open files", 1, true), log)
  end)

  it("raises its soft limit to the hard limit", function()
    srv = fake.start { "--containers", "2", "--rate", "2" }
    e = engine.start { pipeline = pipeline(srv.host), wrap = { "prlimit", "--nofile=100:5000", "--" } }
    proc.wait_for(function() return e:stderr_text():find("open files:", 1, true) end, 30,
                  "the engine's word on the limit")
    assert.matches("open files: limit 5000, raised from 100: up to 4096 readers (max_readers)",
                   e:stderr_text(), 1, true)
    e:wait_records(function(recs) return followed(recs) >= 2 end, 30)
    assert.equal(0, e:stop("TERM"))
  end)
end)

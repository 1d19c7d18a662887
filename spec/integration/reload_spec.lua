-- SIGHUP reloads pipeline.lua: a broken file leaves the running pipeline in
-- place; a good one replaces the filters between two batches, and a changed
-- selection stops the readers of containers no longer selected and starts
-- those newly selected. No line is lost or repeated across a reload.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local function pipeline(host, name, tag)
  return string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.05 },
  filters = { function(batch) for _, r in ipairs(batch) do r.tag = %q end end },
  engine = { reconcile_interval = 1 },
}]], host, name, tag)
end

local function seqs(e, name)
  local out = {}
  for _, r in ipairs(e:json_records()) do
    local n, seq = r.line:match("^(%S+) (%d+)")
    if n == name then out[#out + 1] = { seq = tonumber(seq), tag = r.tag } end
  end
  return out
end

describe("SIGHUP #sanitize", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  it("swaps filters and selection, keeps a broken reload out, and loses no line", function()
    srv = fake.start { "--containers", "2", "--rate", "100" }
    e = engine.start { pipeline = pipeline(srv.host, "c0", "v1") }
    proc.wait_for(function() return #seqs(e, "c0") >= 20 end, 20, "c0 lines")
    -- a broken file: the running pipeline stays
    local f = assert(io.open(e.pipeline_path, "w"))
    f:write("return {\n  filters = { function( end },\n}\n")
    f:close()
    e:signal("HUP")
    proc.wait_for(function() return e:stderr_text():find("the running pipeline stays", 1, true) end, 10,
                  "the failed reload")
    -- and it does stay: later lines still go through the first filter
    local before = #seqs(e, "c0")
    proc.wait_for(function() return #seqs(e, "c0") >= before + 20 end, 20, "c0 lines after the failed reload")
    for _, r in ipairs(seqs(e, "c0")) do assert.equal("v1", r.tag, "c0 line " .. r.seq) end
    -- a good file: new filter, and c1 instead of c0
    f = assert(io.open(e.pipeline_path, "w"))
    f:write(pipeline(srv.host, "c1", "v2"))
    f:close()
    e:signal("HUP")
    proc.wait_for(function() return #seqs(e, "c1") >= 20 end, 20, "c1 lines after the reload")
    assert.equal(0, e:stop("TERM"))
    local log = e:stderr_text()
    assert.matches("the container selection is applied", log, 1, true)
    assert.matches("%[c0%] stopped following: no longer selected", log)
    -- c0: contiguous from 1, each once; its lines went through the first
    -- filter until the swap, then (those read before its reader stopped)
    -- through the second, never back
    local swapped = false
    for i, r in ipairs(seqs(e, "c0")) do
      assert.equal(i, r.seq)
      if r.tag == "v2" then swapped = true else assert.equal("v1", r.tag); assert.is_false(swapped) end
    end
    assert.equal("v1", seqs(e, "c0")[1].tag)
    -- c1: every line tagged by the new filter, none missing from its start
    for i, r in ipairs(seqs(e, "c1")) do
      assert.equal(i, r.seq)
      assert.equal("v2", r.tag)
    end
  end)
end)

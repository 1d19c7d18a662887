-- The engine built for another architecture, run under qemu-user by
-- scripts/test/test-cross.sh: ENGINE_BIN is a wrapper that starts the foreign
-- binary under emulation, the fake Docker API server runs natively (they
-- talk over a unix socket). Lines go through a Lua filter to stdout, which
-- the spec helper keeps in a file; every line must arrive there once.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local CONTAINERS, LINES = 3, 300

describe("the engine under emulation (" .. (os.getenv("ENGINE_CROSS_ARCH") or "?") .. ")", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  it("is the foreign binary", function()
    local code, out = engine.run_once { command = "version", pipeline = "return {}" }
    assert.equal(0, code)
    assert.matches("^engine %d", out)
    local _, kind = proc.sh(proc.join { "file", "-L", os.getenv("ENGINE_CROSS_BIN") or "?" })
    assert.matches(os.getenv("ENGINE_CROSS_MACHINE") or "?", kind, 1, true)
  end)

  it("delivers every line of every container through a Lua filter to a file", function()
    srv = fake.start { "--containers", tostring(CONTAINERS), "--rate", "200",
                       "--lines", tostring(LINES) }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.1 },
  filters = { { name = "tag", process = function(batch, ctx)
    for _, r in ipairs(batch) do r.seen_by = ctx.filter .. "@" .. jit.arch end
  end } },
  outputs = { { type = "stdout", format = "json" } },
  engine = { stop_timeout = 5 },
}]], srv.host) }
    local want = CONTAINERS * LINES
    local recs = e:wait_records(want, 120)
    assert.equal(0, e:stop("TERM", 30))
    recs = e:json_records()
    local count = {}
    for _, r in ipairs(recs) do
      local name, seq = r.line:match("^(c%d+) (%d+)$")
      assert.truthy(name, "unexpected line " .. r.line)
      assert.equal(name, r.name)
      assert.equal(tonumber(seq) % 2 == 1 and "stdout" or "stderr", r.stream)
      assert.equal("tag@" .. os.getenv("ENGINE_CROSS_JIT_ARCH"), r.seen_by)
      count[r.line] = (count[r.line] or 0) + 1
    end
    for c = 0, CONTAINERS - 1 do
      for i = 1, LINES do
        local key = string.format("c%d %d", c, i)
        assert.equal(1, count[key], key .. " arrived " .. tostring(count[key] or 0) .. " times")
      end
    end
    assert.equal(want, #recs)
  end)
end)

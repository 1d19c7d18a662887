-- engine.metrics in pipeline.lua: checked and put in normal form by
-- lua/engine/pipeline.lua (listen as "host:port", 127.0.0.1 when the host
-- is left out).
package.path = "lua/?.lua;" .. package.path
local validator = require("engine.pipeline")

local function metrics_of(m)
  return validator.validate({ engine = { metrics = m } }, "p.lua").engine.metrics
end

local function fails(m)
  local ok, err = pcall(validator.validate, { engine = { metrics = m } }, "p.lua")
  assert.is_false(ok)
  return err
end

describe("engine.metrics", function()
  it("is absent unless given", function()
    assert.is_nil(validator.validate({}, "p.lua").engine.metrics)
  end)

  it("keeps a full host:port", function()
    assert.same({ listen = "127.0.0.1:9180" }, metrics_of { listen = "127.0.0.1:9180" })
    assert.same({ listen = "0.0.0.0:80" }, metrics_of { listen = "0.0.0.0:80" })
    assert.same({ listen = "localhost:9180" }, metrics_of { listen = "localhost:9180" })
    assert.same({ listen = "[::1]:9180" }, metrics_of { listen = "[::1]:9180" })
  end)

  it("listens on 127.0.0.1 when only the port is given", function()
    assert.same({ listen = "127.0.0.1:9180" }, metrics_of { listen = ":9180" })
    assert.same({ listen = "127.0.0.1:9180" }, metrics_of { listen = "9180" })
    assert.same({ listen = "127.0.0.1:9180" }, metrics_of { listen = 9180 })
  end)

  it("takes max_containers", function()
    assert.same({ listen = "127.0.0.1:1", max_containers = 5 },
                metrics_of { listen = "1", max_containers = 5 })
  end)

  it("refuses what is not an address, a port out of range, or unknown keys", function()
    assert.matches('engine.metrics.listen must be "host:port"', fails { listen = "nohost" })
    assert.matches("engine.metrics.listen must be", fails { listen = "a:b:c" })
    assert.matches("port out of 1..65535", fails { listen = "127.0.0.1:0" })
    assert.matches("port out of 1..65535", fails { listen = ":70000" })
    assert.matches("engine.metrics.listen is required", fails {})
    assert.matches("engine.metrics.listen must be a string", fails { listen = true })
    assert.matches("engine.metrics.max_containers must be an integer", fails { listen = "1", max_containers = 0 })
    assert.matches('unknown key "port" in engine.metrics', fails { port = 1 })
    assert.matches("engine.metrics must be a table", fails("127.0.0.1:9180"))
  end)
end)

-- `engine tap`: a live sample of the records, through the metrics
-- endpoint's /tap, at the filters' input, after a named filter and at a
-- named output; bounded by --limit; never slowing the engine down for a
-- client that does not read.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local function bin() return os.getenv("ENGINE_BIN") or "build/engine" end

-- Runs `engine tap URL args...` (bounded); returns its exit status, the
-- records it printed (decoded) and its stderr.
local function tap(url, args)
  local argv = { bin(), "tap", url }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local ok, out = proc.sh("timeout 30 " .. proc.join(argv) .. " 2>/tmp/tap-spec.err", 40)
  local recs = {}
  for line in out:gmatch("[^\n]+") do recs[#recs + 1] = cjson.decode(line) end
  return ok, recs, proc.read("/tmp/tap-spec.err") or ""
end

describe("engine tap #sanitize #tsan", function()
  local srv, e, url, dir

  before_each(function()
    srv = fake.start { "--containers", "2", "--rate", "200" }
    local ok, d = proc.sh("mktemp -d /tmp/tap-spec.XXXXXX")
    assert(ok, d)
    dir = d:gsub("%s+$", "")
    e, url = metrics.start_engine {
      docker_host = srv.host,
      filters = [[ { name = "tag", process = function(b)
                       for _, r in ipairs(b) do r.tagged = "yes" end
                       return b end } ]],
      outputs = string.format([[ { type = "file", name = "store", path = %q, format = "json" } ]],
                              dir .. "/out.jsonl"),
    }
  end)

  after_each(function()
    if e then e:cleanup() end
    if srv then srv:stop() end
    if dir then proc.sh("rm -rf " .. proc.quote(dir)) end
    e, srv, dir = nil, nil, nil
  end)

  it("shows the records at the input, after a filter and at an output, up to --limit", function()
    local ok, recs = tap(url, { "--limit", "5" })
    assert.is_true(ok)
    assert.equal(5, #recs)
    for _, r in ipairs(recs) do
      assert.is_string(r.line)
      assert.is_nil(r.tagged) -- before the filter
    end
    ok, recs = tap(url, { "--filter", "tag", "--limit", "7" })
    assert.is_true(ok)
    assert.equal(7, #recs)
    for _, r in ipairs(recs) do assert.equal("yes", r.tagged) end
    ok, recs = tap(url, { "--output", "store", "--select", "c1", "--limit", "20" })
    assert.is_true(ok)
    assert.equal(20, #recs)
    for _, r in ipairs(recs) do
      assert.equal("c1", r.name)
      assert.equal("yes", r.tagged)
    end
    -- what the tap showed at the output is what the output wrote
    assert.equal(0, e:stop())
    local stored = {}
    for line in (proc.read(dir .. "/out.jsonl") or ""):gmatch("[^\n]+") do stored[line] = true end
    for _, r in ipairs(recs) do
      local found = false
      for line in pairs(stored) do
        local s = cjson.decode(line)
        if s.time == r.time and s.line == r.line and s.name == r.name then found = true break end
      end
      assert.is_true(found, "not in the output: " .. cjson.encode(r))
    end
  end)

  it("refuses an unknown point, and a filter without a name", function()
    local status = metrics.get(url .. "/tap?point=nowhere")
    assert.equal(400, status)
    status = metrics.get(url .. "/tap?point=filter")
    assert.equal(400, status)
    local ok, _, err = tap(url, { "--filter", "tag", "--output", "store" })
    assert.is_false(ok)
    assert.matches("usage: engine tap", err)
  end)

  it("does not slow the engine for a client that never reads", function()
    -- lines of 8 KB, 2 x 500 a second: the tap's buffer and the socket's fill
    e:cleanup()
    srv:stop()
    srv = fake.start { "--containers", "2", "--rate", "500", "--line-bytes", "8000" }
    e, url = metrics.start_engine {
      docker_host = srv.host,
      outputs = string.format([[ { type = "file", name = "store", path = %q, format = "plain" } ]],
                              dir .. "/big.txt"),
    }
    local socket = require "posix.sys.socket"
    local unistd = require "posix.unistd"
    local port = tonumber(url:match(":(%d+)$"))
    local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
    assert(socket.connect(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }))
    assert(socket.send(fd, "GET /tap?point=input HTTP/1.1\r\nHost: x\r\n\r\n"))
    local function dropped()
      local _, body = metrics.get(url .. "/metrics")
      return metrics.parse(body):value("engine_tap_dropped_records_total")
    end
    -- the tap drops for its client, and the output goes on getting lines
    proc.wait_for(function() return dropped() > 0 end, 30, "records dropped for the tap")
    local size = #(proc.read(dir .. "/big.txt") or "")
    proc.wait_for(function()
      return #(proc.read(dir .. "/big.txt") or "") >= size + 2000 * 8001
    end, 30, "2,000 more lines in the output while the tap client reads nothing")
    local status, body = metrics.get(url .. "/health")
    assert.equal(200, status)
    assert.equal("ok\n", body)
    -- another client is served meanwhile
    local ok, recs = tap(url, { "--limit", "3" })
    assert.is_true(ok)
    assert.equal(3, #recs)
    unistd.close(fd)
    assert.equal(0, e:stop())
  end)
end)

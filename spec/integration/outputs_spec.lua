-- Network outputs against a local HTTP receiver: wire formats on the wire,
-- retries, dead letters, and backpressure while an output is slow.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"
local receiver = require "spec.support.receiver"

local function pipeline(host, outputs, engine_opts)
  return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 20 },
  outputs = { %s },
  engine = { backoff_initial = 0.05, backoff_max = 0.2, stop_timeout = 5, %s },
}]], host, outputs, engine_opts or "")
end

-- Sequence numbers of container c0 in NDJSON bodies, counted.
local function ndjson_seqs(bodies)
  local count, total = {}, 0
  for _, body in ipairs(bodies) do
    for line in body:gmatch("[^\n]+") do
      local rec = cjson.decode(line)
      local seq = tonumber(rec.line:match("^c0 (%d+)"))
      if seq then
        -- every record carries its fields, whether a filter touched it or not
        assert.equal("c0", rec.name)
        assert.truthy(rec.stream == "stdout" or rec.stream == "stderr", rec.stream)
        assert.truthy(rec.time:match("^%d%d%d%d%-%d%d%-%d%dT.*Z$"), rec.time)
        assert.equal("string", type(rec.container))
        assert.equal("table", type(rec.labels))
        count[seq] = (count[seq] or 0) + 1
        total = total + 1
      end
    end
  end
  return count, total
end

local function assert_once(count, n)
  for i = 1, n do assert.equal(1, count[i], "line " .. i .. " arrived " .. tostring(count[i] or 0) .. " times") end
end

describe("network outputs #sanitize", function()
  local srv, rx, e, tmp
  before_each(function()
    local _, d = proc.sh("mktemp -d /tmp/outs.XXXXXX")
    tmp = d:gsub("%s+$", "")
  end)
  after_each(function()
    if e then e:cleanup() end
    if rx then rx:stop() end
    if srv then srv:stop() end
    e, rx, srv = nil, nil, nil
    proc.sh("rm -rf " .. proc.quote(tmp))
  end)

  it("posts NDJSON with its headers and bearer token, every line once", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "100" }
    rx = receiver.start {}
    e = engine.start {
      pipeline = pipeline(srv.host, string.format(
        '{ type = "http", url = %q, headers = { ["X-Team"] = "edge" }, auth = { bearer_env = "SPEC_TOKEN" } }',
        rx.url .. "/ingest")),
      env = { SPEC_TOKEN = "s3cret" } }
    proc.wait_for(function() return select(2, ndjson_seqs((function()
      local b = {} for _, r in ipairs(rx:requests()) do b[#b + 1] = r.body end return b end)())) >= 100 end,
      20, "100 lines at the receiver")
    assert.equal(0, e:stop("TERM"))
    local reqs, bodies = rx:requests(), {}
    for _, r in ipairs(reqs) do
      assert.equal("POST", r.method)
      assert.equal("/ingest", r.path)
      assert.equal("edge", r.headers["x-team"])
      assert.equal("Bearer s3cret", r.headers["authorization"])
      assert.equal("application/x-ndjson", r.headers["content-type"])
      bodies[#bodies + 1] = r.body
    end
    assert_once(ndjson_seqs(bodies), 100)
    assert.is_nil(e:stderr_text():find("s3cret", 1, true), "the token must never be logged")
  end)

  it("gzips the body when asked, with Content-Encoding: gzip", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "50" }
    rx = receiver.start {}
    e = engine.start { pipeline = pipeline(srv.host,
      string.format('{ type = "http", url = %q, gzip = true }', rx.url)) }
    local bodies
    proc.wait_for(function()
      bodies = {}
      for _, r in ipairs(rx:requests()) do
        assert.equal("gzip", r.headers["content-encoding"])
        local f = assert(io.open(tmp .. "/b.gz", "wb"))
        f:write(r.body)
        f:close()
        local ok, plain = proc.sh("gzip -dc " .. proc.quote(tmp .. "/b.gz"))
        assert(ok, plain)
        bodies[#bodies + 1] = plain
      end
      return select(2, ndjson_seqs(bodies)) >= 50
    end, 20, "50 lines, gzipped")
    assert.equal(0, e:stop("TERM"))
    assert_once(ndjson_seqs(bodies), 50)
  end)

  it("retries 500 and 429 answers, logging each cause once, and loses nothing", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "100" }
    rx = receiver.start { "--script", "500,500,500,429:1,200" }
    e = engine.start { pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q }', rx.url)) }
    local delivered
    proc.wait_for(function()
      local bodies = {}
      for _, r in ipairs(rx:requests()) do if r.n >= 5 then bodies[#bodies + 1] = r.body end end
      local count, total = ndjson_seqs(bodies)
      delivered = count
      return total >= 100
    end, 30, "every line accepted")
    assert.equal(0, e:stop("TERM"))
    assert_once(delivered, 100)
    local log = e:stderr_text()
    local _, n500 = log:gsub("HTTP 500", "")
    assert.equal(1, n500)
    assert.matches("HTTP 429", log, 1, true)
    assert.matches("delivering again", log, 1, true)
  end)

  it("sends batches a 400 refuses to the dead-letter file, with the reason, once in the log", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "60" }
    rx = receiver.start { "--script", "400" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = pipeline(srv.host,
      string.format('{ type = "http", url = %q, dead_letter = %q }', rx.url, dl)) }
    local total
    proc.wait_for(function()
      total = 0
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do total = total + cjson.decode(line).records end
      return total >= 60
    end, 20, "60 records dead-lettered")
    assert.equal(0, e:stop("TERM"))
    local first = cjson.decode((proc.read(dl)):match("[^\n]+"))
    assert.matches("^HTTP 400", first.reason)
    assert.equal("http", first.output)
    assert.matches('"line":"c0 1"', first.body, 1, true)
    local _, n = e:stderr_text():gsub("dead%-letter", "")
    assert.equal(1, n)
  end)

  it("speaks the Loki, Elasticsearch and OTLP wire formats on their paths", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "40" }
    rx = receiver.start {}
    e = engine.start { pipeline = pipeline(srv.host, string.format([[
      { type = "loki", url = %q, labels = { "name" } },
      { type = "elasticsearch", url = %q, index = "edge" },
      { type = "otlp", url = %q },]], rx.url, rx.url, rx.url)) }
    local seen
    proc.wait_for(function()
      seen = { loki = 0, es = 0, otlp = 0 }
      for _, r in ipairs(rx:requests()) do
        if r.path == "/loki/api/v1/push" then
          for _, st in ipairs(cjson.decode(r.body).streams) do
            assert.equal("c0", st.stream.name)
            seen.loki = seen.loki + #st.values
            assert.matches("^%d+$", st.values[1][1])
          end
        elseif r.path == "/_bulk" then
          local lines = {}
          for l in r.body:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
          for i = 1, #lines, 2 do
            assert.equal("edge", lines[i].create._index)
            seen.es = seen.es + 1
          end
        elseif r.path == "/v1/logs" then
          for _, rl in ipairs(cjson.decode(r.body).resourceLogs) do
            for _, sl in ipairs(rl.scopeLogs) do seen.otlp = seen.otlp + #sl.logRecords end
          end
        end
      end
      return seen.loki >= 40 and seen.es >= 40 and seen.otlp >= 40
    end, 20, "40 records in each format")
    assert.equal(0, e:stop("TERM"))
    assert.same({ loki = 40, es = 40, otlp = 40 }, seen)
  end)

  it("dead-letters an Elasticsearch batch whose _bulk reply reports item errors", function()
    local reply = tmp .. "/bulk.json"
    local f = assert(io.open(reply, "w"))
    f:write('{"took":1,"errors":true,"items":[{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}}]}')
    f:close()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "20" }
    rx = receiver.start { "--body-200", reply }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = pipeline(srv.host,
      string.format('{ type = "elasticsearch", url = %q, dead_letter = %q }', rx.url, dl)) }
    proc.wait_for(function() return (proc.read(dl) or ""):find("\n", 1, true) end, 20, "a dead letter")
    assert.equal(0, e:stop("TERM"))
    assert.matches("mapper_parsing_exception", proc.read(dl), 1, true)
  end)

  it("pauses readers while a slow output holds max_buffered, and loses nothing", function()
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "6000", "--line-bytes", "1000",
                       "--stdout-only" }
    rx = receiver.start { "--delay-ms", "40" }
    e = engine.start { pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q }', rx.url),
                                           "max_buffered = 262144") }
    local total
    proc.wait_for(function()
      local bodies = {}
      for _, r in ipairs(rx:requests()) do bodies[#bodies + 1] = r.body end
      local count
      count, total = ndjson_seqs(bodies)
      return total >= 6000
    end, 60, "6000 lines at the receiver")
    local hwm = tonumber((proc.read("/proc/" .. e:pid() .. "/status") or ""):match("VmHWM:%s*(%d+)"))
    assert.equal(0, e:stop("TERM"))
    local pauses = tonumber(e:stderr_text():match("reader pauses (%d+)"))
    assert.is_true(pauses > 0, "the reader never paused")
    print(string.format("backpressure: 6000 lines of 1 KB, max_buffered 256 KiB: peak RSS %d KiB, %d pauses",
                        hwm, pauses))
    -- the memory bound holds for the engine as shipped; a sanitizer build's
    -- shadow memory and quarantine add their own, so only the pauses count there
    if not os.getenv("ENGINE_SANITIZER") then
      assert.is_true(hwm < 64 * 1024, "peak RSS " .. hwm .. " KiB")
    end
  end)
end)

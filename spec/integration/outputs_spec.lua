-- Network outputs against a local HTTP receiver: wire formats on the wire,
-- retries, dead letters, and backpressure while an output is slow.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"
local receiver = require "spec.support.receiver"
local otlp = require "spec.support.otlp"

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
    local done = { e, rx, srv }
    e, rx, srv = nil, nil, nil
    proc.each(function() engine.release(unpack(done, 1, 3)) end,
              function() proc.sh("rm -rf " .. proc.quote(tmp)) end)
  end)

  it("posts NDJSON with its headers and bearer token, every line once", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "100", "--linger" }
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
    -- without record_id the records have no "id"
    assert.is_nil(table.concat(bodies):find('"id":', 1, true))
    assert.is_nil(e:stderr_text():find("s3cret", 1, true), "the token must never be logged")
  end)

  it("posts a JSON array with basic auth from the environment, each record with its id", function()
    srv = fake.start { "--containers", "1", "--rate", "100" }
    rx = receiver.start {}
    e = engine.start {
      pipeline = pipeline(srv.host, string.format(
        '{ type = "http", url = %q, format = "json", record_id = true, '
          .. 'auth = { user_env = "SPEC_USER", password_env = "SPEC_PASS" } }',
        rx.url)),
      env = { SPEC_USER = "edge", SPEC_PASS = "pa55:word" } }
    local count
    proc.wait_for(function()
      local lines, ids = {}, {}
      for _, r in ipairs(rx:requests()) do
        assert.equal("Basic " .. "ZWRnZTpwYTU1OndvcmQ=", r.headers["authorization"]) -- edge:pa55:word
        assert.equal("application/json", r.headers["content-type"])
        local array = cjson.decode(r.body)
        assert.equal("table", type(array))
        assert.is_true(#array > 0, "an empty or non-array body: " .. r.body)
        for _, rec in ipairs(array) do
          assert.matches("^%x+$", rec.id)
          assert.equal(32, #rec.id)
          assert.is_nil(ids[rec.id], "a repeated id")
          ids[rec.id] = true
          lines[#lines + 1] = cjson.encode(rec)
        end
      end
      local total
      count, total = ndjson_seqs({ table.concat(lines, "\n") })
      return total >= 50
    end, 30, "50 lines in JSON arrays")
    assert.equal(0, e:stop("TERM"))
    local max = 0
    for seq in pairs(count) do if seq > max then max = seq end end
    assert_once(count, max)
    assert.is_nil(e:stderr_text():find("pa55", 1, true), "the password must never be logged")
  end)

  it("gzips the body when asked, with Content-Encoding: gzip", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "50", "--linger" }
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

  it("compresses the body with zstd when asked, also the halves of a body answered 413", function()
    -- logged before the engine starts: the first body holds a whole batch of 20 records
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "50", "--lines", "50", "--linger" }
    rx = receiver.start { "--script", "413,200" }
    e = engine.start { pipeline = pipeline(srv.host,
      string.format('{ type = "http", url = %q, compression = "zstd" }', rx.url)) }
    local bodies, first
    proc.wait_for(function()
      bodies = {}
      for _, r in ipairs(rx:requests()) do
        assert.equal("zstd", r.headers["content-encoding"])
        local f = assert(io.open(tmp .. "/b.zst", "wb"))
        f:write(r.body)
        f:close()
        local ok, plain = proc.sh("zstd -q -dc " .. proc.quote(tmp .. "/b.zst"))
        assert(ok, plain)
        if r.n == 1 then first = plain else bodies[#bodies + 1] = plain end
      end
      return select(2, ndjson_seqs(bodies)) >= 50
    end, 20, "50 lines, in zstd")
    assert.equal(0, e:stop("TERM"))
    -- the body refused with 413 came again in two parts, each compressed on its own
    local _, refused = ndjson_seqs { first }
    assert.is_true(refused >= 2, "the refused body held " .. refused .. " records")
    assert_once(ndjson_seqs(bodies), 50)
  end)

  it("retries 500 and 429 answers, logging each cause once, and loses nothing", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "100", "--linger" }
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
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "60", "--linger" }
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

  it("labels Loki streams by default, with static labels, a tenant and JSON lines", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "30", "--linger" }
    rx = receiver.start {}
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 20 },
  filters = { function(batch) for _, r in ipairs(batch) do r.seq = tonumber(r.line:match("^c0 (%%d+)")) end return batch end },
  outputs = {
    { type = "loki", name = "plain", url = %q },
    { type = "loki", name = "team", url = %q, labels = { job = "edge \"x\"", ["app.tier"] = "front", "name" },
      tenant = "team-a" },
    { type = "loki", name = "json", url = %q, line_format = "json" },
  },
  engine = { backoff_initial = 0.05, backoff_max = 0.2, stop_timeout = 5 },
}]], srv.host, rx.url .. "/plain/loki/api/v1/push", rx.url .. "/team/loki/api/v1/push",
      rx.url .. "/json/loki/api/v1/push") }
    local got
    proc.wait_for(function()
      got = { plain = {}, team = {}, json = {} }
      for _, r in ipairs(rx:requests()) do
        local which = r.path:match("^/(%a+)/loki/api/v1/push$")
        assert.truthy(got[which], r.path)
        for _, st in ipairs(cjson.decode(r.body).streams) do
          for _, v in ipairs(st.values) do
            got[which][#got[which] + 1] = { stream = st.stream, line = v[2], tenant = r.headers["x-scope-orgid"] }
          end
        end
      end
      return #got.plain >= 30 and #got.team >= 30 and #got.json >= 30
    end, 20, "30 records at each Loki output")
    assert.equal(0, e:stop("TERM"))
    assert.equal(30, #got.plain)
    assert.equal(30, #got.team)
    assert.equal(30, #got.json)
    local seqs = {}
    for i = 1, 30 do
      local p, t, j = got.plain[i], got.team[i], got.json[i]
      -- the default labels: name, stream and job="engine"; no tenant header
      assert.same({ job = "engine", name = "c0", stream = p.stream.stream }, p.stream)
      assert.truthy(p.stream.stream == "stdout" or p.stream.stream == "stderr")
      assert.is_nil(p.tenant)
      assert.matches("^c0 %d+", p.line)
      -- static labels escaped, their names made valid, the tenant sent
      assert.same({ job = 'edge "x"', app_tier = "front", name = "c0" }, t.stream)
      assert.equal("team-a", t.tenant)
      assert.matches("^c0 %d+", t.line)
      -- line_format json: the whole record, with the field the filter set
      local rec = cjson.decode(j.line)
      assert.equal("c0", rec.name)
      assert.matches("^c0 %d+", rec.line)
      assert.equal(tonumber(rec.line:match("^c0 (%d+)")), rec.seq)
      assert.equal(j.stream.stream, rec.stream)
      seqs[rec.seq] = (seqs[rec.seq] or 0) + 1
    end
    assert_once(seqs, 30)
  end)

  it("dead-letters an otlp protobuf body in base64, which decodes to its records", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "30", "--linger" }
    rx = receiver.start { "--script", "400" }
    local dl = tmp .. "/dead-otlp.jsonl"
    e = engine.start { pipeline = pipeline(srv.host,
      string.format('{ type = "otlp", url = %q, dead_letter = %q }', rx.url, dl)) }
    local letters
    proc.wait_for(function()
      letters = {}
      local total = 0
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do
        letters[#letters + 1] = cjson.decode(line)
        total = total + letters[#letters].records
      end
      return total >= 30
    end, 20, "30 records dead-lettered")
    assert.equal(0, e:stop("TERM"))
    assert.equal("application/x-protobuf", rx:requests()[1].headers["content-type"])
    local lines = {}
    for i, l in ipairs(letters) do
      assert.is_nil(l.body)
      local b64 = tmp .. "/letter.b64"
      local f = assert(io.open(b64, "wb"))
      f:write(l.body_base64)
      f:close()
      local ok, out = proc.sh("base64 -d " .. proc.quote(b64) .. " > " .. proc.quote(tmp .. "/letter.bin"))
      assert(ok, out)
      local req = otlp.decode(proc.read(tmp .. "/letter.bin"))
      local n = 0
      for _, rl in ipairs(req.resourceLogs) do
        for _, lr in ipairs(rl.scopeLogs[1].logRecords) do
          n = n + 1
          lines[#lines + 1] = lr.body.stringValue
        end
      end
      assert.equal(l.records, n, "letter " .. i)
    end
    assert.equal(30, #lines)
    assert.equal("c0 1", lines[1]:match("^c0 1") )
  end)

  it("speaks the Loki, Elasticsearch and OTLP (protobuf and JSON) wire formats on their paths", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "40", "--linger" }
    rx = receiver.start {}
    e = engine.start { pipeline = pipeline(srv.host, string.format([[
      { type = "loki", url = %q, labels = { "name" } },
      { type = "elasticsearch", url = %q, index = "edge" },
      { type = "otlp", url = %q },
      { type = "otlp", name = "otlp-json", url = %q, encoding = "json" },]],
      rx.url, rx.url, rx.url, rx.url)) }
    local seen, es_ids, otlp_ids, json_ids
    proc.wait_for(function()
      seen, es_ids, otlp_ids, json_ids = { loki = 0, es = 0, otlp = 0, otlp_json = 0 }, {}, {}, {}
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
            es_ids[#es_ids + 1] = lines[i].create._id
            seen.es = seen.es + 1
          end
        elseif r.path == "/v1/logs" then
          -- protobuf by default, JSON with encoding = "json": the same request
          local ctype = r.headers["content-type"]
          local proto = ctype == "application/x-protobuf"
          assert.is_true(proto or ctype == "application/json", ctype)
          local key, ids = proto and "otlp" or "otlp_json", proto and otlp_ids or json_ids
          local req = proto and otlp.decode(r.body) or cjson.decode(r.body)
          for _, rl in ipairs(req.resourceLogs) do
            local service
            for _, a in ipairs(rl.resource.attributes) do
              if a.key == "service.name" then service = a.value.stringValue end
            end
            assert.equal("c0", service)
            for _, sl in ipairs(rl.scopeLogs) do
              seen[key] = seen[key] + #sl.logRecords
              for _, lr in ipairs(sl.logRecords) do
                assert.matches("^%d+$", lr.timeUnixNano)
                assert.equal("string", type(lr.body.stringValue))
                for _, a in ipairs(lr.attributes) do
                  if a.key == "log.record.uid" then ids[#ids + 1] = a.value.stringValue end
                end
              end
            end
          end
        end
      end
      return seen.loki >= 40 and seen.es >= 40 and seen.otlp >= 40 and seen.otlp_json >= 40
    end, 20, "40 records in each format")
    assert.equal(0, e:stop("TERM"))
    assert.same({ loki = 40, es = 40, otlp = 40, otlp_json = 40 }, seen)
    -- the record ids: one per line, the same in every format
    assert.equal(40, #es_ids)
    table.sort(es_ids)
    table.sort(otlp_ids)
    table.sort(json_ids)
    assert.same(es_ids, otlp_ids)
    assert.same(es_ids, json_ids)
    local distinct = {}
    for _, id in ipairs(es_ids) do
      assert.matches("^%x+$", id)
      assert.equal(32, #id)
      distinct[id] = true
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.equal(40, n)
  end)

  it("dead-letters an Elasticsearch batch whose _bulk reply reports item errors", function()
    local reply = tmp .. "/bulk.json"
    local f = assert(io.open(reply, "w"))
    f:write('{"took":1,"errors":true,"items":[{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad field"}}}]}')
    f:close()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "20", "--linger" }
    rx = receiver.start { "--body-200", reply }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = pipeline(srv.host,
      string.format('{ type = "elasticsearch", url = %q, dead_letter = %q }', rx.url, dl)) }
    proc.wait_for(function() return (proc.read(dl) or ""):find("\n", 1, true) end, 20, "a dead letter")
    assert.equal(0, e:stop("TERM"))
    assert.matches("mapper_parsing_exception", proc.read(dl), 1, true)
  end)

  -- The engine's peak memory (VmHWM, KiB) from /proc, once it is done.
  local function peak_kb(e)
    return tonumber((proc.read("/proc/" .. e:pid() .. "/status") or ""):match("VmHWM:%s*(%d+)"))
  end

  -- Under AddressSanitizer freed memory sits in a quarantine (256 MiB by
  -- default) and RSS grows with every byte ever allocated; with a small
  -- quarantine it follows what the engine holds again.
  local function memory_env()
    local asan = os.getenv("ASAN_OPTIONS")
    if os.getenv("ENGINE_SANITIZER") == "asan" or asan then
      return { ASAN_OPTIONS = (asan and asan ~= "" and asan .. ":" or "") ..
                              "quarantine_size_mb=1:thread_local_quarantine_size_kb=64" }
    end
  end

  it("pauses readers while a slow output holds max_buffered: memory stays near it, nothing lost", function()
    -- 24 MB of history against max_buffered = 1 MiB and an output taking
    -- 100 KB every 40 ms: a reader that does not pause holds most of the
    -- history at once
    local LINES, MAX = 24000, 1048576
    local tsan = os.getenv("ENGINE_SANITIZER") == "tsan"
    -- the same engine with nothing to read: its peak is the baseline
    srv = fake.start { "--containers", "1", "--rate", "0", "--stdout-only" }
    rx = receiver.start {}
    local idle_pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q }', rx.url),
                                   "max_buffered = " .. MAX):gsub("max_lines = 20", "max_lines = 100")
    e = engine.start { pipeline = idle_pipeline, env = memory_env() }
    proc.wait_for(function() return e:stderr_text():find("following container", 1, true) end, 30, "the reader")
    proc.sleep(1)
    local idle = peak_kb(e)
    assert.equal(0, e:stop("TERM"))
    e:cleanup(); rx:stop(); srv:stop()
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", tostring(LINES), "--line-bytes", "1000",
                       "--stdout-only" }
    rx = receiver.start { "--delay-ms", "40" }
    local busy_pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q }', rx.url),
                                   "max_buffered = " .. MAX):gsub("max_lines = 20", "max_lines = 100")
    e = engine.start { pipeline = busy_pipeline, env = memory_env() }
    local total, count
    proc.wait_for(function()
      local bodies = {}
      for _, r in ipairs(rx:requests()) do bodies[#bodies + 1] = r.body end
      count, total = ndjson_seqs(bodies)
      return total >= LINES
    end, 240, LINES .. " lines at the receiver")
    local peak = peak_kb(e)
    assert.equal(0, e:stop("TERM"))
    assert_once(count, LINES)
    local pauses = tonumber(e:stderr_text():match("reader pauses (%d+)"))
    print(string.format("backpressure: %d lines of 1 KB, max_buffered 1 MiB: peak RSS %d KiB, idle %d KiB, " ..
                        "%d pauses", LINES, peak, idle, pauses))
    -- What max_buffered allows: the buffered bytes and the copies the
    -- decoder, the batches and the encoder make of them (4 x max_buffered),
    -- and buffers that do not depend on it (libcurl's, the sockets', the
    -- threads' allocator arenas: 8 MiB); far below the 24 MB an unpaused
    -- reader takes in. ThreadSanitizer's shadow memory scales every byte:
    -- there only the pauses count.
    -- AddressSanitizer's redzones and allocator metadata add about as much
    -- again as each allocation (checked against a reader that does not
    -- pause: far above even this bound).
    if not tsan then
      local bound = (4 * MAX / 1024 + 8192) * (os.getenv("ENGINE_SANITIZER") == "asan" and 2.5 or 1)
      assert.is_true(peak - idle < bound, string.format("peak %d KiB over an idle %d KiB, more than %d KiB",
                                                        peak, idle, bound))
    end
    assert.is_true(pauses > 0, "the reader never paused")
  end)

  it("waits the Retry-After of a 429 before sending again", function()
    -- a container that keeps running (one that ended before the engine
    -- listed the containers would not be followed)
    srv = fake.start { "--containers", "1", "--rate", "100" }
    rx = receiver.start { "--script", "429:2,200" }
    -- one request at a time: the request after the 429 is one sent after its answer
    e = engine.start { pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q, concurrency = 1 }',
                                                                   rx.url)) }
    proc.wait_for(function() return #rx:requests() >= 2 end, 30, "the request after the 429")
    local times = rx:times()
    -- backoff_initial is 0.05 s: only Retry-After makes it wait 2 s
    assert.is_true(times[2] - times[1] >= 2 - 0.01,
                   string.format("sent again %.3f s after a 429 with Retry-After: 2", times[2] - times[1]))
    proc.wait_for(function()
      local bodies = {}
      for _, r in ipairs(rx:requests()) do if r.n >= 2 then bodies[#bodies + 1] = r.body end end
      return select(2, ndjson_seqs(bodies)) >= 20
    end, 30, "every line accepted")
    assert.equal(0, e:stop("TERM"))
  end)

  -- An output that refuses (500 for every request) or never answers: the
  -- stop gives up on it within stop_timeout without acknowledging, and the
  -- next run on the same state directory delivers every line the first
  -- could have read.
  for _, stuck in ipairs { { "refuses", { "--script", "500" } }, { "hangs", { "--delay-ms", "600000" } } } do
    it("reads again at the next run what an output that " .. stuck[1] .. " had not taken at stop", function()
      local state = tmp .. "/state"
      srv = fake.start { "--containers", "1", "--rate", "200" }
      rx = receiver.start(stuck[2])
      e = engine.start { pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q }', rx.url)),
                         state_dir = state }
      proc.wait_for(function() return #rx:requests() >= 1 end, 30, "a request to the stuck output")
      proc.sleep(0.5)
      local t0 = proc.now()
      assert.equal(0, e:stop("TERM", 30))
      assert.is_true(proc.now() - t0 < 5 + 1, "the stop took longer than stop_timeout (5 s)")
      -- every line the first run could have read exists by now
      local written = #srv:logs("c0")
      e:cleanup(); rx:stop()
      rx = receiver.start {}
      e = engine.start { pipeline = pipeline(srv.host, string.format('{ type = "http", url = %q }', rx.url)),
                         state_dir = state }
      local count
      proc.wait_for(function()
        local bodies = {}
        for _, r in ipairs(rx:requests()) do bodies[#bodies + 1] = r.body end
        count = ndjson_seqs(bodies)
        for i = 1, written do if not count[i] then return false end end
        return true
      end, 60, "the " .. written .. " lines of the first run at the second run's output")
      assert.equal(0, e:stop("TERM"))
      assert_once(count, written)
    end)
  end
end)

-- Delivery through the outputs' one lifecycle: a full disk, replies of any
-- size, Elasticsearch's per-item answers, a hundred outputs, and a reload
-- that changes the outputs while a container logs. Every line arrives once
-- where the guarantee says so, checked at the destination.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"
local receiver = require "spec.support.receiver"

local function tmpdir()
  local _, d = proc.sh("mktemp -d /tmp/dlv.XXXXXX")
  return (d:gsub("%s+$", ""))
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Counts of c0's sequence numbers in records (tables with a `line`).
local function count_seqs(records, counts)
  counts = counts or {}
  for _, r in ipairs(records) do
    local seq = tonumber((r.line or ""):match("^c0 (%d+)"))
    if seq then counts[seq] = (counts[seq] or 0) + 1 end
  end
  return counts
end

local function assert_each_once(counts, n, what)
  for i = 1, n do
    assert.equal(1, counts[i], string.format("%s: line %d arrived %d times", what, i, counts[i] or 0))
  end
end

-- The records of every NDJSON body the receiver got.
local function ndjson_records(rx)
  local out = {}
  for _, r in ipairs(rx:requests()) do
    for line in r.body:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  end
  return out
end

-- RFC 3339 UTC text of a cursor's nanosecond count (a string of digits), as
-- the JSON output writes `time`: comparable as text.
local function ns_text(ns)
  local secs = tonumber(ns:sub(1, -10))
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. "." .. ns:sub(-9) .. "Z"
end

describe("delivery", function()
  local srv, e, rx, tmp
  local extra = {}
  before_each(function() tmp = tmpdir() end)
  after_each(function()
    e, srv = engine.release(e, srv)
    if rx then rx:stop() end
    for _, x in ipairs(extra) do x:stop() end
    rx, extra = nil, {}
    proc.sh("umount " .. proc.quote(tmp .. "/disk") .. " 2>/dev/null")
    proc.sh("rm -rf " .. proc.quote(tmp))
  end)

  it("keeps every line through a full disk, and no cursor passes an unwritten line", function()
    assert(proc.sh("mkdir -p " .. tmp .. "/disk && mount -t tmpfs -o size=1m tmpfs " .. tmp .. "/disk"))
    -- leave about 24 KiB free: the 2,000 records of ~200 bytes need 400 KiB
    assert(proc.sh("dd if=/dev/zero of=" .. tmp .. "/disk/filler bs=1k count=1000 2>/dev/null; true"))
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "2000", "--line-bytes", "90" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 10 },
  outputs = { { type = "file", path = %q } },
  engine = { checkpoint_interval = 0.2, backoff_initial = 0.05, backoff_max = 0.3 },
}]], srv.host, tmp .. "/disk/out.jsonl"), state_dir = tmp .. "/state" }
    proc.wait_for(function() return e:stderr_text():find("No space left on device", 1, true) end, 30,
                  "the write to fail with ENOSPC")
    -- while the disk is full: the saved cursor is not past the last line
    -- the file holds whole
    proc.sleep(1)
    local function last_time()
      local last
      for line in (proc.read(tmp .. "/disk/out.jsonl") or ""):gmatch("([^\n]*)\n") do
        last = cjson.decode(line).time
      end
      return last
    end
    local cp = cjson.decode((assert(proc.read(tmp .. "/state/cursors.json"))))
    local _, c = next(cp.containers)
    assert.is_true(ns_text(c.newest) <= last_time(),
                   "the cursor " .. ns_text(c.newest) .. " passed the last line written " .. last_time())
    -- space comes back: delivery resumes by itself
    assert(proc.sh("rm -f " .. tmp .. "/disk/filler"))
    proc.wait_for(function()
      local n = 0
      for _ in (proc.read(tmp .. "/disk/out.jsonl") or ""):gmatch("\n") do n = n + 1 end
      return n >= 2000
    end, 60, "2000 lines in the file")
    assert.equal(0, e:stop("TERM"))
    local records = {}
    for line in assert(proc.read(tmp .. "/disk/out.jsonl")):gmatch("([^\n]*)\n") do
      local ok, r = pcall(cjson.decode, line)
      assert(ok, "a broken line in the file: " .. line:sub(1, 200))
      records[#records + 1] = r
    end
    assert_each_once(count_seqs(records), 2000, "file")
    assert.equal(2000, #records)
    assert.matches("delivering again", e:stderr_text(), 1, true)
  end)

  it("saves no cursor past a batch one output holds, when later batches went to another", function()
    rx = receiver.start { "--script", "503" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "100", "--stdout-only" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.3, max_lines = 10 },
  filters = { function(batch)
    for _, r in ipairs(batch) do
      r.output = tonumber(r.line:match("^c0 (%%d+)")) <= 50 and "a" or "b"
    end
  end },
  outputs = { { type = "http", name = "a", url = %q, backoff_initial = 0.1, backoff_max = 0.2 },
              { type = "file", name = "b", path = %q } },
  engine = { checkpoint_interval = 0.2 },
}]], srv.host, rx.url, tmp .. "/b.jsonl"), state_dir = tmp .. "/state" }
    local function b_records()
      local out = {}
      for line in (proc.read(tmp .. "/b.jsonl") or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
      return out
    end
    proc.wait_for(function() return #b_records() >= 50 end, 30, "lines 51-100 in the file")
    proc.sleep(1) -- several checkpoint intervals
    local first_b
    for _, r in ipairs(b_records()) do
      if not first_b or r.time < first_b then first_b = r.time end
    end
    local cp = cjson.decode(proc.read(tmp .. "/state/cursors.json") or '{"containers":{}}')
    for _, c in pairs(cp.containers or {}) do
      assert.is_true(ns_text(c.newest) < first_b, "the cursor " .. ns_text(c.newest) ..
                     " passed lines 1-50, which output a has not taken (line 51: " .. first_b .. ")")
    end
    assert.equal(0, e:stop("TERM"))
  end)

  it("takes a 2xx answer of any size as delivered: each batch is posted once", function()
    local big = tmp .. "/big.json"
    write(big, '{"ok":true,"pad":"' .. string.rep("x", 2 * 1024 * 1024) .. '"}')
    rx = receiver.start { "--body-200", big }
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "300" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 50 },
  outputs = { { type = "http", url = %q } },
  engine = { state_dir = false, backoff_initial = 0.05, backoff_max = 0.2 },
}]], srv.host, rx.url) }
    proc.wait_for(function() return #ndjson_records(rx) >= 300 end, 30, "300 records")
    proc.sleep(0.5) -- a batch sent again would show up by now
    assert.equal(0, e:stop("TERM"))
    local records = ndjson_records(rx)
    assert_each_once(count_seqs(records), 300, "http")
    assert.equal(300, #records)
    assert.is_nil(e:stderr_text():find("retrying", 1, true))
  end)

  -- The documents the receiver took (2xx) with its --bulk list, and those it
  -- refused with status, in request order.
  local function bulk_outcome(reqs, statuses)
    local k, taken, refused = 0, {}, {}
    for _, r in ipairs(reqs) do
      local lines = {}
      for l in r.body:gmatch("[^\n]+") do lines[#lines + 1] = l end
      for i = 2, #lines, 2 do
        k = k + 1
        local st = statuses[k] or 201
        local doc = cjson.decode(lines[i])
        if st >= 200 and st < 300 then taken[#taken + 1] = doc
        else refused[#refused + 1] = { status = st, doc = doc } end
      end
    end
    return taken, refused
  end

  local function bulk_list(n, every, status)
    local out = {}
    for i = 1, n do out[i] = i % every == 0 and status or 201 end
    return out
  end

  it("sends again only the Elasticsearch items answered 429, and dead-letters nothing", function()
    local statuses = bulk_list(200, 7, 429)
    rx = receiver.start { "--bulk", table.concat(statuses, ",") }
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "200" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 40 },
  outputs = { { type = "elasticsearch", url = %q, dead_letter = %q } },
  engine = { state_dir = false, backoff_initial = 0.05, backoff_max = 0.2 },
}]], srv.host, rx.url, dl) }
    proc.wait_for(function()
      local taken = bulk_outcome(rx:requests(), statuses)
      return #taken >= 200
    end, 30, "200 documents taken")
    proc.sleep(0.5)
    assert.equal(0, e:stop("TERM"))
    local taken, refused = bulk_outcome(rx:requests(), statuses)
    assert_each_once(count_seqs(taken), 200, "elasticsearch")
    assert.equal(200, #taken)
    assert.is_true(#refused >= 28, #refused .. " items were answered 429") -- every 7th of 200
    assert.equal("", proc.read(dl) or "")
  end)

  it("dead-letters only the Elasticsearch items answered 400, each with its own reason", function()
    local statuses = bulk_list(200, 10, 400)
    rx = receiver.start { "--bulk", table.concat(statuses, ",") }
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "200" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 40 },
  outputs = { { type = "elasticsearch", url = %q, dead_letter = %q } },
  engine = { state_dir = false, backoff_initial = 0.05, backoff_max = 0.2 },
}]], srv.host, rx.url, dl) }
    local function dead()
      local out = {}
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
      return out
    end
    proc.wait_for(function() return #bulk_outcome(rx:requests(), statuses) >= 180 and #dead() >= 20 end,
                  30, "180 documents taken and 20 dead letters")
    proc.sleep(0.5)
    assert.equal(0, e:stop("TERM"))
    local taken, refused = bulk_outcome(rx:requests(), statuses)
    assert.equal(180, #taken)
    assert.equal(20, #refused)
    local counts = count_seqs(taken)
    local letters = dead()
    assert.equal(20, #letters)
    for _, d in ipairs(letters) do
      assert.equal(1, d.records)
      local doc = cjson.decode(d.body:match("\n([^\n]+)\n$"))
      local seq = tonumber(doc.line:match("^c0 (%d+)"))
      counts[seq] = (counts[seq] or 0) + 1
      assert.matches("^status 400 status_400: item %d+ refused$", d.reason)
    end
    assert_each_once(counts, 200, "taken or dead-lettered")
  end)

  it("indexes every record once in Elasticsearch across an engine killed with SIGKILL #sanitize", function()
    -- the receiver refuses an _id it took before with 409, as Elasticsearch
    -- does for `create`; the engine counts that as delivered. Each line is
    -- cut into five pieces at line_max, three of them equal (same bytes,
    -- same timestamp): only their occurrence tells their ids apart, on the
    -- first read and on the restart's. (A restart that finds some equal
    -- pieces of a line saved and others not is in spec/unit/record_id_spec.)
    local N = 1000
    rx = receiver.start { "--unique-ids" }
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", tostring(N), "--linger",
                       "--line-bytes", "5000" }
    local dl, state = tmp .. "/dead.jsonl", tmp .. "/state"
    local p = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 40 },
  outputs = { { type = "elasticsearch", url = %q, dead_letter = %q } },
  engine = { checkpoint_interval = 3, line_max = 1040, backoff_initial = 0.05, backoff_max = 0.2 },
}]], srv.host, rx.url, dl)
    local function indexed()
      local out = {}
      for line in (proc.read(rx.dir .. "/req/indexed") or ""):gmatch("[^\n]+") do
        out[#out + 1] = cjson.decode(line)
      end
      return out
    end
    local function conflicts()
      local n = 0
      for c in (proc.read(rx.dir .. "/stderr") or ""):gmatch("bulk conflicts (%d+)") do n = tonumber(c) end
      return n
    end
    e = engine.start { pipeline = p, state_dir = state }
    proc.wait_for(function() return #indexed() >= 500 end, 30, "500 documents indexed")
    -- killed some 300 documents after a cursor save, well before the next
    -- one: the restarted engine sends those again
    local saved = proc.read(state .. "/cursors.json")
    proc.wait_for(function() return proc.read(state .. "/cursors.json") ~= saved end, 30, "a cursor save")
    local at_save = #indexed()
    proc.wait_for(function() return #indexed() >= at_save + 300 end, 30, "documents after the save")
    e:signal("KILL")
    e:wait(10)
    e = engine.start { pipeline = p, state_dir = state }
    proc.wait_for(function() return #indexed() >= 5 * N end, 60, "every piece indexed")
    proc.sleep(0.5) -- a document sent again would show up by now
    assert.equal(0, e:stop("TERM"))
    local docs = indexed()
    assert_each_once(count_seqs(docs), N, "elasticsearch")
    local alphabet = ("abcdefghijklmnopqrstuvwxyz"):rep(40)
    local equal = 0
    for _, d in ipairs(docs) do
      assert.is_true(d.truncated, d.line)
      if d.line == alphabet then equal = equal + 1 end
    end
    assert.equal(3 * N, equal)
    assert.equal(5 * N, #docs)
    print(string.format("elasticsearch: %d lines in %d pieces, %d documents indexed, %d sent again and "
                        .. "answered 409", N, 5 * N, #docs, conflicts()))
    assert.is_true(conflicts() > 0, "the SIGKILL made the engine send documents again")
    assert.equal("", proc.read(dl) or "")
  end)

  it("reports a failing output on /ready and in metrics until it delivers again", function()
    rx = receiver.start { "--script", "503,503,503,503,503,503,503,503,503,503,200" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "20", "--stdout-only" }
    local url
    e, url = metrics.start_engine { docker_host = srv.host,
      outputs = string.format('{ type = "http", url = %q, backoff_initial = 0.1, backoff_max = 0.2 }', rx.url) }
    proc.wait_for(function()
      local status, body = metrics.get(url .. "/ready")
      return status == 503 and body:find("output http is failing: HTTP 503", 1, true)
    end, 20, "/ready to name the failing output")
    local m = metrics.parse(select(2, metrics.get(url .. "/metrics")))
    assert.equal(1, m:value("engine_output_failing", { output = "http" }))
    proc.wait_for(function() return #rx:requests() >= 11 end, 30, "the 11th request, answered 200")
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 10, "/ready again")
    m = metrics.parse(select(2, metrics.get(url .. "/metrics")))
    assert.equal(0, m:value("engine_output_failing", { output = "http" }))
    assert.equal(0, e:stop("TERM"))
    local taken = {}
    for _, r in ipairs(rx:requests()) do -- requests 11 on were answered 200
      if r.n > 10 then for l in r.body:gmatch("[^\n]+") do taken[#taken + 1] = cjson.decode(l) end end
    end
    assert_each_once(count_seqs(taken), 20, "http")
  end)

  it("cuts a body answered 413 in halves until the server takes it", function()
    rx = receiver.start { "--script", "413,413,413,200" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "40", "--stdout-only" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.3, max_lines = 40 },
  outputs = { { type = "http", url = %q, concurrency = 1 } }, -- one half at a time
  engine = { backoff_initial = 0.05, backoff_max = 0.2 },
}]], srv.host, rx.url) }
    proc.wait_for(function()
      local n = 0
      for _, r in ipairs(rx:requests()) do
        if r.n > 3 then for _ in r.body:gmatch("\n") do n = n + 1 end end
      end
      return n >= 40
    end, 30, "40 records taken")
    proc.sleep(0.3)
    assert.equal(0, e:stop("TERM"))
    local reqs, taken = rx:requests(), {}
    for _, r in ipairs(reqs) do
      if r.n > 3 then
        for line in r.body:gmatch("[^\n]+") do taken[#taken + 1] = cjson.decode(line) end
      end
    end
    assert_each_once(count_seqs(taken), 40, "http after 413")
    local function records(r) local n = 0 for _ in r.body:gmatch("\n") do n = n + 1 end return n end
    assert.equal(40, records(reqs[1]))
    assert.equal(20, records(reqs[2]))
    assert.equal(10, records(reqs[3]))
  end)

  it("dead-letters a single record a server answers 413 for, and goes on", function()
    rx = receiver.start { "--script", "413" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "6", "--stdout-only" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.3, max_lines = 6 },
  outputs = { { type = "http", url = %q, dead_letter = %q } },
}]], srv.host, rx.url, dl) }
    local function dead()
      local out = {}
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
      return out
    end
    proc.wait_for(function() return #dead() >= 6 end, 30, "6 dead letters")
    assert.equal(0, e:stop("TERM"))
    local counts = {}
    for _, d in ipairs(dead()) do
      assert.equal(1, d.records)
      assert.matches("^HTTP 413", d.reason)
      count_seqs({ cjson.decode(d.body) }, counts)
    end
    assert_each_once(counts, 6, "dead letters")
  end)

  it("runs a hundred outputs and stops cleanly #sanitize", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "100" }
    local outs = {}
    for i = 1, 100 do
      outs[i] = i % 2 == 0 and string.format('{ type = "file", name = "f%d", path = "%s/out%d.jsonl" }', i, tmp, i)
                            or string.format('{ type = "null", name = "n%d" }', i)
    end
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { %s },
  engine = { state_dir = false },
}]], srv.host, table.concat(outs, ",\n")) }
    proc.wait_for(function()
      for i = 2, 100, 2 do
        local n = 0
        for _ in (proc.read(string.format("%s/out%d.jsonl", tmp, i)) or ""):gmatch("\n") do n = n + 1 end
        if n < 100 then return false end
      end
      return true
    end, 60, "100 lines in each of the 50 files")
    assert.equal(0, e:stop("TERM"))
    for i = 2, 100, 2 do
      local records = {}
      for line in proc.read(string.format("%s/out%d.jsonl", tmp, i)):gmatch("[^\n]+") do
        records[#records + 1] = cjson.decode(line)
      end
      assert_each_once(count_seqs(records), 100, "out" .. i)
    end
    local mode = select(2, proc.sh("stat -c %a " .. proc.quote(tmp .. "/out2.jsonl"))):gsub("%s+$", "")
    assert.equal("600", mode)
  end)

  it("reloads a changed filter and changed outputs while a container logs, losing and repeating nothing #sanitize", function()
    local rxs = {}
    for i = 1, 4 do rxs[i] = receiver.start {} end
    rx = rxs[1]
    extra = { rxs[2], rxs[3], rxs[4] }
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", "1200" }
    local function pipe(tag, outputs)
      return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch) for _, r in ipairs(batch) do r.tag = %q end end },
  outputs = { %s },
  engine = { state_dir = false, backoff_initial = 0.05, backoff_max = 0.2 },
}]], srv.host, tag, outputs)
    end
    local kept = string.format('{ type = "http", name = "kept", url = %q }', rxs[1].url)
    e = engine.start { pipeline = pipe("v1", kept .. string.format(
      ', { type = "http", name = "dropped", url = %q }, { type = "http", name = "moved", url = %q }',
      rxs[2].url, rxs[3].url)) }
    proc.wait_for(function() return #ndjson_records(rxs[1]) >= 200 end, 20, "200 lines before the reload")
    write(e.pipeline_path, pipe("v2", kept .. string.format(
      ', { type = "http", name = "moved", url = %q }, { type = "http", name = "added", url = %q }',
      rxs[4].url, rxs[2].url .. "/added")))
    e:signal("HUP")
    proc.wait_for(function() return e:stderr_text():find("is running", 1, true) end, 20, "the reload")
    proc.wait_for(function() return #ndjson_records(rxs[1]) >= 1200 end, 30, "1200 lines in the kept output")
    proc.sleep(0.5)
    assert.equal(0, e:stop("TERM"))
    assert.matches("reload: 1 outputs kept, 2 started, 2 dropped", e:stderr_text(), 1, true)
    -- kept: every line once, tagged v1 then v2, never back
    local swapped = false
    local kept_records = ndjson_records(rxs[1])
    assert_each_once(count_seqs(kept_records), 1200, "kept")
    for _, r in ipairs(kept_records) do
      if r.tag == "v2" then swapped = true else assert.is_false(swapped, "v1 after v2") end
    end
    assert.is_true(swapped)
    -- moved (a new URL): the two addresses together have every line once
    local moved = count_seqs(ndjson_records(rxs[3]))
    count_seqs(ndjson_records(rxs[4]), moved)
    assert_each_once(moved, 1200, "moved")
    -- dropped and added: a prefix and a suffix, no line twice
    local dropped, added = {}, {}
    for _, r in ipairs(rxs[2]:requests()) do
      local into = r.path == "/added" and added or dropped
      for line in r.body:gmatch("[^\n]+") do
        local seq = tonumber(cjson.decode(line).line:match("^c0 (%d+)"))
        into[seq] = (into[seq] or 0) + 1
      end
    end
    for seq, n in pairs(dropped) do assert.equal(1, n, "dropped: line " .. seq) end
    for seq, n in pairs(added) do assert.equal(1, n, "added: line " .. seq) end
    assert.is_true(next(dropped) ~= nil and next(added) ~= nil)
  end)
end)

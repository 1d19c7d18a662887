-- A network output with several requests in flight: answers that come back
-- out of order and failures among them lose and repeat no line, and the
-- saved cursor never passes a line whose request the receiver has not
-- answered 2xx; and the receiver really sees the requests at once.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"
local receiver = require "spec.support.receiver"

local function tmpdir()
  local _, d = proc.sh("mktemp -d /tmp/conc.XXXXXX")
  return (d:gsub("%s+$", ""))
end

-- RFC 3339 UTC text of a cursor's nanosecond count (a string of digits), as
-- the JSON output writes `time`: comparable as text.
local function ns_text(ns)
  local secs = tonumber(ns:sub(1, -10))
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. "." .. ns:sub(-9) .. "Z"
end

-- What the receiver got so far: for each container id, line number ->
-- { time, accepted = times it came in a request answered 2xx }.
local function received(rx)
  local status = {}
  for n, st in (proc.read(rx.dir .. "/stderr") or ""):gmatch("request (%d+) %S+ %S+ %-> (%d+) at") do
    status[tonumber(n)] = tonumber(st)
  end
  local by_id = {}
  for _, r in ipairs(rx:requests()) do
    local ok = status[r.n] and status[r.n] >= 200 and status[r.n] < 300
    for text in r.body:gmatch("[^\n]+") do
      local rec = cjson.decode(text)
      local seq = tonumber(rec.line:match("^c%d+ (%d+)"))
      local lines = by_id[rec.container] or {}
      by_id[rec.container] = lines
      local l = lines[seq] or { time = rec.time, accepted = 0 }
      lines[seq] = l
      if ok then l.accepted = l.accepted + 1 end
    end
  end
  return by_id
end

-- The time of the first line of a container the receiver has seen but not
-- accepted, past every line it accepted without a gap before it; nil when
-- there is none.
local function first_unaccepted(lines)
  local seq = 1
  while lines[seq] and lines[seq].accepted > 0 do seq = seq + 1 end
  local max = 0
  for s in pairs(lines) do max = math.max(max, s) end
  for s = seq, max do
    if lines[s] then return lines[s].time, s end
  end
end

describe("an output with requests in flight at once", function()
  local srv, e, rx, tmp
  before_each(function() tmp = tmpdir() end)
  after_each(function()
    e, srv = engine.release(e, srv)
    if rx then rx:stop() end
    rx = nil
    proc.sh("rm -rf " .. proc.quote(tmp))
  end)

  it("delivers every line once through answers out of order and 5xx, and no cursor passes an unaccepted line #sanitize", function()
    local script = {}
    for i = 1, 60 do script[i] = (i % 7 == 3) and "500" or (i % 11 == 5 and "503" or "200") end
    script[#script + 1] = "200" -- the last status repeats
    rx = receiver.start { "--script", table.concat(script, ","), "--delays", "250,10,120,0,60,180,30" }
    local containers, lines = 3, 300
    srv = fake.start { "--containers", tostring(containers), "--rate", "150", "--lines", tostring(lines),
                       "--stdout-only", "--linger" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 15 },
  outputs = { { type = "http", url = %q, concurrency = 4, backoff_initial = 0.05, backoff_max = 0.2 } },
  engine = { checkpoint_interval = 0.05 },
}]], srv.host, rx.url), state_dir = tmp .. "/state" }
    local checks, passed = 0, 0
    proc.wait_for(function()
      -- the cursor first, then what the receiver holds (a superset of what
      -- was accepted when the cursor was saved)
      local text = proc.read(tmp .. "/state/cursors.json")
      local by_id = received(rx)
      if text then
        checks = checks + 1
        for id, c in pairs(cjson.decode(text).containers or {}) do
          local t, seq = first_unaccepted(by_id[id] or {})
          if t then
            passed = passed + 1
            assert.is_true(ns_text(c.newest) < t, string.format(
              "the cursor %s of %s passed line %d (%s), which no 2xx answer took yet",
              ns_text(c.newest), id, seq, t))
          end
        end
      end
      local n = 0
      for _, l in pairs(by_id) do
        for _, line in pairs(l) do if line.accepted > 0 then n = n + 1 end end
      end
      return n >= containers * lines
    end, 60, "every line accepted")
    assert.is_true(checks > 10, "the cursor file was read " .. checks .. " times")
    assert.is_true(passed > 0, "no cursor was read while a line was unaccepted")
    assert.equal(0, e:stop("TERM"))
    local by_id, ids = received(rx), 0
    for id, l in pairs(by_id) do
      ids = ids + 1
      for seq = 1, lines do
        assert.equal(1, l[seq] and l[seq].accepted or 0,
                     string.format("%s line %d was accepted %d times", id, seq, l[seq] and l[seq].accepted or 0))
      end
    end
    assert.equal(containers, ids)
    local err = e:stderr_text()
    assert.matches("HTTP 500", err, 1, true)
    assert.matches("HTTP 503", err, 1, true)
    -- the answers did come back out of order: a request answered before an
    -- earlier one
    assert.is_true(rx:most_waiting() > 1, "at most " .. rx:most_waiting() .. " request waited at once")
  end)

  -- batches of 10 records of about 210 bytes: either limit lets 3 batches
  -- go as one request, so a merge crosses from one container's 10 batches
  -- to the next one's
  for _, limit in ipairs { { "batch_max_records", 35, 35, 1e9 }, { "batch_max_bytes", 6500, 1e9, 6500 } } do
  local key, value, max_records, max_bytes = limit[1], limit[2], limit[3], limit[4]
  it("sends the queued batches of several containers as one request within " .. key .. ", each line once #sanitize", function()
    -- 413 cuts a merged body in two (both halves hold every batch); 500 is retried
    rx = receiver.start { "--script", "200,413,200,500,200", "--delay-ms", "150" }
    local containers, lines = 4, 100
    srv = fake.start { "--containers", tostring(containers), "--rate", "0", "--preload", tostring(lines),
                       "--stdout-only" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 10 },
  outputs = { { type = "http", url = %q, concurrency = 1, %s = %d,
                backoff_initial = 0.05, backoff_max = 0.2 } },
  engine = { checkpoint_interval = 0.05 },
}]], srv.host, rx.url, key, value), state_dir = tmp .. "/state" }
    proc.wait_for(function()
      local n = 0
      for _, l in pairs(received(rx)) do
        for _, line in pairs(l) do if line.accepted > 0 then n = n + 1 end end
      end
      return n >= containers * lines
    end, 60, "every line accepted")
    assert.equal(0, e:stop("TERM"))
    local by_id, ids = received(rx), 0
    for id, l in pairs(by_id) do
      ids = ids + 1
      for seq = 1, lines do
        assert.equal(1, l[seq] and l[seq].accepted or 0,
                     string.format("%s line %d was accepted %d times", id, seq, l[seq] and l[seq].accepted or 0))
      end
    end
    assert.equal(containers, ids)
    local merged, most = 0, 0
    for _, r in ipairs(rx:requests()) do
      local records, names = 0, {}
      for text in r.body:gmatch("[^\n]+") do
        records = records + 1
        names[cjson.decode(text).name] = true
      end
      assert.is_true(records <= max_records, "a request of " .. records .. " records")
      assert.is_true(#r.body <= max_bytes or records <= 10, "a request of " .. #r.body .. " bytes")
      local n = 0
      for _ in pairs(names) do n = n + 1 end
      if records > 10 and n > 1 then merged = merged + 1 end
      most = math.max(most, records)
    end
    assert.is_true(merged > 0, "no request held the batches of several containers")
    assert.is_true(#rx:requests() < containers * lines / 10,
                   #rx:requests() .. " requests for " .. containers * lines / 10 .. " batches")
    assert.matches("sending the batch in two parts", e:stderr_text(), 1, true)
  end)
  end

  for _, off in ipairs { false, true } do
  it(off and "sends one batch a request with batch_max_bytes = 0"
         or "merges the queued batches by default, within 1 MiB a request", function()
    rx = receiver.start { "--delay-ms", "150" }
    local containers, lines = 4, 100
    srv = fake.start { "--containers", tostring(containers), "--rate", "0", "--preload", tostring(lines),
                       "--stdout-only" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 10 },
  outputs = { { type = "http", url = %q, concurrency = 1 %s } },
}]], srv.host, rx.url, off and ", batch_max_bytes = 0" or "") }
    proc.wait_for(function()
      local n = 0
      for _, l in pairs(received(rx)) do
        for _ in pairs(l) do n = n + 1 end
      end
      return n >= containers * lines
    end, 60, "every line received")
    assert.equal(0, e:stop("TERM"))
    local most = 0
    for _, r in ipairs(rx:requests()) do
      local records = select(2, r.body:gsub("\n", ""))
      most = math.max(most, records)
      assert.is_true(#r.body <= 1048576, "a request of " .. #r.body .. " bytes")
    end
    if off then
      assert.equal(10, most)
      assert.is_true(#rx:requests() >= containers * lines / 10, #rx:requests() .. " requests")
    else
      assert.is_true(most > 10, "no request held more than one batch")
      assert.is_true(#rx:requests() < containers * lines / 10, #rx:requests() .. " requests")
    end
  end)
  end

  -- a container logging 200 lines/s in batches of about 10 lines, to a
  -- receiver answering at once
  local function lingering(timeout)
    rx = receiver.start {}
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", "300", "--stdout-only", "--linger" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 10 },
  outputs = { { type = "http", url = %q, concurrency = 1, batch_timeout = %s } },
}]], srv.host, rx.url, timeout) }
  end

  local function records_per_request()
    local most, total = 0, 0
    for _, r in ipairs(rx:requests()) do
      local n = select(2, r.body:gsub("\n", ""))
      most, total = math.max(most, n), total + n
    end
    return most, total
  end

  it("lets a request under the limits wait batch_timeout for more batches #sanitize", function()
    lingering(0.5)
    proc.wait_for(function() return select(2, records_per_request()) >= 300 end, 30, "every line received")
    assert.equal(0, e:stop("TERM"))
    local most, total = records_per_request()
    assert.equal(300, total)
    assert.is_true(most > 30, "the largest request held " .. most .. " records")
    assert.is_true(#rx:requests() < 15, #rx:requests() .. " requests for about 30 batches")
  end)

  it("sends what waits out batch_timeout at once when the engine stops #sanitize", function()
    lingering(30)
    proc.sleep(2.5) -- the 300 lines were logged (1.5 s) and read; they wait
    assert.equal(0, #rx:requests())
    assert.equal(0, e:stop("TERM"))
    assert.equal(300, select(2, records_per_request()))
    assert.equal(1, #rx:requests())
  end)

  for _, n in ipairs { 1, 4 } do
    it("has " .. n .. " request(s) in flight at once with concurrency = " .. n, function()
      rx = receiver.start { "--delay-ms", "300" }
      srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "200", "--stdout-only" }
      local url
      -- one batch a request (batch_max_bytes = 0): the 20 batches fill the
      -- requests in flight, however many were queued when one started
      e, url = metrics.start_engine { docker_host = srv.host, batch = "max_lines = 10",
        outputs = string.format('{ type = "http", url = %q, concurrency = %d, batch_max_bytes = 0 }', rx.url, n) }
      local most = 0
      proc.wait_for(function()
        local m = metrics.parse(select(2, metrics.get(url .. "/metrics")))
        most = math.max(most, m:value("engine_output_requests_in_flight", { output = "http" }) or 0)
        return most >= n and rx:most_waiting() >= n
      end, 30, n .. " requests in flight")
      assert.equal(n, rx:most_waiting())
      assert.equal(n, most)
      local records = 0
      proc.wait_for(function()
        records = 0
        for _, r in ipairs(rx:requests()) do for _ in r.body:gmatch("\n") do records = records + 1 end end
        return records >= 200
      end, 30, "200 records")
      assert.equal(0, e:stop("TERM"))
      assert.equal(n, rx:most_waiting())
    end)
  end
end)

-- The metrics endpoint (engine.metrics.listen), against the fake Docker API
-- server: each path's answer, the Prometheus text format, counters that
-- match what the containers logged, bounded label cardinality, readiness
-- when the daemon goes away, a clean stop with clients connected, health
-- probes answered while idle clients hold many connections, and that it is
-- off unless asked for.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"
local receiver = require "spec.support.receiver"
local socket = require "posix.sys.socket"
local poll = require "posix.poll"
local time = require "posix.time"
local unistd = require "posix.unistd"

local LINES = 40

local function port_of(url) return tonumber(url:match(":(%d+)$")) end

-- Waits (bounded) until every container of the fake server finished and
-- the readers delivered want lines each; returns the parsed /metrics.
-- Waits until each of names read want lines and no reader is live; with
-- records, also until the pipeline took that many records in and out (it
-- may still be behind the readers when they finish).
local function wait_lines(url, names, want, records)
  local m
  proc.wait_for(function()
    local status, body = metrics.get(url .. "/metrics")
    assert.equal(200, status)
    m = metrics.parse(body)
    for _, n in ipairs(names) do
      if m:value("engine_lines_read_total", { container = n }) ~= want then return false end
    end
    if records and (m:value("engine_records_in_total") ~= records or
                    m:value("engine_records_out_total") ~= records) then
      return false
    end
    return m:value("engine_readers_live") == 0
  end, 30, "every container's lines in /metrics")
  return m
end

describe("the metrics endpoint #sanitize #tsan", function()
  local srv, e
  after_each(function()
    local de, dsrv = e, srv
    e, srv = nil, nil
    proc.each(function() if de and de:running() then de:stop("TERM", 15) end end,
              function() engine.release(de, dsrv) end)
  end)

  it("is off unless engine.metrics.listen is set", function()
    srv = fake.start { "--containers", "1", "--rate", "100" }
    e = engine.start { pipeline = metrics.pipeline { docker_host = srv.host }, docker_host = srv.host }
    e:wait_records(5, 20)
    assert.is_nil(e:stderr_text():find("metrics:", 1, true))
    local ok, out, code = proc.sh("curl -s -S --max-time 5 http://127.0.0.1:9180/health")
    assert.is_false(ok, out)
    assert.equal(7, code, out) -- curl: could not connect
    assert.equal(0, e:stop())
  end)

  it("answers /health, /ready, /readers and /pipeline", function()
    srv = fake.start { "--containers", "2", "--rate", "100" }
    local url
    e, url = metrics.start_engine {
      docker_host = srv.host,
      filters = [[ { name = "keep", on_error = "drop", process = function(b) return b end } ]],
    }
    e:wait_records(10, 20)
    local status, body, h = metrics.get(url .. "/health")
    assert.equal(200, status)
    assert.equal("ok\n", body)
    assert.equal("close", h["connection"])
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 20, "/ready")
    status, body = metrics.get(url .. "/ready")
    assert.equal("ready\n", body)

    local readers
    proc.wait_for(function()
      status, body, h = metrics.get(url .. "/readers")
      readers = cjson.decode(body)
      return #readers == 2 and readers[1].lines > 0 and readers[2].lines > 0
    end, 20, "two readers with lines")
    assert.equal(200, status)
    assert.equal("application/json", h["content-type"])
    assert.equal("c0", readers[1].name)
    assert.equal("c1", readers[2].name)
    for _, r in ipairs(readers) do
      assert.matches("^%x+$", r.id)
      assert.equal(64, #r.id)
      assert.equal("streaming", r.state)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%dZ$", r.last)
      assert.is_true(r.bytes >= r.lines)
      assert.equal(0, r.errors)
    end

    status, body, h = metrics.get(url .. "/pipeline")
    assert.equal(200, status)
    local p = cjson.decode(body)
    assert.is_true(p.loaded)
    assert.equal(1, #p.filters)
    assert.equal("keep", p.filters[1].name)
    assert.equal("drop", p.filters[1].on_error)
    assert.is_true(p.filters[1].calls > 0)
    assert.equal(1, #p.outputs)
    assert.equal("stdout", p.outputs[1].type)
    assert.equal("stdout", p.outputs[1].name)
    assert.equal(0, e:stop())
  end)

  it("answers HEAD without a body, and 404, 405, 400 and 431 where it must", function()
    srv = fake.start { "--containers", "1", "--rate", "10" }
    local url
    e, url = metrics.start_engine { docker_host = srv.host }
    local status, body, h = metrics.get(url .. "/metrics", { method = "HEAD" })
    assert.equal(200, status)
    assert.equal("", body)
    assert.is_true(tonumber(h["content-length"]) > 0)
    status, body = metrics.get(url .. "/nothing-here")
    assert.equal(404, status)
    status, body, h = metrics.get(url .. "/metrics", { method = "POST" })
    assert.equal(405, status)
    assert.equal("GET, HEAD", h["allow"])
    status = metrics.get(url .. "/metrics?name[]=engine_readers_live")
    assert.equal(200, status)
    status = metrics.get(url .. "/health", { headers = { "X-Big: " .. string.rep("a", 9000) } })
    assert.equal(431, status)
    local answer = metrics.raw(port_of(url), "NONSENSE\r\n\r\n")
    assert.matches("^HTTP/1%.1 400 ", answer)
    assert.equal(0, e:stop())
  end)

  it("serves the Prometheus text format with counters that match what the containers logged", function()
    srv = fake.start { "--containers", "3", "--rate", "200", "--lines", tostring(LINES) }
    local url
    e, url = metrics.start_engine {
      docker_host = srv.host,
      metrics = "max_containers = 2",
      filters = [[ { name = "we\"ird\\name\nx", process = function(b) return b end } ]],
    }
    local m = wait_lines(url, { "c0", "c1" }, LINES, 3 * LINES)
    local _, _, h = metrics.get(url .. "/metrics")
    assert.equal("text/plain; version=0.0.4; charset=utf-8", h["content-type"])
    -- c2 is beyond max_containers: summed under _other
    assert.is_nil(m:value("engine_lines_read_total", { container = "c2" }))
    assert.equal(LINES, m:value("engine_lines_read_total", { container = "_other" }))
    assert.equal(1, m:value("engine_metrics_other_containers"))
    local bytes = m:by_label("engine_bytes_read_total", "container")
    assert.is_true(bytes.c0 >= LINES * #"c0 1")
    assert.equal(3, m:value("engine_readers_started_total"))
    assert.equal(3, m:value("engine_readers_stopped_total"))
    assert.equal(0, m:value("engine_readers_live"))
    assert.equal(3 * LINES, m:value("engine_records_in_total"))
    assert.equal(3 * LINES, m:value("engine_records_out_total"))
    assert.equal(0, m:value("engine_records_dropped"))
    local states = m:by_label("engine_readers", "state")
    for _, s in ipairs { "connecting", "streaming", "cycling", "draining", "inspecting", "backoff",
                         "stopping", "closed" } do
      assert.equal(0, states[s], s)
    end
    -- the filter's name comes back whole through the label escaping
    local calls = m:by_label("engine_filter_calls_total", "filter")
    assert.is_true(calls["we\"ird\\name\nx"] > 0)
    assert.equal(0, m:value("engine_filter_errors_total", { filter = "we\"ird\\name\nx" }))
    assert.equal(0, m:value("engine_filter_timeouts_total", { filter = "we\"ird\\name\nx" }))
    -- the duration histogram counts every call, in cumulative buckets
    local f = "we\"ird\\name\nx"
    assert.equal(calls[f], m:value("engine_filter_duration_seconds_count", { filter = f }))
    assert.equal(calls[f], m:value("engine_filter_duration_seconds_bucket", { filter = f, le = "+Inf" }))
    assert.is_true(m:value("engine_filter_duration_seconds_bucket", { filter = f, le = "0.001" })
                   <= m:value("engine_filter_duration_seconds_bucket", { filter = f, le = "0.01" }))
    -- each call takes some time, and none reached filter_timeout (5 s)
    local sum = m:value("engine_filter_duration_seconds_sum", { filter = f })
    assert.is_true(sum > 0 and sum < calls[f] * 5, "duration sum " .. sum)
    assert.equal(1, m:value("engine_docker_up"))
    assert.equal(1, m:value("engine_pipeline_loaded"))
    -- saves work: the cursor file is at most checkpoint_interval (1 s) and
    -- a save behind, with a second's margin for a busy machine
    local age = m:value("engine_checkpoint_age_seconds")
    assert.is_true(age >= 0 and age < 1 + 1, "checkpoint age " .. age)
    assert.equal(0, m:value("engine_events_reconnects_total"))
    assert.equal(0, m:value("engine_reader_pauses_total"))
    -- every line went through the output: nothing is left unacknowledged
    assert.equal(0, m:value("engine_bytes_in_flight"))
    for _, f in ipairs { "engine_readers_cycled_total", "engine_batches_total",
                         "engine_output_batches_sent_total", "engine_output_dead_letters_total",
                         "engine_reader_errors_total", "engine_reader_last_timestamp_seconds",
                         "engine_docker_repeated_lines_total" } do
      assert.is_table(m.families[f], f)
    end
    -- finished containers stay in /readers with their final counts
    local readers = cjson.decode((select(2, metrics.get(url .. "/readers"))))
    assert.equal(3, #readers)
    for _, r in ipairs(readers) do
      assert.equal("finished", r.state)
      assert.equal(LINES, r.lines)
      assert.equal(0, r.repeated) -- the fake daemon sends each line once
    end
    assert.equal(0, e:stop())
  end)

  it("counts a network output's batches", function()
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", "20" }
    -- an HTTP output whose server refuses connections: every try fails
    local url
    e, url = metrics.start_engine {
      docker_host = srv.host,
      outputs = [[ { type = "http", name = "nowhere", url = "http://127.0.0.1:1/x",
                     backoff_initial = 0.05, backoff_max = 0.1, retry_max = 1 } ]],
    }
    local m
    proc.wait_for(function()
      m = metrics.parse(select(2, metrics.get(url .. "/metrics")))
      return (m:value("engine_output_dead_letters_total", { output = "nowhere" }) or 0) > 0
    end, 30, "a dead letter")
    assert.is_true(m:value("engine_output_batches_failed_total", { output = "nowhere" }) >= 2)
    assert.is_true(m:value("engine_output_batches_retried_total", { output = "nowhere" }) >= 1)
    assert.equal(0, m:value("engine_output_batches_sent_total", { output = "nowhere" }))
    assert.is_number(m:value("engine_output_batches_pending", { output = "nowhere" }))
    local flying = m:value("engine_output_requests_in_flight", { output = "nowhere" })
    assert.is_true(flying >= 0 and flying <= 4, "requests in flight: " .. tostring(flying))
    local p = cjson.decode((select(2, metrics.get(url .. "/pipeline"))))
    assert.equal("http", p.outputs[1].type)
    assert.is_true(p.outputs[1].dead_letters > 0)
    assert.is_number(p.outputs[1].in_flight)
    assert.equal(0, e:stop())
  end)

  it("counts a network output's requests, their records and bytes, and its queue age", function()
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", "30" }
    local rx = receiver.start {}
    finally(function() rx:stop() end)
    -- "ok" delivers to the receiver; "down" has a server that refuses
    -- connections and retries without limit, so its oldest batch ages
    local url
    e, url = metrics.start_engine {
      docker_host = srv.host,
      outputs = string.format([[
        { type = "http", name = "ok", url = %q },
        { type = "http", name = "down", url = "http://127.0.0.1:1/x", backoff_initial = 0.05,
          backoff_max = 0.1 } ]], rx.url .. "/in"),
    }
    local m, delivered
    proc.wait_for(function()
      -- the receiver first: the metrics read after it count every request it has
      delivered = 0
      for _, r in ipairs(rx:requests()) do
        for _ in r.body:gmatch("[^\n]+") do delivered = delivered + 1 end
      end
      m = metrics.parse(select(2, metrics.get(url .. "/metrics")))
      return delivered == 30 and m:value("engine_output_batches_pending", { output = "ok" }) == 0
        and (m:value("engine_output_queue_age_seconds", { output = "down" }) or 0) > 0
    end, 30, "30 records at the receiver")
    local reqs = rx:requests()
    local bytes = 0
    for _, r in ipairs(reqs) do bytes = bytes + #r.body end
    -- every request the receiver took, its records and its bytes, counted once
    assert.equal(#reqs, m:value("engine_output_requests_total", { output = "ok" }))
    assert.equal(30, m:value("engine_output_records_total", { output = "ok" }))
    assert.equal(bytes, m:value("engine_output_request_bytes_total", { output = "ok" }))
    assert.equal(0, m:value("engine_output_queue_age_seconds", { output = "ok" }))
    -- the failing output counts each try, retries included, and its queue ages
    local down = m:value("engine_output_requests_total", { output = "down" })
    local age = m:value("engine_output_queue_age_seconds", { output = "down" })
    local down_records = m:value("engine_output_records_total", { output = "down" })
    local down_bytes = m:value("engine_output_request_bytes_total", { output = "down" })
    assert.is_true(down >= 1)
    assert.is_true(down_records >= 1)
    assert.is_true(down_bytes > down_records)
    local m2
    proc.wait_for(function()
      m2 = metrics.parse(select(2, metrics.get(url .. "/metrics")))
      return m2:value("engine_output_queue_age_seconds", { output = "down" }) >= age + 0.2
        and m2:value("engine_output_requests_total", { output = "down" }) > down
        and m2:value("engine_output_records_total", { output = "down" }) > down_records
        and m2:value("engine_output_request_bytes_total", { output = "down" }) > down_bytes
    end, 20, "the failing output's queue to age and retry")
    local p = cjson.decode((select(2, metrics.get(url .. "/pipeline"))))
    for _, o in ipairs(p.outputs) do
      assert.is_number(o.requests)
      assert.is_number(o.request_records)
      assert.is_number(o.request_bytes)
      assert.is_number(o.queue_age)
      if o.name == "ok" then
        assert.equal(#reqs, o.requests)
        assert.equal(30, o.request_records)
        assert.equal(bytes, o.request_bytes)
        assert.equal(0, o.queue_age)
      else
        assert.is_true(o.queue_age > age, "queue age " .. o.queue_age)
      end
    end
    assert.equal(0, e:stop())
  end)

  it("is not ready, and says why, while the Docker daemon is gone", function()
    srv = fake.start { "--containers", "1", "--rate", "50" }
    local url
    e, url = metrics.start_engine { docker_host = srv.host }
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 20, "/ready")
    srv:stop()
    local status, body
    proc.wait_for(function()
      status, body = metrics.get(url .. "/ready")
      return status == 503
    end, 20, "/ready to fail")
    assert.matches("^not ready: Docker: ", body)
    local m = metrics.parse(select(2, metrics.get(url .. "/metrics")))
    assert.equal(0, m:value("engine_docker_up"))
    assert.equal(200, (metrics.get(url .. "/health")))
    assert.equal(0, e:stop())
  end)

  it("stops cleanly with clients connected", function()
    srv = fake.start { "--containers", "1", "--rate", "50" }
    local url
    e, url = metrics.start_engine { docker_host = srv.host }
    local idle = metrics.open_idle(port_of(url))
    assert.equal(200, (metrics.get(url .. "/metrics")))
    assert.equal(0, e:stop("TERM", 15))
    unistd.close(idle)
    assert.is_nil(e:stderr_text():find("left open", 1, true))
  end)

  it("answers every /health probe while 200 idle connections are held open", function()
    srv = fake.start { "--containers", "1", "--rate", "10" }
    local url
    e, url = metrics.start_engine { docker_host = srv.host }
    local port = port_of(url)
    local held = {}
    for i = 1, 200 do held[i] = metrics.open_idle(port) end
    -- the holder reopens connections the server closed (up to 40 a round),
    -- as an abusive client would; a probe asks /health every 100 ms for 5 s
    local function now()
      local t = time.clock_gettime(time.CLOCK_MONOTONIC)
      return t.tv_sec + t.tv_nsec / 1e9
    end
    local answered, failed, t0 = 0, {}, now()
    for round = 1, 50 do
      local fds = {}
      for _, fd in ipairs(held) do fds[fd] = { events = { IN = true } } end
      poll.poll(fds, 0)
      local reopened = 0
      for i, fd in ipairs(held) do
        local r = fds[fd].revents
        if reopened < 40 and r and (r.IN or r.HUP) then
          unistd.close(fd)
          held[i] = metrics.open_idle(port)
          reopened = reopened + 1
        end
      end
      local answer = metrics.raw(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 5)
      if answer:match("^HTTP/1%.1 200 ") then answered = answered + 1
      else failed[#failed + 1] = answer end
      local wait = t0 + round * 0.1 - now()
      if wait > 0 then time.nanosleep { tv_sec = 0, tv_nsec = math.floor(wait * 1e9) } end
      if now() - t0 >= 5 then break end
    end
    for _, fd in ipairs(held) do unistd.close(fd) end
    assert.same({}, failed)
    assert.is_true(answered > 0)
    assert.equal(0, e:stop("TERM", 15))
  end)

  it("fails the run with a clear error when the address cannot be bound", function()
    srv = fake.start { "--containers", "1", "--rate", "10" }
    local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
    local port
    for _ = 1, 20 do
      port = metrics.random_port()
      if socket.bind(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }) then break end
      port = nil
    end
    assert.is_number(port)
    assert(socket.listen(fd, 4))
    e = engine.start { pipeline = metrics.pipeline { docker_host = srv.host, listen = "127.0.0.1:" .. port },
                       docker_host = srv.host }
    local code = e:wait(20)
    unistd.close(fd)
    assert.equal(1, code)
    assert.matches("metrics: cannot listen on 127%.0%.0%.1:" .. port .. ": address already in use",
                   e:stderr_text())
  end)
end)

-- Outside the TSan run: the stuck filter forks sleep(1) from the pipeline thread.
describe("the metrics endpoint with a stuck pipeline #sanitize", function()
  local srv, e
  after_each(function()
    if e then
      if e:running() then e:stop("TERM", 30) end
      e:cleanup()
    end
    if srv then srv:stop() end
    e, srv = nil, nil
  end)

  it("is not ready, and says why, while the pipeline finishes no batch; /health stays ok", function()
    srv = fake.start { "--containers", "1", "--rate", "100" }
    local url
    -- the first batch blocks the pipeline thread 10 s in a C call the
    -- runaway guard cannot stop (filter_timeout 1 s: /ready gives up at 6 s);
    -- the filters run on the pipeline thread (in their own process such a
    -- call is ended after filter_timeout: isolation_spec)
    e, url = metrics.start_engine {
      docker_host = srv.host,
      engine = "filter_timeout = 1, stop_timeout = 30, filter_isolation = 'thread',",
      filters = [[ { name = "stuck", on_error = "pass", process = (function()
        local stuck = false
        return function(b)
          if not stuck then stuck = true; os.execute("sleep 10") end
          return b
        end
      end)() } ]],
    }
    local status, body
    proc.wait_for(function()
      status, body = metrics.get(url .. "/ready")
      return status == 503
    end, 20, "/ready to fail")
    assert.matches("^not ready: the pipeline has not finished a batch for %d+ s %(filter_timeout plus 5 s%) " ..
                   "while %d+ batches wait\n$", body)
    local health, hbody = metrics.get(url .. "/health")
    assert.equal(200, health)
    assert.equal("ok\n", hbody)
    -- once the call returns, the pipeline catches up and is ready again
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 40, "/ready again")
    assert.equal(0, e:stop("TERM", 30))
  end)
end)

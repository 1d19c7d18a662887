-- The metrics endpoint (engine.metrics.listen), against the fake Docker API
-- server: each path's answer, the Prometheus text format, counters that
-- match what the containers logged, bounded label cardinality, readiness
-- when the daemon goes away, a clean stop with clients connected, and that
-- it is off unless asked for.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"
local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"

local LINES = 40

local function port_of(url) return tonumber(url:match(":(%d+)$")) end

-- Waits (bounded) until every container of the fake server finished and
-- the readers delivered want lines each; returns the parsed /metrics.
local function wait_lines(url, names, want)
  local m
  proc.wait_for(function()
    local status, body = metrics.get(url .. "/metrics")
    assert.equal(200, status)
    m = metrics.parse(body)
    for _, n in ipairs(names) do
      if m:value("engine_lines_read_total", { container = n }) ~= want then return false end
    end
    return m:value("engine_readers_live") == 0
  end, 30, "every container's lines in /metrics")
  return m
end

describe("the metrics endpoint #sanitize #tsan", function()
  local srv, e
  after_each(function()
    if e then
      if e:running() then e:stop("TERM", 15) end
      e:cleanup()
    end
    if srv then srv:stop() end
    e, srv = nil, nil
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
    local m = wait_lines(url, { "c0", "c1" }, LINES)
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
    assert.is_true(m:value("engine_filter_duration_seconds_sum", { filter = f }) >= 0)
    assert.equal(1, m:value("engine_docker_up"))
    assert.equal(1, m:value("engine_pipeline_loaded"))
    assert.is_true(m:value("engine_checkpoint_age_seconds") >= 0)
    assert.equal(0, m:value("engine_events_reconnects_total"))
    assert.equal(0, m:value("engine_reader_pauses_total"))
    assert.is_true(m:value("engine_bytes_in_flight") >= 0)
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
    local p = cjson.decode((select(2, metrics.get(url .. "/pipeline"))))
    assert.equal("http", p.outputs[1].type)
    assert.is_true(p.outputs[1].dead_letters > 0)
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

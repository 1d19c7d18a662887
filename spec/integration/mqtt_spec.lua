-- The mqtt output against a private mosquitto (Debian's, scripts/test/mosquitto.sh,
-- on loopback, persistence on) and a subscriber with a persistent session
-- (mosquitto_sub -c). QoS 1: a batch counts as delivered once the broker
-- acknowledged each of its messages, so the saved cursor never passes a line
-- the broker has not acknowledged (checked while the broker is frozen with
-- SIGSTOP) and a broker restart loses no line.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local base_port = 18830 + (require("posix.unistd").getpid() % 500) * 2

local function tmpdir()
  local _, d = proc.sh("mktemp -d /tmp/mqs.XXXXXX")
  return (d:gsub("%s+$", ""))
end

local function broker(dir, port, ...)
  local argv = { "sh", "scripts/test/mosquitto.sh", "start", dir, tostring(port) }
  for _, a in ipairs { ... } do argv[#argv + 1] = a end
  local ok, out = proc.sh(proc.join(argv), 60)
  assert(ok, out)
end

-- A subscriber with a persistent session on logs/#: each message a line
-- "topic payload" in path. Returns the process once a probe came through.
local function subscriber(port, path, extra)
  local argv = { "mosquitto_sub", "-h", "127.0.0.1", "-p", tostring(port), "-q", "1", "-c",
                 "-i", "spec-sub-" .. port, "-t", "logs/#", "-v" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local sub = proc.spawn { argv = argv, stdout = path }
  local pub = { "mosquitto_pub", "-h", "127.0.0.1", "-p", tostring(port), "-q", "1", "-t", "logs/probe",
                "-m", "probe" }
  for _, a in ipairs(extra or {}) do pub[#pub + 1] = a end
  proc.wait_for(function()
    proc.sh(proc.join(pub), 10)
    return (proc.read(path) or ""):find("logs/probe probe", 1, true) ~= nil
  end, 20, "the subscriber to get a probe")
  return sub
end

-- The records the subscriber got: { topic =, r = decoded JSON }.
local function received(path)
  local out = {}
  for line in (proc.read(path) or ""):gmatch("([^\n]*)\n") do
    local topic, payload = line:match("^(%S+) (.*)$")
    if topic and topic ~= "logs/probe" then
      out[#out + 1] = { topic = topic, r = cjson.decode(payload) }
    end
  end
  return out
end

-- Distinct lines among the records.
local function distinct(recs)
  local seen, n = {}, 0
  for _, m in ipairs(recs) do
    if not seen[m.r.line] then seen[m.r.line], n = true, n + 1 end
  end
  return n, seen
end

-- RFC 3339 UTC text of a cursor's nanosecond count (digits): comparable as
-- text with a record's time.
local function ns_text(ns)
  local secs = tonumber(ns:sub(1, -10))
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. "." .. ns:sub(-9) .. "Z"
end

describe("the mqtt output #sanitize", function()
  local dir, srv, e, sub

  before_each(function() dir = tmpdir() end)
  after_each(function()
    local de, dsrv, dsub = e, srv, sub
    e, srv, sub = nil, nil, nil
    proc.each(function() engine.release(de, dsrv) end,
              function() if dsub then dsub:signal("TERM"); dsub:wait(5) end end,
              function() proc.sh(proc.join { "sh", "scripts/test/mosquitto.sh", "stop", dir .. "/mq" }, 30) end,
              function() proc.sh("rm -rf " .. proc.quote(dir)) end)
  end)

  it("delivers every line of 3 containers through a broker restart, no cursor past an unacknowledged line",
     function()
    local port = base_port
    broker(dir .. "/mq", port)
    sub = subscriber(port, dir .. "/sub.out")
    local N = 600
    srv = fake.start { "--containers", "3", "--rate", "150", "--lines", tostring(N), "--linger" }
    local state = dir .. "/state"
    local mport = metrics.random_port()
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 20 },
  outputs = { { type = "mqtt", host = "127.0.0.1", port = %d, topic = "logs/{name}/{stream}",
                record_id = true, max_inflight = 1000, keepalive = 5,
                backoff_initial = 0.05, backoff_max = 0.3 } },
  engine = { checkpoint_interval = 0.1, backoff_initial = 0.05, backoff_max = 0.3,
             metrics = { listen = "127.0.0.1:%d" } },
}]], srv.host, port, mport), state_dir = state }
    proc.wait_for(function() return #received(dir .. "/sub.out") >= 300 end, 30, "300 messages")
    -- the broker stops answering (SIGSTOP): the engine writes on into the
    -- socket, but no PUBACK comes. What the broker acknowledged before, it
    -- had forwarded to the subscriber; the saved cursor of each container
    -- passes none of that container's lines the subscriber lacks
    local pid = (assert(proc.read(dir .. "/mq/mosquitto.pid")):gsub("%s+$", ""))
    assert(proc.sh("kill -STOP " .. pid))
    local ok, err = pcall(function()
      proc.sleep(1.5) -- the subscriber reads what it was sent; cursors are saved
      local got = received(dir .. "/sub.out")
      local _, seen = distinct(got)
      local cp = cjson.decode((assert(proc.read(state .. "/cursors.json"))))
      local names = {}
      for _, m in ipairs(got) do names[m.r.container] = m.r.name end
      local checked = 0
      for id, c in pairs(cp.containers) do
        local name = assert(names[id], "a cursor for a container no message came from")
        local cursor = ns_text(c.newest)
        for _, l in ipairs(srv:logs(name)) do
          if l.time <= cursor then
            assert.is_true(seen[l.text] ~= nil, "the cursor of " .. name .. " (" .. cursor ..
                           ") passed " .. l.text .. " (" .. l.time .. "), which the broker had not acknowledged")
            checked = checked + 1
          end
        end
      end
      assert.is_true(checked > 0, "no line under a cursor")
      assert.is_true(checked < 3 * N, "every line under a cursor while the broker acknowledged nothing")
    end)
    assert(proc.sh("kill -CONT " .. pid))
    if not ok then error(err, 0) end
    -- then it restarts (its sessions and queued messages persisted)
    assert(proc.sh(proc.join { "sh", "scripts/test/mosquitto.sh", "halt", dir .. "/mq" }, 30))
    proc.wait_for(function() return e:stderr_text():find("retrying with backoff", 1, true) end, 20,
                  "the engine to see the broker go")
    proc.sleep(0.5)
    assert(proc.sh(proc.join { "sh", "scripts/test/mosquitto.sh", "restart", dir .. "/mq" }, 30))
    proc.wait_for(function() return distinct(received(dir .. "/sub.out")) >= 3 * N end, 60,
                  "every line at the subscriber")
    local m
    proc.wait_for(function()
      m = metrics.parse(select(2, metrics.get("http://127.0.0.1:" .. mport .. "/metrics")))
      return m:value("engine_output_batches_pending", { output = "mqtt" }) == 0
    end, 20, "every batch delivered")
    assert.equal(0, m:value("engine_output_acks_pending", { output = "mqtt" }))
    assert.is_true(m:value("engine_output_reconnects_total", { output = "mqtt" }) >= 1)
    assert.is_true(m:value("engine_output_messages_published_total", { output = "mqtt" }) >= 3 * N)
    assert.is_true(m:value("engine_output_messages_acked_total", { output = "mqtt" }) >= 3 * N)
    assert.is_true(m:value("engine_output_batches_failed_total", { output = "mqtt" }) >= 1)
    -- engine top shows the same counts (one plain line per refresh when not on a terminal)
    local ok, top = proc.sh(proc.join { engine.bin(), "top", "http://127.0.0.1:" .. mport, "-n", "1" }
                            .. " | cat", 30)
    assert.is_true(ok, top)
    local pub, acked, pending, rec = top:match(" output mqtt published=(%d+) acked=(%d+) acks_pending=(%d+) "
                                               .. "reconnects=(%d+)")
    assert.is_truthy(pub, top)
    assert.is_true(tonumber(pub) >= 3 * N and tonumber(acked) >= 3 * N)
    assert.equal(0, tonumber(pending))
    assert.is_true(tonumber(rec) >= 1)
    assert.equal(0, e:stop("TERM"))
    local n, all = distinct(received(dir .. "/sub.out"))
    assert.equal(3 * N, n)
    for c = 0, 2 do
      for i = 1, N do assert.is_true(all["c" .. c .. " " .. i] ~= nil, "c" .. c .. " " .. i) end
    end
    for _, m in ipairs(received(dir .. "/sub.out")) do
      assert.equal("logs/" .. m.r.name .. "/" .. m.r.stream, m.topic)
      assert.matches("^%x+$", m.r.id)
      assert.equal(32, #m.r.id)
    end
    local _, connects = e:stderr_text():gsub("connected to 127%.0%.0%.1", "")
    assert.is_true(connects >= 2, "connected once only")
  end)
end)

describe("the mqtt output: credentials, topics, TLS, settings #sanitize", function()
  local dir, srv, e, sub

  before_each(function() dir = tmpdir() end)
  after_each(function()
    local de, dsrv, dsub = e, srv, sub
    e, srv, sub = nil, nil, nil
    proc.each(function() engine.release(de, dsrv) end,
              function() if dsub then dsub:signal("TERM"); dsub:wait(5) end end,
              function() proc.sh(proc.join { "sh", "scripts/test/mosquitto.sh", "stop", dir .. "/mq" }, 30) end,
              function() proc.sh("rm -rf " .. proc.quote(dir)) end)
  end)

  it("keeps failing with a clear error on a wrong password, loses nothing, and delivers once it is right",
     function()
    local port = base_port + 1
    broker(dir .. "/mq", port, "auth")
    local pwfile = dir .. "/pw"
    local f = assert(io.open(pwfile, "w"))
    f:write("wrong\n")
    f:close()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "50", "--linger" }
    local function pipeline(extra)
      return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "mqtt", host = "127.0.0.1", port = %d, topic = "logs/{name}", username = "engine",
                %s, backoff_initial = 0.05, backoff_max = 0.2 } },
}]], srv.host, port, extra)
    end
    local state = dir .. "/state"
    e = engine.start { pipeline = pipeline(string.format("password_file = %q", pwfile)), state_dir = state }
    proc.wait_for(function()
      return e:stderr_text():find("refused the connection", 1, true)
    end, 20, "the refusal logged")
    proc.sleep(1.5) -- many retries
    local log = e:stderr_text()
    local _, n = log:gsub("Connection Refused: not authorised", "")
    assert.equal(1, n, log)
    assert.is_nil(log:find("secret-", 1, true))
    assert.equal(0, e:stop("TERM"))
    -- the right password, from the environment: the same lines, all of them
    sub = subscriber(port, dir .. "/sub.out", { "-u", "engine", "-P", (proc.read(dir .. "/mq/password"):gsub("%s+$", "")) })
    e = engine.start { pipeline = pipeline('password_env = "MQTT_PASSWORD"'), state_dir = state,
                       env = { MQTT_PASSWORD = (proc.read(dir .. "/mq/password"):gsub("%s+$", "")) } }
    proc.wait_for(function() return distinct(received(dir .. "/sub.out")) >= 50 end, 30, "50 lines")
    assert.equal(0, e:stop("TERM"))
    assert.is_nil(e:stderr_text():find("secret-", 1, true))
  end)

  it("sends a record whose topic field is missing to the dead-letter file with the reason", function()
    local port = base_port
    broker(dir .. "/mq", port)
    sub = subscriber(port, dir .. "/sub.out")
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "40", "--linger" }
    local dl = dir .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch)
    for _, r in ipairs(batch) do
      local seq = tonumber(r.line:match("^c0 (%%d+)"))
      if seq and seq %% 2 == 0 then r.app = "a/b+#" end
    end
  end },
  outputs = { { type = "mqtt", host = "127.0.0.1", port = %d, topic = "logs/{app}/x", dead_letter = %q } },
}]], srv.host, port, dl) }
    proc.wait_for(function() return #received(dir .. "/sub.out") >= 20 end, 30, "20 messages")
    local dead
    proc.wait_for(function()
      dead = {}
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do dead[#dead + 1] = cjson.decode(line) end
      return #dead >= 20
    end, 30, "20 dead letters")
    assert.equal(0, e:stop("TERM"))
    for _, d in ipairs(dead) do
      assert.matches('names the field "app", which the record lacks', d.reason, 1, true)
      local seq = tonumber(cjson.decode(d.body).line:match("^c0 (%d+)"))
      assert.equal(1, seq % 2)
    end
    for _, m in ipairs(received(dir .. "/sub.out")) do
      assert.equal("logs/a_b__/x", m.topic)
      assert.equal(0, tonumber(m.r.line:match("^c0 (%d+)")) % 2)
    end
  end)

  it("delivers over TLS to a broker whose certificate the given CA signed", function()
    local port = base_port + 1
    broker(dir .. "/mq", port, "", "tls")
    local ca = dir .. "/mq/ca.crt"
    sub = subscriber(port, dir .. "/sub.out", { "--cafile", ca })
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "40", "--linger" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "mqtt", host = "127.0.0.1", port = %d, topic = "logs/{name}", tls_ca_file = %q } },
}]], srv.host, port, ca) }
    proc.wait_for(function() return distinct(received(dir .. "/sub.out")) >= 40 end, 30, "40 lines over TLS")
    assert.equal(0, e:stop("TERM"))
  end)

  it("engine check: names each wrong setting", function()
    local function check(output, env)
      return engine.run_once { pipeline = string.format([[
return { docker = { host = "unix:///nonexistent.sock" }, outputs = { %s } }]], output), env = env }
    end
    local cases = {
      { '{ type = "mqtt", topic = "logs" }', "outputs[1].host must be a non-empty string" },
      { '{ type = "mqtt", host = "tcp://b:1883", topic = "logs" }', "outputs[1].host must be a host name" },
      { '{ type = "mqtt", host = "b", topic = "logs/+/x" }', "must not hold the wildcards + or #" },
      { '{ type = "mqtt", host = "b", topic = "logs/{na-me}" }', "names the field {na-me}" },
      { '{ type = "mqtt", host = "b", topic = "logs/{name" }', "has an unmatched { or }" },
      { '{ type = "mqtt", host = "b", topic = "logs", port = 70000 }', "outputs[1].port must be a whole number" },
      { '{ type = "mqtt", host = "b", topic = "logs", max_inflight = 0 }', "outputs[1].max_inflight" },
      { '{ type = "mqtt", host = "b", topic = "logs", username = "u", password_env = "NO_SUCH_VAR_MQ" }',
        "names the environment variable NO_SUCH_VAR_MQ, which is not set" },
      { '{ type = "mqtt", host = "b", topic = "logs", password_file = "/nonexistent/pw", username = "u" }',
        "password_file names \"/nonexistent/pw\", which cannot be read" },
      { '{ type = "mqtt", host = "b", topic = "logs", password_env = "HOME" }',
        "outputs[1].username must be set with a password" },
      { '{ type = "mqtt", host = "b", topic = "logs", url = "http://x" }', "outputs[1].url" },
      { '{ type = "mqtt", host = "b", topic = "logs", tls_ca_file = "/nonexistent/ca.pem" }',
        "tls_ca_file names \"/nonexistent/ca.pem\", which cannot be read" },
    }
    for _, c in ipairs(cases) do
      local code, out, err = check(c[1])
      assert.is_not.equal(0, code, c[1])
      assert.matches(c[2], out .. err, 1, true)
    end
    local code, out, err = check('{ type = "mqtt", host = "broker.example", topic = "logs/{name}/{stream}" }')
    assert.equal(0, code, out .. err)
  end)
end)

-- The nats output against real nats-servers (Debian's, private, on
-- loopback, JetStream stores under temp folders, scripts/test/nats.sh): every
-- line stored once across SIGKILLed engines (the Nats-Msg-Id header lets
-- the stream drop what a restarted engine sends again), wrong credentials
-- (a clear error, nothing delivered, nothing lost), and a record whose
-- subject cannot be made (the dead-letter file, with the reason).
-- Messages are read back with build/natsjs (spec/support/natsjs.c) and
-- counted with the server's monitoring endpoint.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local tools = os.getenv("ENGINE_TOOLS") or "build"
local base = 20000 + (require("posix.unistd").getpid() % 2000) * 4

local function sh(argv, t)
  local ok, out = proc.sh(proc.join(argv), t or 30)
  assert(ok, out)
  return out
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The stream's message count, as the server's monitoring endpoint says.
local function jsz_count(mport, stream)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "5",
                                       string.format("http://127.0.0.1:%d/jsz?streams=1", mport) })
  if not ok then return nil end
  local doc = cjson.decode(out)
  for _, acc in ipairs(doc.account_details or {}) do
    for _, s in ipairs(acc.stream_detail or {}) do
      if s.name == stream then return s.state.messages end
    end
  end
  return 0
end

-- Every message of the stream: { subject, id, record }.
local function dump(url, stream)
  local out = {}
  for line in sh({ tools .. "/natsjs", url, "dump", stream }):gmatch("[^\n]+") do
    local _, subject, id, data = line:match("^(%d+)\t([^\t]*)\t([^\t]*)\t(.*)$")
    out[#out + 1] = { subject = subject, id = id, record = cjson.decode(data) }
  end
  return out
end

-- Counts of "cN SEQ" lines per container.
local function seq_counts(msgs)
  local counts = {}
  for _, m in ipairs(msgs) do
    local c, seq = m.record.line:match("^(c%d+) (%d+)")
    if c then
      counts[c] = counts[c] or {}
      counts[c][tonumber(seq)] = (counts[c][tonumber(seq)] or 0) + 1
    end
  end
  return counts
end

local function assert_each_once(counts, containers, n)
  for i = 0, containers - 1 do
    local c = "c" .. i
    for seq = 1, n do
      local got = (counts[c] or {})[seq] or 0
      assert.equal(1, got, string.format("%s line %d stored %d times", c, seq, got))
    end
  end
end

describe("the nats output", function()
  local tmp, srv, e
  local servers = {}

  local function start_nats(name, port, mport, extra)
    local dir = tmp .. "/" .. name
    local argv = { "sh", "scripts/test/nats.sh", "start", dir, tostring(port), tostring(mport) }
    if extra then
      write(tmp .. "/" .. name .. ".extra", extra)
      argv[#argv + 1] = tmp .. "/" .. name .. ".extra"
    end
    local url = sh(argv):gsub("%s+$", "")
    servers[#servers + 1] = dir
    return url
  end

  before_each(function()
    tmp = select(2, proc.sh("mktemp -d /tmp/nts.XXXXXX")):gsub("%s+$", "")
  end)
  after_each(function()
    local de, dsrv, list = e, srv, servers
    e, srv, servers = nil, nil, {}
    local steps = { function() engine.release(de, dsrv) end }
    for _, d in ipairs(list) do
      steps[#steps + 1] = function() proc.sh(proc.join { "sh", "scripts/test/nats.sh", "stop", d }, 30) end
    end
    steps[#steps + 1] = function() proc.sh("rm -rf " .. proc.quote(tmp)) end
    proc.each(unpack(steps))
  end)

  it("stores every line of three containers once across two SIGKILLed engines #sanitize", function()
    local N = 600
    local url = start_nats("js", base, base + 1)
    sh { tools .. "/natsjs", url, "add", "LOGS", "logs.>" }
    srv = fake.start { "--containers", "3", "--rate", "50", "--lines", tostring(N), "--linger" }
    local state = tmp .. "/state"
    local listen = "127.0.0.1:" .. metrics.random_port()
    local p = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 20 },
  outputs = { { type = "nats", url = %q, subject = "logs.{name}.{stream}", stream = "LOGS",
                dead_letter = %q, timeout = 5 } },
  engine = { checkpoint_interval = 1, backoff_initial = 0.05, backoff_max = 0.5,
             metrics = { listen = %q } },
}]], srv.host, url, tmp .. "/dead.jsonl", listen)
    local function stored() return jsz_count(base + 1, "LOGS") or 0 end
    e = engine.start { pipeline = p, state_dir = state }
    for _ = 1, 2 do
      local at = stored()
      proc.wait_for(function() return stored() >= at + 300 end, 60, "300 more messages stored")
      e:signal("KILL")
      e:wait(10)
      e:cleanup()
      e = engine.start { pipeline = p, state_dir = state }
    end
    proc.wait_for(function() return stored() >= 3 * N end, 90, "every line stored")
    proc.sleep(1) -- a line stored twice would show up by now
    local m = metrics.parse(select(2, metrics.get("http://" .. listen .. "/metrics")))
    local dups = m:value("engine_output_messages_duplicate_total", { output = "nats" })
    local acked = m:value("engine_output_messages_acked_total", { output = "nats" })
    assert.equal(0, m:value("engine_output_acks_pending", { output = "nats" }))
    assert.equal(0, e:stop("TERM"))
    print(string.format("nats: %d lines stored once; the last engine had %d acknowledged, %d of them "
                        .. "duplicates the stream dropped", 3 * N, acked, dups))
    assert.is_true(dups > 0, "the SIGKILL made the engine publish lines again")
    assert.equal(3 * N, stored())
    local msgs = dump(url, "LOGS")
    assert.equal(3 * N, #msgs)
    assert_each_once(seq_counts(msgs), 3, N)
    for _, m in ipairs(msgs) do
      assert.equal("logs." .. m.record.name .. "." .. m.record.stream, m.subject)
      assert.matches("^%x+$", m.id)
      assert.equal(32, #m.id)
    end
    assert.equal("", proc.read(tmp .. "/dead.jsonl") or "")
  end)

  it("forwards an appliance's stream to a central one that was down while 150 lines were stored, every line once (examples/nats-edge)", function()
    local N = 300
    local ports = { ["4222"] = base + 4, ["4223"] = base + 5, ["7422"] = base + 6 }
    local function conf(name)
      local text = proc.read("examples/nats-edge/" .. name .. ".conf")
      text = text:gsub("127%.0%.0%.1:(%d+)", function(p) return "127.0.0.1:" .. assert(ports[p]) end)
      text = text:gsub("/var/lib/(nats%-%a+)", tmp .. "/%1")
      write(tmp .. "/" .. name .. ".conf", text)
      return tmp .. "/" .. name .. ".conf"
    end
    local function start(name, port)
      local dir = tmp .. "/" .. name
      local url = sh({ "sh", "scripts/test/nats.sh", "start", dir, "--conf", conf(name), tostring(port) }):gsub("%s+$", "")
      servers[#servers + 1] = dir
      return url, dir
    end
    local central, cdir = start("central", base + 5)
    local edge = start("edge", base + 4)
    local function count(url, stream)
      local ok, out = proc.sh(proc.join { tools .. "/natsjs", url, "count", stream }, 10)
      return ok and tonumber(out:match("%d+")) or -1
    end
    -- the leaf connection is up once the edge's API answers through it
    sh { tools .. "/natsjs", edge, "add", "LOGS", "logs.>" }
    proc.wait_for(function()
      return proc.sh(proc.join { tools .. "/natsjs", central, "source", "CENTRAL", "LOGS", "$JS.edge.API" }, 10)
    end, 30, "the central stream created")
    srv = fake.start { "--containers", "2", "--rate", "20", "--lines", tostring(N), "--linger" }
    local p = proc.read("examples/nats-edge/pipeline.lua")
    p = p:gsub("127%.0%.0%.1:4222", "127.0.0.1:" .. (base + 4)):gsub("/var/lib/engine", tmp .. "/engine")
    sh { "mkdir", "-p", tmp .. "/engine" }
    e = engine.start { pipeline = p, docker_host = srv.host }
    proc.wait_for(function() return count(central, "CENTRAL") >= 40 end, 30, "40 lines in the central stream")
    sh { "sh", "scripts/test/nats.sh", "kill", cdir }
    local at = count(edge, "LOGS")
    proc.wait_for(function() return count(edge, "LOGS") >= at + 150 end, 10,
                  "the appliance to store 150 lines while central is down")
    start("central", base + 5)
    proc.wait_for(function() return count(central, "CENTRAL") >= 2 * N end, 60, "every line in the central stream")
    proc.sleep(1)
    assert.equal(0, e:stop("TERM"))
    assert.equal(2 * N, count(edge, "LOGS"))
    assert.equal(2 * N, count(central, "CENTRAL"))
    assert_each_once(seq_counts(dump(central, "CENTRAL")), 2, N)
  end)

  it("loses and repeats nothing when a node of a three-node JetStream cluster is killed (R3 stream) #tsan", function()
    local N = 400
    local urls, dirs = {}, {}
    local listen = "127.0.0.1:" .. metrics.random_port()
    for i = 1, 3 do
      local routes = {}
      for j = 1, 3 do routes[j] = string.format("nats-route://127.0.0.1:%d", base + 10 + j) end
      local url = start_nats("n" .. i, base + 6 + i, base + 13 + i, string.format([[
server_name: n%d
cluster { name: logs, listen: 127.0.0.1:%d, routes: [ %s ] }
]], i, base + 10 + i, table.concat(routes, ", ")))
      urls[i], dirs[i] = url, tmp .. "/n" .. i
    end
    -- JetStream answers once the cluster has a meta leader
    proc.wait_for(function()
      return proc.sh(proc.join { tools .. "/natsjs", urls[1], "add", "LOGS", "logs.>", "0", "3" }, 10)
    end, 60, "the R3 stream created")
    local function count()
      for i = 2, 3 do
        local ok, out = proc.sh(proc.join { tools .. "/natsjs", urls[i], "count", "LOGS" }, 10)
        if ok then return tonumber(out:match("%d+")) end
      end
      return -1
    end
    srv = fake.start { "--containers", "2", "--rate", "50", "--lines", tostring(N), "--linger" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 20 },
  outputs = { { type = "nats", url = { %q, %q, %q }, subject = "logs.{name}", stream = "LOGS",
                timeout = 2 } },
  engine = { state_dir = false, backoff_initial = 0.05, backoff_max = 0.5, metrics = { listen = %q } },
}]], srv.host, urls[1], urls[2], urls[3], listen) }
    proc.wait_for(function() return count() >= 200 end, 30, "200 lines stored")
    -- the node the engine is connected to (its monitoring endpoint's /connz)
    local victim
    for i = 1, 3 do
      local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "5",
                                           string.format("http://127.0.0.1:%d/connz", base + 13 + i) })
      for _, c in ipairs(ok and cjson.decode(out).connections or {}) do
        if c.name == "engine" then victim = i end
      end
    end
    assert.is_not_nil(victim, "the engine's connection found")
    local at = count()
    sh { "sh", "scripts/test/nats.sh", "kill", dirs[victim] }
    local function count_other()
      for i = 1, 3 do
        if i ~= victim then
          local ok, out = proc.sh(proc.join { tools .. "/natsjs", urls[i], "count", "LOGS" }, 10)
          if ok then return tonumber(out:match("%d+")) end
        end
      end
      return -1
    end
    count = count_other
    assert.is_true(at < 2 * N, "killed while the engine publishes")
    proc.wait_for(function() return count() >= 2 * N end, 90, "every line stored")
    proc.sleep(1)
    local m = metrics.parse(select(2, metrics.get("http://" .. listen .. "/metrics")))
    assert.is_true(m:value("engine_output_reconnects_total", { output = "nats" }) >= 1)
    assert.equal(0, e:stop("TERM"))
    assert.equal(2 * N, count())
    local msgs = dump(urls[victim == 1 and 2 or 1], "LOGS")
    assert.equal(2 * N, #msgs)
    assert_each_once(seq_counts(msgs), 2, N)
  end)

  it("logs wrong credentials once, delivers nothing, and loses nothing once they are right #sanitize", function()
    local N = 50
    local url = start_nats("auth", base + 2, base + 3, [[
authorization { user: engine, password: right }
]])
    local conn = url:gsub("^nats://", "nats://engine:right@")
    sh { tools .. "/natsjs", conn, "add", "LOGS", "logs.>" }
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", tostring(N), "--linger" }
    local state = tmp .. "/state"
    local p = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "nats", url = %q, subject = "logs.x", user = "engine",
                password_env = "NATS_TEST_PASSWORD", timeout = 2 } },
  engine = { checkpoint_interval = 0.2, backoff_initial = 0.05, backoff_max = 0.3, stop_timeout = 1 },
}]], srv.host, url)
    e = engine.start { pipeline = p, state_dir = state, env = { NATS_TEST_PASSWORD = "wrong" } }
    proc.wait_for(function() return e:stderr_text():find("Authorization Violation", 1, true) end, 30,
                  "the authorization error in the log")
    proc.sleep(2) -- the output keeps failing with backoff meanwhile
    local log = e:stderr_text()
    local _, times = log:gsub("Authorization Violation", "")
    assert.equal(1, times, log)
    assert.is_nil(log:find("wrong", 1, true), "the password is never logged")
    assert.equal(0, e:stop("TERM"))
    e:cleanup()
    assert.equal(0, tonumber((sh { tools .. "/natsjs", conn, "count", "LOGS" }):match("%d+")))
    -- the cursor never passed an undelivered line: the right password gets them all
    e = engine.start { pipeline = p, state_dir = state, env = { NATS_TEST_PASSWORD = "right" } }
    proc.wait_for(function()
      return tonumber((sh { tools .. "/natsjs", conn, "count", "LOGS" }):match("%d+")) >= N
    end, 30, "every line stored")
    proc.sleep(0.5)
    assert.equal(0, e:stop("TERM"))
    local msgs = dump(conn, "LOGS")
    assert.equal(N, #msgs)
    assert_each_once(seq_counts(msgs), 1, N)
  end)

  it("retries with backoff, dead-letters nothing, while the stream is full (discard=new)", function()
    local url = start_nats("full", base + 2, base + 3)
    sh { tools .. "/natsjs", url, "add", "LOGS", "logs.>", "10" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "30", "--stdout-only" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "nats", url = %q, subject = "logs.{name}", dead_letter = %q } },
  engine = { state_dir = false, backoff_initial = 0.05, backoff_max = 0.2, stop_timeout = 1 },
}]], srv.host, url, dl) }
    proc.wait_for(function() return e:stderr_text():find("maximum messages exceeded", 1, true) end, 30,
                  "the stream's refusal in the log")
    proc.sleep(1) -- several retries by now
    local log = e:stderr_text()
    local _, times = log:gsub("maximum messages exceeded", "")
    assert.equal(1, times, log) -- logged once per cause
    assert.equal(10, jsz_count(base + 3, "LOGS"))
    assert.equal("", proc.read(dl) or "")
    assert.equal(0, e:stop("TERM"))
  end)

  it("dead-letters a record larger than the stream takes (max_msg_size) and delivers the rest", function()
    local url = start_nats("big", base + 2, base + 3)
    sh { tools .. "/natsjs", url, "add", "LOGS", "logs.>", "0", "1", "1000" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "20", "--stdout-only" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch)
    for _, r in ipairs(batch) do
      if tonumber(r.line:match("^c0 (%%d+)")) %% 5 == 0 then r.pad = string.rep("x", 2000) end
    end
  end },
  outputs = { { type = "nats", url = %q, subject = "logs.{name}", dead_letter = %q } },
  engine = { state_dir = false },
}]], srv.host, url, dl) }
    local function dead()
      local out = {}
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
      return out
    end
    proc.wait_for(function() return #dead() >= 4 and (jsz_count(base + 3, "LOGS") or 0) >= 16 end, 30,
                  "16 stored, 4 dead-lettered")
    assert.equal(0, e:stop("TERM"))
    local msgs = dump(url, "LOGS")
    assert.equal(16, #msgs)
    for _, m in ipairs(msgs) do assert.is_nil(m.record.pad) end
    for _, d in ipairs(dead()) do
      assert.matches("^JetStream refused a message: message size exceeds maximum allowed %(error 10054%)$", d.reason)
      assert.equal(0, tonumber(cjson.decode(d.body).line:match("^c0 (%d+)")) % 5)
    end
  end)

  it("sends a record whose subject field is missing to the dead-letter file with the reason #sanitize", function()
    local url = start_nats("dl", base + 2, base + 3)
    sh { tools .. "/natsjs", url, "add", "LOGS", "app.>" }
    srv = fake.start { "--containers", "1", "--rate", "0", "--preload", "20", "--stdout-only" }
    local dl = tmp .. "/dead.jsonl"
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch)
    for _, r in ipairs(batch) do
      local seq = tonumber(r.line:match("^c0 (%%d+)"))
      if seq %% 2 == 0 then r.app = "!web app." .. seq end
    end
  end },
  outputs = { { type = "nats", url = %q, subject = "app.{app}", stream = "LOGS", dead_letter = %q } },
  engine = { state_dir = false },
}]], srv.host, url, dl) }
    local function dead()
      local out = {}
      for line in (proc.read(dl) or ""):gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
      return out
    end
    proc.wait_for(function() return #dead() >= 10 and (jsz_count(base + 3, "LOGS") or 0) >= 10 end, 30,
                  "10 stored, 10 dead-lettered")
    assert.equal(0, e:stop("TERM"))
    local msgs = dump(url, "LOGS")
    assert.equal(10, #msgs)
    for _, m in ipairs(msgs) do
      local seq = tonumber(m.record.line:match("^c0 (%d+)"))
      assert.equal(0, seq % 2)
      assert.equal("app.!web_app_" .. seq, m.subject) -- a value is one token: space and dot become _
    end
    local d = dead()
    assert.equal(10, #d)
    for _, x in ipairs(d) do
      assert.equal("the subject template's field app is missing in the record", x.reason)
      local rec = cjson.decode(x.body)
      assert.equal(1, tonumber(rec.line:match("^c0 (%d+)")) % 2)
    end
  end)
end)

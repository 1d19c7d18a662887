-- One engine following two Docker daemons (docker given as a list): the run's
-- private daemon (ENGINE_TEST_DOCKER_HOST, "edge-a") and a second private
-- daemon this spec starts ("edge-b", scripts/test/dockerd.sh). Records carry
-- their daemon's name as `host`; the second daemon is killed for 10 s while
-- both have containers logging: the first daemon's lines keep arriving,
-- /ready names the daemon that is down, and once it is back every line each
-- container wrote (`docker logs`, the daemon's own account) arrives exactly
-- once; the cursor file keys containers by daemon name and id.
local cjson = require "cjson"
local dockerenv = require "spec.support.dockerenv"
local engine = require "spec.support.engine"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local env_a = dockerenv.get()

local function pipeline(host_a, host_b, prefix, port)
  return string.format([[
return {
  docker = {
    read_delay = 0.05,
    { name = "edge-a", host = %q },
    { name = "edge-b", host = %q },
  },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
  engine = { backoff_initial = 0.1, backoff_max = 1, reconcile_interval = 2,
             metrics = { listen = "127.0.0.1:%d" } },
}]], host_a, host_b, prefix .. "*", port)
end

local function lines_of(recs, name)
  local out = {}
  for _, r in ipairs(recs) do
    if r.name == name and r.stream == "stdout" then out[#out + 1] = r.line end
  end
  return out
end

-- The stdout lines of a container as its daemon has them.
local function docker_lines(env, name)
  local ok, out = env:docker({ "logs", name }, 30)
  assert(ok, out)
  local lines = {}
  for l in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  return lines
end

-- Waits until the engine delivered as many lines of name as its daemon
-- holds, then checks they are the same lines, in the same order (so each
-- once).
local function assert_same_as_daemon(e, env, name)
  local want
  proc.wait_for(function()
    want = docker_lines(env, name)
    return #lines_of(e:json_records(), name) >= #want
  end, 60, "the engine to catch up with " .. name)
  assert.is_true(#want > 0, name .. " wrote nothing")
  assert.same(want, lines_of(e:json_records(), name))
  return #want
end

local function counter(tag, n)
  return string.format('i=1; while [ %s ]; do echo "%s $i"; sleep 0.03; i=$((i+1)); done',
                       n and ("$i -le " .. n) or "true", tag)
end

describe("an engine following two daemons #sanitize", function()
  local prefix, e, dir_b, env_b, state
  before_each(function()
    prefix = dockerenv.unique("multi")
    dir_b = "/tmp/dkb" .. require("posix.unistd").getpid()
    local ok, out = proc.sh("sh scripts/test/dockerd.sh start " .. proc.quote(dir_b) .. " 2>&1", 120)
    assert(ok, out)
    env_b = setmetatable({ host = out:match("(unix://%S+)%s*$") }, getmetatable(env_a))
    local _, d = proc.sh("mktemp -d /tmp/state.XXXXXX")
    state = d:gsub("%s+$", "")
  end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env_a:cleanup(prefix) end,
              function() proc.sh("sh scripts/test/dockerd.sh stop " .. proc.quote(dir_b), 120) end,
              function() proc.sh("rm -rf " .. proc.quote(state)) end)
  end)

  it("tags records with their daemon, and one daemon down for 10 s loses nothing of either", function()
    local port = metrics.random_port()
    local url = "http://127.0.0.1:" .. port
    e = engine.start { pipeline = pipeline(env_a.host, env_b.host, prefix, port), state_dir = state }
    proc.wait_for(function()
      local log = e:stderr_text()
      return log:find("connected to the Docker daemon edge-a", 1, true) and
             log:find("connected to the Docker daemon edge-b", 1, true)
    end, 20, "both daemons connected")
    local ma, mb, mb2 = prefix .. "-a", prefix .. "-b", prefix .. "-b2"
    local id_a = env_a:run { name = ma, cmd = counter("a", 600) }
    local id_b = env_b:run { name = mb, cmd = counter("b") }
    e:wait_records(function(recs) return #lines_of(recs, ma) >= 30 and #lines_of(recs, mb) >= 30 end, 30)
    for _, r in ipairs(e:json_records()) do
      if r.name == ma then assert.equal("edge-a", r.host) end
      if r.name == mb then assert.equal("edge-b", r.host) end
    end
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 20, "/ready")
    local _, readers = metrics.get(url .. "/readers")
    local hosts = {}
    for _, rd in ipairs(cjson.decode(readers)) do hosts[rd.name] = rd.host end
    assert.same({ [ma] = "edge-a", [mb] = "edge-b" }, hosts)

    -- edge-b down (dockerd, containerd and its containers SIGKILLed) for 10 s
    local ok, out = proc.sh("sh scripts/test/dockerd.sh kill " .. proc.quote(dir_b) .. " 2>&1", 60)
    assert(ok, out)
    local down_at = proc.now()
    local a_at_kill = #lines_of(e:json_records(), ma)
    local body
    proc.wait_for(function()
      local status
      status, body = metrics.get(url .. "/ready")
      return status == 503
    end, 10, "/ready to fail")
    assert.matches("not ready: Docker: edge-b: ", body, 1, true)
    assert.is_nil(body:find("edge-a", 1, true))
    local _, text = metrics.get(url .. "/metrics")
    local m = metrics.parse(text)
    assert.equal(1, m:value("engine_docker_up", { host = "edge-a" }))
    assert.equal(0, m:value("engine_docker_up", { host = "edge-b" }))
    -- edge-a's lines keep arriving meanwhile (about 30 a second)
    proc.wait_for(function() return #lines_of(e:json_records(), ma) >= a_at_kill + 60 end, 9,
                  "edge-a's lines while edge-b is down")
    while proc.now() - down_at < 10 do proc.sleep(0.2) end
    local a_during = #lines_of(e:json_records(), ma) - a_at_kill
    ok, out = proc.sh("sh scripts/test/dockerd.sh start " .. proc.quote(dir_b) .. " 2>&1", 120)
    assert(ok, out)
    local down_for = proc.now() - down_at
    -- back: a new container there is followed (discovery came back)
    env_b:run { name = mb2, cmd = counter("c", 50) }
    local n_a = assert_same_as_daemon(e, env_a, ma)
    local n_b = assert_same_as_daemon(e, env_b, mb)
    local n_b2 = assert_same_as_daemon(e, env_b, mb2)
    print(string.format("\ntwo daemons, edge-b down %.1f s: edge-a %d lines (%d while edge-b was down), " ..
                        "edge-b %d + %d lines, each once", down_for, n_a, a_during, n_b, n_b2))
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 20, "/ready again")
    assert.equal(0, e:stop("TERM"))
    local text = proc.read(state .. "/cursors.json")
    assert.is_string(text)
    local saved = cjson.decode(text).containers
    assert.is_table(saved["edge-a/" .. id_a])
    assert.is_table(saved["edge-b/" .. id_b])
  end)

  it("follows the daemon that answers while the other one is down from the start", function()
    local ok, out = proc.sh("sh scripts/test/dockerd.sh kill " .. proc.quote(dir_b) .. " 2>&1", 60)
    assert(ok, out)
    local port = metrics.random_port()
    local url = "http://127.0.0.1:" .. port
    e = engine.start { pipeline = pipeline(env_a.host, env_b.host, prefix, port), state_dir = state }
    local ma, mb = prefix .. "-a", prefix .. "-b"
    env_a:run { name = ma, cmd = counter("a", 100) }
    e:wait_records(function(recs) return #lines_of(recs, ma) >= 30 end, 30)
    local status, body = metrics.get(url .. "/ready")
    assert.equal(503, status)
    assert.matches("not ready: Docker: edge-b: ", body, 1, true)
    assert.matches("daemon edge-b: ", e:stderr_text(), 1, true)
    assert.matches("trying again in", e:stderr_text(), 1, true)
    ok, out = proc.sh("sh scripts/test/dockerd.sh start " .. proc.quote(dir_b) .. " 2>&1", 120)
    assert(ok, out)
    env_b:run { name = mb, cmd = counter("b", 50) }
    assert_same_as_daemon(e, env_b, mb)
    assert_same_as_daemon(e, env_a, ma)
    proc.wait_for(function() return metrics.get(url .. "/ready") == 200 end, 20, "/ready")
    assert.equal(0, e:stop("TERM"))
  end)

  it("reads a one-daemon cursor file as the first daemon's, and writes it back so", function()
    local name = prefix .. "-keep"
    local id = env_a:run { name = name, cmd = 'i=1; while [ $i -le 100 ]; do echo "k $i"; i=$((i+1)); done; sleep 600' }
    local function single(extra)
      return string.format([[
return {
  docker = { host = %q%s },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
}]], env_a.host, extra or "", prefix .. "*")
    end
    local function saved_keys()
      local text = proc.read(state .. "/cursors.json")
      assert.is_string(text)
      local keys = {}
      for k in pairs(cjson.decode(text).containers) do keys[#keys + 1] = k end
      table.sort(keys)
      return keys
    end
    -- one daemon: the file keys the container by its id alone, as before
    e = engine.start { pipeline = single(), state_dir = state }
    e:wait_records(function(recs) return #lines_of(recs, name) >= 100 end, 30)
    assert.equal(0, e:stop("TERM"))
    assert.same({ id }, saved_keys())
    -- a list with that daemon first: its cursor, nothing read again
    e = engine.start { pipeline = pipeline(env_a.host, env_b.host, prefix, metrics.random_port()),
                       state_dir = state }
    proc.wait_for(function() return e:stderr_text():find("resuming from the saved cursor", 1, true) end,
                  20, "the resume")
    proc.sleep(1)
    assert.equal(0, e:stop("TERM"))
    assert.same({}, lines_of(e:json_records(), name))
    assert.same({ "edge-a/" .. id }, saved_keys())
    -- back to one daemon under the same name: the id alone again
    e = engine.start { pipeline = single(', name = "edge-a"'), state_dir = state }
    proc.wait_for(function() return e:stderr_text():find("resuming from the saved cursor", 1, true) end,
                  20, "the resume")
    proc.sleep(1)
    assert.equal(0, e:stop("TERM"))
    assert.same({}, lines_of(e:json_records(), name))
    assert.same({ id }, saved_keys())
  end)
end)

describe("one daemon listed twice under two names #sanitize", function()
  local prefix, e, state
  before_each(function()
    prefix = dockerenv.unique("twice")
    local _, d = proc.sh("mktemp -d /tmp/state.XXXXXX")
    state = d:gsub("%s+$", "")
  end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env_a:cleanup(prefix) end,
              function() proc.sh("rm -rf " .. proc.quote(state)) end)
  end)

  it("follows each container once per name: the same ids never collide", function()
    e = engine.start { pipeline = string.format([[
return {
  docker = { { name = "x", host = %q }, { name = "y", host = %q } },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
}]], env_a.host, env_a.host, prefix .. "*"), state_dir = state }
    local name = prefix .. "-c"
    local id = env_a:run { name = name, cmd = 'i=1; while [ $i -le 50 ]; do echo "t $i"; i=$((i+1)); done; sleep 600' }
    local recs = e:wait_records(function(rs) return #lines_of(rs, name) >= 100 end, 30)
    local seen = { x = {}, y = {} }
    for _, r in ipairs(recs) do
      if r.name == name then
        local n = tonumber(r.line:match("^t (%d+)$"))
        assert.is_nil(seen[r.host][n], "line " .. n .. " twice from " .. r.host)
        seen[r.host][n] = true
      end
    end
    for _, h in ipairs { "x", "y" } do
      for n = 1, 50 do assert.is_true(seen[h][n], "line " .. n .. " from " .. h) end
    end
    assert.equal(0, e:stop("TERM"))
    local saved = cjson.decode(proc.read(state .. "/cursors.json")).containers
    assert.is_table(saved["x/" .. id])
    assert.is_table(saved["y/" .. id])
  end)
end)

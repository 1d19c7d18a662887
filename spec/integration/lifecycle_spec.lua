-- Reader lifecycle against a real Docker daemon: cycling, restarts, kills,
-- bursts of short-lived containers and a daemon killed mid-stream. In every
-- case each line the container wrote arrives exactly once: the engine's
-- records are compared with `docker logs`, the daemon's own account.
local dockerenv = require "spec.support.dockerenv"
local engine = require "spec.support.engine"
local proc = require "spec.support.proc"

local env = dockerenv.get()

local function pipeline(prefix, engine_opts)
  return string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
  engine = { backoff_initial = 0.1, backoff_max = 1, reconcile_interval = 2, %s },
}]], env.host, prefix .. "*", engine_opts or "")
end

local function wait_log(e, text, timeout)
  proc.wait_for(function() return e:stderr_text():find(text, 1, true) end,
                timeout or 20, "engine log: " .. text)
end

-- The stdout lines of a container as the daemon has them.
local function docker_lines(name)
  local ok, out = proc.sh(proc.join { dockerenv.CLIENT, "-H", env.host, "logs", name } .. " 2>/dev/null")
  assert(ok, out)
  local lines = {}
  for l in out:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  return lines
end

local function lines_of(recs, name, stream)
  local out = {}
  for _, r in ipairs(recs) do
    if r.name == name and (not stream or r.stream == stream) then out[#out + 1] = r.line end
  end
  return out
end

-- Waits until the engine delivered as many stdout lines of name as the
-- daemon holds, then checks they are the same lines in the same order.
local function assert_same_as_daemon(e, name)
  local want
  proc.wait_for(function()
    want = docker_lines(name)
    return #lines_of(e:json_records(), name, "stdout") >= #want
  end, 60, "the engine to catch up with " .. name)
  local got = lines_of(e:json_records(), name, "stdout")
  assert.same(want, got)
  return #want, #got
end

-- A container that counts on stdout forever, keeping its count in a file so
-- that a restarted container goes on where it stopped.
local COUNTER = 'n=$(cat /count 2>/dev/null || echo 0); ' ..
                'while true; do n=$((n+1)); echo $n > /count; echo "line $n"; sleep 0.02; done'

describe("reader lifecycle #tsan #sanitize", function()
  local prefix, e
  before_each(function() prefix = dockerenv.unique("life") end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env:cleanup(prefix) end)
  end)

  it("cycles streams every second without losing or repeating a line", function()
    e = engine.start { pipeline = pipeline(prefix, "cycle = 1") }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-cyc"
    env:run { name = name, cmd =
      'i=1; while [ $i -le 300 ]; do echo "out $i"; echo "err $i" >&2; sleep 0.03; i=$((i+1)); done' }
    env:wait_exit(name, 60)
    proc.wait_for(function() return #lines_of(e:json_records(), name) >= 600 end, 30, "600 lines")
    assert.equal(0, e:stop())
    local recs = e:json_records()
    for stream, word in pairs { stdout = "out", stderr = "err" } do
      local want = {}
      for i = 1, 300 do want[i] = word .. " " .. i end
      assert.same(want, lines_of(recs, name, stream))
    end
    local cycled = tonumber(e:stderr_text():match("cycled (%d+)"))
    assert.is_true(cycled >= 5, "cycled only " .. tostring(cycled) .. " times")
  end)

  it("follows a container through docker restart and docker kill + start", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-rs"
    env:run { name = name, cmd = COUNTER }
    proc.wait_for(function() return #lines_of(e:json_records(), name) >= 20 end, 30, "first lines")
    env:docker_ok { "restart", "-t", "1", name }
    proc.wait_for(function() return #lines_of(e:json_records(), name) >= 60 end, 30, "lines after restart")
    env:docker_ok { "kill", name }
    env:docker_ok { "start", name }
    proc.wait_for(function() return #lines_of(e:json_records(), name) >= 100 end, 30, "lines after kill")
    env:docker_ok { "kill", name }
    local n, got = assert_same_as_daemon(e, name)
    assert.is_true(n >= 100, "the daemon holds only " .. n .. " lines; the engine " .. got)
    assert.equal(0, e:stop())
  end)

  it("reads every line of a container that exits while its reader is held back", function()
    -- A slow filter and a small max_buffered pause the reader, so it is far
    -- behind when the container exits; the daemon may end the follow stream
    -- before it sent the rest, which the reader then reads from its cursor.
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
  engine = { max_buffered = 65536 },
  filters = { function(batch) local t = os.clock() while os.clock() - t < 0.05 do end return batch end },
}]], env.host, prefix .. "*") }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-held"
    env:run { name = name, cmd = [[awk 'BEGIN { for (i = 1; i <= 20000; i++) printf "held %d\n", i }']] }
    env:wait_exit(name, 60)
    wait_log(e, "[" .. name .. "] stopped following", 120)
    local n = assert_same_as_daemon(e, name)
    assert.equal(20000, n)
    assert.equal(0, e:stop())
  end)

  it("drains every line of a burst of short-lived containers", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local names = {}
    for i = 1, 15 do
      names[i] = prefix .. "-burst" .. i
      env:run { name = names[i], cmd = 'for i in 1 2 3 4 5; do echo "' .. names[i] .. ' $i"; done; exit 3' }
    end
    proc.wait_for(function()
      local recs = e:json_records()
      for _, n in ipairs(names) do if #lines_of(recs, n) < 5 then return false end end
      return true
    end, 60, "every burst container's lines")
    assert.equal(0, e:stop())
    local recs = e:json_records()
    for _, n in ipairs(names) do
      assert.same({ n .. " 1", n .. " 2", n .. " 3", n .. " 4", n .. " 5" }, lines_of(recs, n))
    end
  end)

  it("stops within its bound while readers are mid-read, and a second signal changes nothing", function()
    e = engine.start { pipeline = pipeline(prefix, "stop_timeout = 5") }
    wait_log(e, "connected to the Docker daemon")
    for i = 1, 3 do env:run { name = prefix .. "-busy" .. i, cmd = 'while true; do echo busy; done' } end
    proc.wait_for(function()
      local _, following = e:stderr_text():gsub("%-busy%d%] following container", "")
      return following == 3 and #e:json_records() > 1000
    end, 30, "busy lines from the three containers")
    local t0 = proc.now()
    e:signal("INT")
    e:signal("INT")
    local code = e:wait(30)
    local took = proc.now() - t0
    assert.equal(0, code)
    -- the guarantee: stop_timeout (5 s), and a second for the process to
    -- exit and this spec to see it
    assert.is_true(took < 5 + 1, string.format("stop took %.2f s", took))
    local log = e:stderr_text()
    assert.matches("readers live 0, started 3, stopped 3", log, 1, true)
  end)
end)

describe("a daemon killed with SIGKILL and started again #daemon #sanitize", function()
  local prefix, e
  before_each(function() prefix = dockerenv.unique("dkill") end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env:cleanup(prefix) end)
  end)

  it("catches up every container from its cursor", function()
    local dir = assert(os.getenv("ENGINE_TEST_DOCKER_DIR"), "ENGINE_TEST_DOCKER_DIR is not set")
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-c"
    env:run { name = name, cmd = COUNTER, args = { "--restart", "always" } }
    proc.wait_for(function() return #lines_of(e:json_records(), name) >= 30 end, 30, "first lines")
    local ok, out = proc.sh("sh scripts/test/dockerd.sh restart-kill " .. proc.quote(dir), 120)
    assert(ok, out)
    -- the restart policy starts the container again; it goes on counting
    proc.wait_for(function()
      local _, o = env:docker { "inspect", "-f", "{{.State.Running}}", name }
      return o:match("true")
    end, 60, "the container to run again")
    local before = #lines_of(e:json_records(), name)
    proc.wait_for(function() return #lines_of(e:json_records(), name) >= before + 30 end, 60,
                  "lines after the daemon restart")
    env:docker_ok { "update", "--restart", "no", name }
    env:docker_ok { "kill", name }
    assert_same_as_daemon(e, name)
    assert.equal(0, e:stop())
  end)
end)

-- The foundation: the real engine binary follows real containers of a
-- private Docker daemon through Lua filters to stdout.
local dockerenv = require "spec.support.dockerenv"
local engine = require "spec.support.engine"

local proc = require "spec.support.proc"

local env = dockerenv.get()

-- Waits until the engine's log says `text`.
local function wait_log(e, text, timeout)
  proc.wait_for(function() return e:stderr_text():find(text, 1, true) end,
                timeout or 20, "engine log: " .. text)
end

-- Waits until `docker logs` of a container shows at least n lines.
local function proc_wait_lines(name, n)
  proc.wait_for(function()
    local _, out = env:docker { "logs", name }
    local c = 0
    for _ in out:gmatch("[^\n]+") do c = c + 1 end
    return c >= n
  end, 30, n .. " lines from " .. name)
end

-- A pipeline that follows the containers whose names start with prefix.
local function pipeline(prefix, extra)
  return string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1, max_lines = 50 },
  %s
}]], env.host, prefix .. "*", extra or "")
end

-- Prints n numbered lines on stdout and n on stderr, interleaved.
local function numbered(n, pause)
  return string.format(
    'i=1; while [ $i -le %d ]; do echo "out $i"; echo "err $i" >&2; %s i=$((i+1)); done',
    n, pause and ("sleep " .. pause .. ";") or "")
end

-- Asserts that the records of container `name` hold "out 1".."out n" on
-- stdout and "err 1".."err n" on stderr, each exactly once and in order.
local function assert_numbered(recs, name, n)
  local seen = { stdout = {}, stderr = {} }
  for _, r in ipairs(recs) do
    if r.name == name then
      local list = seen[r.stream]
      assert.is_table(list, "unexpected stream " .. tostring(r.stream))
      list[#list + 1] = r.line
    end
  end
  for stream, word in pairs { stdout = "out", stderr = "err" } do
    local want = {}
    for i = 1, n do want[i] = word .. " " .. i end
    assert.same(want, seen[stream])
  end
end

local function count_for(name)
  return function(recs)
    local c = 0
    for _, r in ipairs(recs) do if r.name == name then c = c + 1 end end
    return c
  end
end

describe("engine run #sanitize", function()
  local prefix, e
  before_each(function() prefix = dockerenv.unique("follow") end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env:cleanup(prefix) end)
  end)

  it("delivers every numbered line of stdout and stderr exactly once, in order per stream", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-a"
    env:run { name = name, cmd = numbered(300) }
    local count = count_for(name)
    e:wait_records(function(recs) return count(recs) >= 600 end, 30)
    env:wait_exit(name)
    assert.equal(0, e:stop("INT"))
    local recs = e:json_records()
    assert_numbered(recs, name, 300)
    local r = recs[1]
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%dZ$", r.time)
    assert.equal(64, #r.container)
    assert.equal("engine-test:latest", r.image)
  end)

  it("reads the history of a container that was running before the engine started", function()
    local name = prefix .. "-early"
    env:run { name = name, cmd = numbered(50) .. "; sleep 30" }
    proc_wait_lines(name, 50)
    e = engine.start { pipeline = pipeline(prefix) }
    e:wait_records(function(recs) return count_for(name)(recs) >= 100 end, 30)
    assert.equal(0, e:stop("TERM"))
    assert_numbered(e:json_records(), name, 50)
  end)

  it("follows a TTY container, whose lines end in \\r\\n", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-tty"
    env:run { name = name, tty = true, cmd = 'for i in 1 2 3; do echo "tty $i"; done' }
    local recs = e:wait_records(function(r) return count_for(name)(r) >= 3 end, 30)
    local lines = {}
    for _, r in ipairs(recs) do
      if r.name == name then lines[#lines + 1] = r.line; assert.equal("stdout", r.stream) end
    end
    assert.same({ "tty 1", "tty 2", "tty 3" }, lines)
    assert.equal(0, e:stop())
  end)

  it("delivers a 100 KiB line whole", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-long"
    -- 102400 bytes: "x" * 102399 and a final "y", through dd from /dev/zero
    env:run { name = name,
              cmd = "head -c 102399 /dev/zero | tr '\\0' x; echo y; echo after" }
    local recs = e:wait_records(function(r) return count_for(name)(r) >= 2 end, 30)
    local got = {}
    for _, r in ipairs(recs) do if r.name == name then got[#got + 1] = r.line end end
    assert.equal(2, #got)
    assert.equal(102400, #got[1])
    assert.equal(string.rep("x", 102399) .. "y", got[1])
    assert.equal("after", got[2])
    assert.equal(0, e:stop())
  end)

  -- The local log driver of Docker 20.10 sends the last chunk of a line over
  -- 16 KiB without its '\n'; the next line's own timestamp ends it.
  for _, tty in ipairs { false, true } do
    it("delivers a 40,000-byte line of the local log driver whole, then the next line whole" ..
       (tty and " (TTY)" or ""), function()
      e = engine.start { pipeline = pipeline(prefix) }
      wait_log(e, "connected to the Docker daemon")
      local name = prefix .. "-local"
      env:run { name = name, args = { "--log-driver", "local" }, tty = tty,
                cmd = "head -c 39999 /dev/zero | tr '\\0' x; echo y; echo next; echo last" }
      local recs = e:wait_records(function(r) return count_for(name)(r) >= 3 end, 30)
      local got = {}
      for _, r in ipairs(recs) do if r.name == name then got[#got + 1] = r.line end end
      assert.equal(3, #got)
      assert.equal(40000, #got[1])
      assert.equal(string.rep("x", 39999) .. "y", got[1])
      assert.equal("next", got[2])
      assert.equal("last", got[3])
      assert.equal(0, e:stop())
    end)
  end

  it("runs filters that drop and rewrite records", function()
    e = engine.start { pipeline = pipeline(prefix, [[
  filters = {
    { name = "drop_odd", process = function(batch)
        local keep = {}
        for _, r in ipairs(batch) do
          local n = tonumber(r.line:match("(%d+)$"))
          if n and n % 2 == 0 then keep[#keep + 1] = r end
        end
        return keep
      end },
    { name = "upper", process = function(batch, ctx)
        for _, r in ipairs(batch) do r.line = r.line:upper(); r.seen_by = ctx.filter end
      end },
  },]]) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-f"
    env:run { name = name, cmd = numbered(20) }
    local recs = e:wait_records(function(r) return count_for(name)(r) >= 20 end, 30)
    env:wait_exit(name)
    assert.equal(0, e:stop())
    recs = e:json_records()
    local outs = {}
    for _, r in ipairs(recs) do
      if r.name == name and r.stream == "stdout" then
        outs[#outs + 1] = r.line
        assert.equal("upper", r.seen_by)
      end
    end
    assert.same({ "OUT 2", "OUT 4", "OUT 6", "OUT 8", "OUT 10", "OUT 12", "OUT 14", "OUT 16",
                  "OUT 18", "OUT 20" }, outs)
  end)

  it("loses no line when a filter raises error() on every third batch with on_error = pass", function()
    e = engine.start { pipeline = pipeline(prefix, [[
  filters = {
    { name = "flaky", on_error = "pass", process = (function()
        local calls = 0
        return function(batch)
          calls = calls + 1
          if calls % 3 == 0 then error("flaky failure " .. calls) end
          for _, r in ipairs(batch) do r.ok = true end
          return batch
        end
      end)() },
  },]]) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-err"
    env:run { name = name, cmd = numbered(100, 0.01) }
    e:wait_records(function(r) return count_for(name)(r) >= 200 end, 60)
    env:wait_exit(name)
    assert.equal(0, e:stop())
    assert_numbered(e:json_records(), name, 100)
    local log = e:stderr_text()
    assert.matches("flaky", log)
    assert.matches(name, log, 1, true)
    assert.matches("flaky failure %d+", log)
    assert.matches("stack traceback", log)
  end)
end)

describe("container selection #sanitize", function()
  local prefix, e
  before_each(function() prefix = dockerenv.unique("sel") end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env:cleanup(prefix) end)
  end)

  it("follows containers by label, and leaves out excluded names and unlabelled ones", function()
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  select = {
    include = { label = { "team=%s" } },
    exclude = { name = { "%s-skip*" } },
  },
  batch = { flush_interval = 0.1 },
}]], env.host, prefix, prefix) }
    wait_log(e, "connected to the Docker daemon")
    env:run { name = prefix .. "-lab", labels = { team = prefix }, cmd = "echo by-label" }
    env:run { name = prefix .. "-skip", labels = { team = prefix }, cmd = "echo skipped" }
    env:run { name = prefix .. "-none", cmd = "echo unlabelled" }
    env:run { name = prefix .. "-lab2", labels = { team = prefix }, cmd = "echo by-label" }
    e:wait_records(function(recs) return count_for(prefix .. "-lab2")(recs) >= 1 end, 30)
    env:wait_exit(prefix .. "-skip")
    env:wait_exit(prefix .. "-none")
    assert.equal(0, e:stop())
    local recs = e:json_records()
    assert.equal(0, count_for(prefix .. "-skip")(recs))
    assert.equal(0, count_for(prefix .. "-none")(recs))
    assert.equal(1, count_for(prefix .. "-lab")(recs))
    for _, r in ipairs(recs) do
      if r.name == prefix .. "-lab" then
        assert.equal("by-label", r.line)
        assert.equal(prefix, r.labels.team)
      end
    end
  end)
end)

describe("engine run with bad input #sanitize", function()
  it("exits 2 with the file and line of a syntax error in pipeline.lua", function()
    local code, _, err = engine.run_once { command = "run", pipeline = "return {\n  filters = {\n    function(b) return b end end,\n}\n" }
    assert.equal(2, code)
    assert.matches("pipeline%.lua:3:", err)
  end)

  it("exits 2 when pipeline.lua raises an error at load time", function()
    local code, _, err = engine.run_once { command = "check", pipeline = "local x = nil\nreturn x.field\n" }
    assert.equal(2, code)
    assert.matches("pipeline%.lua:2:", err)
  end)

  it("gives a clear error and exits 1 for a DOCKER_HOST where no daemon listens", function()
    local code, _, err = engine.run_once {
      command = "run", pipeline = "return {}\n",
      env = { DOCKER_HOST = "unix:///nonexistent/docker.sock" }, timeout = 30 }
    assert.equal(1, code)
    assert.matches("cannot reach the Docker daemon at unix:///nonexistent/docker.sock", err, 1, true)
  end)

  it("exits 2 with a clear error for a DOCKER_HOST it does not understand, at run and at check", function()
    for _, command in ipairs({ "run", "check" }) do
      local code, _, err = engine.run_once {
        command = command, pipeline = "return {}\n", env = { DOCKER_HOST = "ftp://x" } }
      assert.equal(2, code)
      assert.matches('$DOCKER_HOST must be unix:///path, tcp://host:port or http(s)://host:port (got "ftp://x")',
                     err, 1, true)
    end
  end)

  it("says the pipeline is ok with engine check, without a daemon", function()
    local code, out = engine.run_once { command = "check", pipeline = "return { filters = { function(b) return b end } }\n",
                                         env = { DOCKER_HOST = "unix:///nonexistent.sock" } }
    assert.equal(0, code)
    assert.matches(": ok", out, 1, true)
  end)
end)

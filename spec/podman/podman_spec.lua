-- The engine follows Podman's containers through its Docker-compatible API
-- (a private `podman system service`, scripts/test/podman.sh): Podman 4.x gives
-- log timestamps of whole seconds, so many lines share one timestamp and
-- every resume must still deliver each line exactly once. What the engine
-- delivers is compared with `podman logs`.
local dockerenv = require "spec.support.dockerenv"
local engine = require "spec.support.engine"
local proc = require "spec.support.proc"

local env = dockerenv.podman()

local function wait_log(e, text, timeout)
  proc.wait_for(function() return e:stderr_text():find(text, 1, true) end,
                timeout or 30, "engine log: " .. text)
end

local function pipeline(prefix, extra)
  return string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1, max_lines = 50 },
  %s
}]], env.host, prefix .. "*", extra or "")
end

-- The lines of container `name` in the records, in order, per stream.
local function lines_of(recs, name)
  local out = { stdout = {}, stderr = {} }
  for _, r in ipairs(recs) do
    if r.name == name then
      local list = out[r.stream]
      assert.is_table(list, "unexpected stream " .. tostring(r.stream))
      list[#list + 1] = r.line
    end
  end
  return out
end

local function count_of(name)
  return function(recs)
    local c = 0
    for _, r in ipairs(recs) do if r.name == name then c = c + 1 end end
    return c
  end
end

-- The multiset of a container's lines, as `podman logs` gives them (stdout
-- and stderr together).
local function podman_logs(name)
  local out = env:docker_ok({ "logs", name }, 60)
  local c, n = {}, 0
  for line in (out .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    c[line] = (c[line] or 0) + 1
    n = n + 1
  end
  if out == "" then return {}, 0 end
  return c, n
end

local function multiset(recs, name)
  local c, n = {}, 0
  for _, r in ipairs(recs) do
    if r.name == name then
      c[r.line] = (c[r.line] or 0) + 1
      n = n + 1
    end
  end
  return c, n
end

-- Every line `podman logs` has, exactly as often, and nothing else.
local function assert_like_podman_logs(recs, name)
  local want, n = podman_logs(name)
  assert.is_true(n > 0, "podman logs " .. name .. " is empty")
  local got = multiset(recs, name)
  assert.same(want, got)
end

describe("Podman", function()
  local prefix, e
  before_each(function() prefix = dockerenv.unique("pm") end)
  after_each(function()
    if e then e:cleanup() end
    e = nil
    env:cleanup(prefix)
  end)

  it("gives numbered lines of stdout and stderr exactly once, in order per stream", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-num"
    env:run { name = name,
              cmd = 'i=1; while [ $i -le 200 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done' }
    e:wait_records(function(r) return count_of(name)(r) >= 400 end, 60)
    env:wait_exit(name)
    assert.equal(0, e:stop("INT"))
    local got = lines_of(e:json_records(), name)
    local want_out, want_err = {}, {}
    for i = 1, 200 do want_out[i], want_err[i] = "out " .. i, "err " .. i end
    assert.same(want_out, got.stdout)
    assert.same(want_err, got.stderr)
  end)

  it("follows a TTY container", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-tty"
    env:run { name = name, tty = true, cmd = 'for i in 1 2 3; do echo "tty $i"; done' }
    local recs = e:wait_records(function(r) return count_of(name)(r) >= 3 end, 60)
    local got = lines_of(recs, name)
    assert.same({ "tty 1", "tty 2", "tty 3" }, got.stdout)
    assert.same({}, got.stderr)
    assert.equal(0, e:stop())
  end)

  it("delivers a 100 KiB line whole, then the next line", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-long"
    env:run { name = name, cmd = "head -c 102399 /dev/zero | tr '\\0' x; echo y; echo after" }
    local recs = e:wait_records(function(r) return count_of(name)(r) >= 2 end, 60)
    local got = lines_of(recs, name).stdout
    assert.equal(2, #got)
    assert.equal(102400, #got[1])
    assert.equal(string.rep("x", 102399) .. "y", got[1])
    assert.equal("after", got[2])
    assert.equal(0, e:stop())
  end)

  -- Identical lines in one second share one timestamp: only their count
  -- tells a replayed line from a new one when a stream resumes.
  it("loses and repeats nothing across 1 s stream cycles, identical lines in one second included", function()
    e = engine.start { pipeline = pipeline(prefix, "engine = { cycle = 1 },") }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-cyc"
    env:run { name = name, cmd = 'i=1; while [ $i -le 40 ]; do echo "tick $i"; echo same; echo same >&2; ' ..
                                 'echo same; i=$((i+1)); sleep 0.1; done' }
    env:wait_exit(name, 60)
    local want_n = select(2, podman_logs(name))
    e:wait_records(function(r) return count_of(name)(r) >= want_n end, 60)
    proc.sleep(1.5) -- a further cycle would bring any repeat
    assert.equal(0, e:stop())
    assert.matches("cycled [1-9]", e:stderr_text())
    assert_like_podman_logs(e:json_records(), name)
    local got = lines_of(e:json_records(), name)
    local ticks = {}
    for _, l in ipairs(got.stdout) do if l:match("^tick") then ticks[#ticks + 1] = l end end
    local want = {}
    for i = 1, 40 do want[i] = "tick " .. i end
    assert.same(want, ticks)
  end)

  it("follows a container through podman restart: every line of both runs exactly once", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local name = prefix .. "-rs"
    env:run { name = name, cmd = 'i=1; while [ $i -le 30 ]; do echo "line $i"; i=$((i+1)); sleep 0.05; done; sleep 60' }
    e:wait_records(function(r) return count_of(name)(r) >= 30 end, 60)
    env:docker_ok({ "restart", "-t", "0", name }, 60)
    proc.wait_for(function() return select(2, podman_logs(name)) >= 60 end, 60, "the second run's lines")
    e:wait_records(function(r) return count_of(name)(r) >= 60 end, 60)
    proc.sleep(1)
    assert.equal(0, e:stop())
    local recs = e:json_records()
    assert_like_podman_logs(recs, name)
    local got = multiset(recs, name)
    for i = 1, 30 do assert.equal(2, got["line " .. i], "line " .. i) end
  end)

  it("reads every line of a burst of short-lived containers", function()
    e = engine.start { pipeline = pipeline(prefix) }
    wait_log(e, "connected to the Docker daemon")
    local names = {}
    for i = 1, 8 do
      names[i] = prefix .. "-b" .. i
      env:run { name = names[i], cmd = 'for j in 1 2 3 4 5 6 7 8 9 10; do echo "' .. names[i] .. ' $j"; done' }
    end
    for _, n in ipairs(names) do env:wait_exit(n, 60) end
    e:wait_records(function(r)
      for _, n in ipairs(names) do if count_of(n)(r) < 10 then return false end end
      return true
    end, 60)
    proc.sleep(1)
    assert.equal(0, e:stop())
    local recs = e:json_records()
    for _, n in ipairs(names) do assert_like_podman_logs(recs, n) end
  end)

  -- Without docker.host or $DOCKER_HOST the engine takes the first socket
  -- that exists of Docker's, rootful Podman's and rootless Podman's.
  it("finds a rootless Podman socket under $XDG_RUNTIME_DIR by default", function()
    local xdg = select(2, proc.sh("mktemp -d /tmp/xdg.XXXXXX")):gsub("%s+$", "")
    assert(proc.sh("mkdir -p " .. xdg .. "/podman && ln -s " .. proc.quote(env.host:sub(8)) .. " " ..
                   xdg .. "/podman/podman.sock"))
    local want = xdg .. "/podman/podman.sock"
    for _, p in ipairs { "/run/podman/podman.sock", "/var/run/docker.sock" } do
      if proc.sh("test -S " .. p) then want = p end
    end
    e = engine.start { pipeline = "return { outputs = { { type = 'stdout' } } }\n",
                       env = { DOCKER_HOST = false, XDG_RUNTIME_DIR = xdg } }
    wait_log(e, "connected to the Docker daemon at unix://" .. want)
    assert.equal(0, e:stop())
    proc.sh("rm -rf " .. proc.quote(xdg))
  end)

  it("backfills every line exactly once, identical lines in one second included", function()
    local name = prefix .. "-bf"
    env:run { name = name, cmd = 'i=1; while [ $i -le 20 ]; do echo "n $i"; echo dup; echo dup >&2; ' ..
                                 'i=$((i+1)); sleep 0.1; done' }
    env:wait_exit(name, 60)
    local code, out, err = engine.run_once { command = "run", pipeline = pipeline(prefix),
                                            args = { "--since", "1h" }, timeout = 60 }
    assert.equal(0, code, err)
    local recs = {}
    for line in out:gmatch("[^\n]+") do recs[#recs + 1] = require("cjson").decode(line) end
    assert_like_podman_logs(recs, name)
  end)
end)

-- Backfill: `engine run pipeline.lua --since T [--until T]` reads the
-- history of the selected containers (running or stopped) from the real
-- daemon through the filters and outputs, shows progress on a terminal, and
-- exits 0 only when everything was delivered.
local dockerenv = require "spec.support.dockerenv"
local engine = require "spec.support.engine"
local proc = require "spec.support.proc"
local receiver = require "spec.support.receiver"
package.path = "lua/?.lua;" .. package.path
local time = require "engine.time"

local env = dockerenv.get()

describe("backfill #sanitize", function()
  local prefix, tmp, rx
  before_each(function()
    prefix = dockerenv.unique("bf")
    tmp = select(2, proc.sh("mktemp -d /tmp/bf.XXXXXX")):gsub("%s+$", "")
  end)
  after_each(function()
    local drx = rx
    rx = nil
    proc.each(function() if drx then drx:stop() end end,
              function() env:cleanup(prefix) end,
              function() proc.sh("rm -rf " .. proc.quote(tmp)) end)
  end)

  local function write_pipeline(extra)
    local path = tmp .. "/p.lua"
    local f = assert(io.open(path, "w"))
    f:write(string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.05, max_lines = 100 },
  %s
}]], env.host, prefix .. "*", extra or ""))
    f:close()
    return path
  end

  it("reads stopped and running containers' history once and exits 0", function()
    env:run { name = prefix .. "-done", cmd = 'i=1; while [ $i -le 300 ]; do echo "done $i"; i=$((i+1)); done' }
    env:run { name = prefix .. "-live", cmd = 'i=1; while [ $i -le 200 ]; do echo "live $i"; i=$((i+1)); done; sleep 60' }
    env:wait_exit(prefix .. "-done")
    proc.wait_for(function()
      return select(2, env:docker { "logs", prefix .. "-live" }):find("live 200", 1, true)
    end, 30, "the live container's lines")
    local code, out, err = engine.run_once { command = "run", pipeline = write_pipeline(),
                                            args = { "--since", "1h" }, timeout = 60 }
    assert.equal(0, code, err)
    local count = {}
    for line in out:gmatch("[^\n]+") do
      local l = require("cjson").decode(line).line
      count[l] = (count[l] or 0) + 1
    end
    for i = 1, 300 do assert.equal(1, count["done " .. i]) end
    for i = 1, 200 do assert.equal(1, count["live " .. i]) end
    assert.matches("backfill: every selected container's history is read (2 readers)", err, 1, true)
  end)

  it("reads nothing before --since", function()
    -- old lines, then 3 s later new ones; --since falls between them
    local name = prefix .. "-since"
    env:run { name = name, cmd = 'for i in 1 2 3 4 5; do echo "old $i"; done; sleep 3; ' ..
                                 'for i in 1 2 3 4 5; do echo "new $i"; done' }
    env:wait_exit(name)
    local stamped = env:docker_ok { "logs", "-t", name }
    local last_old = stamped:match("(%S+) old 5")
    assert(last_old, stamped)
    local since = os.date("!%Y-%m-%dT%H:%M:%SZ", assert(time.parse(last_old)) + 1)
    local code, out, err = engine.run_once { command = "run", pipeline = write_pipeline(),
                                            args = { "--since", since }, timeout = 60 }
    assert.equal(0, code, err)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = require("cjson").decode(line).line end
    assert.same({ "new 1", "new 2", "new 3", "new 4", "new 5" }, lines)
  end)

  it("reads nothing after --until", function()
    env:run { name = prefix .. "-old", cmd = "echo old" }
    env:wait_exit(prefix .. "-old")
    local code, out = engine.run_once { command = "run", pipeline = write_pipeline(),
                                       args = { "--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z" },
                                       timeout = 60 }
    assert.equal(0, code)
    assert.equal("", out)
  end)

  -- The window's ends are the timestamps of two lines, to the nanosecond:
  -- both ends are inclusive, one nanosecond inside either end leaves that
  -- line out. What the window holds is taken from `docker logs -t`. A short
  -- cycle, with a slow filter that keeps the reader paused, makes it
  -- reconnect from its cursor (whose resume margin reaches back before the
  -- window) in the middle of the window.
  it("reads exactly the lines inside a --since/--until window of the history", function()
    env:run { name = prefix .. "-win", cmd = 'i=1; while [ $i -le 30 ]; do echo "win $i"; ' ..
              'for j in $(seq 1 100); do echo "pad $i $j"; done; echo "err $i" >&2; i=$((i+1)); sleep 0.05; done' }
    env:wait_exit(prefix .. "-win")
    local logs = env:docker_ok({ "logs", "-t", prefix .. "-win" }, 60)
    local history, ts = {}, {}
    for t, text in logs:gmatch("(%S+) ([^\n]*)") do
      history[#history + 1] = { t = t, text = text }
      local n = text:match("^win (%d+)$")
      if n then ts[tonumber(n)] = t end
    end
    assert.equal(30 * 102, #history)
    -- the lines whose timestamp is in [from, to] (same fixed-width format)
    local function expected(from, to)
      local c = {}
      for _, h in ipairs(history) do
        if h.t >= from and h.t <= to then c[h.text] = (c[h.text] or 0) + 1 end
      end
      return c
    end
    local function window(from, to, extra)
      local code, out, err = engine.run_once { command = "run", timeout = 120,
        pipeline = write_pipeline(extra), args = { "--since", from, "--until", to } }
      assert.equal(0, code, err)
      local c = {}
      for line in out:gmatch("[^\n]+") do
        local text = require("cjson").decode(line).line
        c[text] = (c[text] or 0) + 1
      end
      return c, err
    end
    -- one nanosecond later or earlier, in RFC 3339 with nine digits
    local function shift(t, d)
      local head, frac = t:match("^(.-%.)(%d%d%d%d%d%d%d%d%d)Z$")
      assert.truthy(head, t)
      local f = tonumber(frac) + d
      assert(f >= 0 and f < 1e9, "a timestamp at a whole second: rerun")
      return head .. string.format("%09d", f) .. "Z"
    end
    local from, to = ts[10], ts[20]
    local want = expected(from, to)
    assert.equal(1, want["win 10"])
    assert.equal(1, want["win 20"])
    assert.is_nil(want["win 9"])
    assert.is_nil(want["pad 20 1"])
    assert.same(want, (window(from, to)))
    local inner = expected(shift(from, 1), shift(to, -1))
    assert.is_nil(inner["win 10"])
    assert.is_nil(inner["win 20"])
    assert.same(inner, (window(shift(from, 1), shift(to, -1))))
    local got, err = window(from, to, [[
  filters = { function(batch) local t = os.clock() while os.clock() - t < 0.05 do end end },
  engine = { cycle = 0.2, max_buffered = 64 },]])
    assert.same(want, got)
    assert.matches("cycled [1-9]", err)
  end)

  it("shows progress per container on a terminal", function()
    env:run { name = prefix .. "-big", cmd = "seq 1 20000" }
    env:wait_exit(prefix .. "-big")
    -- a slow filter and a small in-flight limit keep the reader busy for seconds
    local p = write_pipeline([[
  filters = { function(batch) local t = os.clock() while os.clock() - t < 0.01 do end end },
  outputs = { { type = "null" } },
  engine = { max_buffered = 65536 },]])
    local cmd = proc.join { engine.bin(), "run", p, "--since", "1h", "--state-dir", "" }
    local ok, out = proc.sh("script -qec " .. proc.quote(cmd) .. " /dev/null", 120)
    assert(ok, out)
    assert.matches("backfill: " .. prefix:gsub("%-", "%%-") .. "%-big%s+%d+ lines%s+%d+ bytes%s+reached %d%d%d%d%-", out)
  end)

  it("exits 1 when an output could not take everything", function()
    env:run { name = prefix .. "-rej", cmd = "seq 1 50" }
    env:wait_exit(prefix .. "-rej")
    rx = receiver.start { "--script", "400" }
    local code, _, err = engine.run_once { command = "run", timeout = 60, args = { "--since", "1h" },
      pipeline = write_pipeline(string.format(
        'outputs = { { type = "http", url = %q, dead_letter = %q } },', rx.url, tmp .. "/dead.jsonl")) }
    assert.equal(1, code)
    assert.matches("backfill: not everything was delivered", err, 1, true)
  end)
end)

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

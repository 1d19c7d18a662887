-- Read-only root: the engine runs in a private mount namespace where every
-- mount (but /proc, /sys, /dev) is read-only, except its state directory.
-- It must follow the fake Docker API server, deliver every line, save its
-- cursors in the state directory, and write nothing anywhere else (a write
-- elsewhere fails with EROFS, which the engine would log). Needs root and
-- util-linux's unshare and mount, as the integration specs run.
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"
local cjson = require "cjson"

local LINES = 50

-- $1: the state directory; the rest: the command. Remounts every mount
-- read-only (the namespace's own copies: nothing outside changes), then
-- makes the state directory a writable mount of its own.
local SETUP = [[
set -e
for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$m"
done
state=$1; shift
mount --bind "$state" "$state"
mount -o remount,bind,rw "$state"
if touch /tmp/engine-readonly-probe 2>/dev/null; then echo "/tmp is writable" >&2; exit 99; fi
exec "$@"
]]

local function bin()
  local b = os.getenv("ENGINE_BIN")
  return (b and b ~= "") and b or "build/engine"
end

describe("a read-only root #sanitize", function()
  local srv, p, dir
  after_each(function()
    local dp, dsrv, ddir = p, srv, dir
    srv, p, dir = nil, nil, nil
    proc.each(function() if dp then dp:cleanup() end end,
              function() if dsrv then dsrv:stop() end end,
              function() if ddir then proc.sh("rm -rf " .. proc.quote(ddir)) end end)
  end)

  it("delivers every line and writes only its state directory", function()
    local _, out = proc.sh("mktemp -d /tmp/engine-ro.XXXXXX")
    dir = out:gsub("%s+$", "")
    local state = dir .. "/state"
    assert(proc.sh("mkdir " .. proc.quote(state)))
    local f = assert(io.open(dir .. "/pipeline.lua", "w"))
    srv = fake.start { "--containers", "2", "--rate", "200", "--lines", tostring(LINES), "--linger" }
    f:write(string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch) for _, r in ipairs(batch) do r.ro = true end end },
  engine = { stop_timeout = 3 },
}]], srv.host))
    f:close()
    -- stdout and stderr are opened before the namespace exists: they stay
    -- writable, as a journal or a pipe would be on an appliance.
    p = proc.spawn {
      argv = { "unshare", "--mount", "--propagation", "private", "sh", "-c", SETUP, "sh",
               state, bin(), "run", "--state-dir", state, dir .. "/pipeline.lua" },
      stdout = dir .. "/stdout", stderr = dir .. "/stderr",
    }
    local function lines()
      local n = 0
      for _, l in ipairs(proc.lines(dir .. "/stdout")) do
        local r = cjson.decode(l)
        assert.is_true(r.ro)
        n = n + 1
      end
      return n
    end
    proc.wait_for(function()
      if not p:running() then error("engine exited: " .. (proc.read(dir .. "/stderr") or "")) end
      return lines() >= 2 * LINES
    end, 60, "every line")
    p:signal("TERM")
    assert.equal(0, p:wait(15), proc.read(dir .. "/stderr"))
    local err = proc.read(dir .. "/stderr") or ""
    assert.equal(2 * LINES, lines())
    assert.is_nil(err:find("Read-only file system", 1, true), err)
    assert.is_nil(err:find("cannot", 1, true), err)
    local saved = proc.read(state .. "/cursors.json")
    assert.truthy(saved, "no cursors.json in the state directory; stderr: " .. err)
    assert.equal(2, cjson.decode(saved).version)
  end)

  it("warns, and keeps its cursors in memory, when its state directory is on the read-only root", function()
    local _, out = proc.sh("mktemp -d /tmp/engine-ro.XXXXXX")
    dir = out:gsub("%s+$", "")
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", tostring(LINES), "--linger" }
    local f = assert(io.open(dir .. "/pipeline.lua", "w"))
    f:write(string.format("return { docker = { host = %q }, batch = { flush_interval = 0.05 } }",
                          srv.host))
    f:close()
    local writable = dir .. "/writable"
    assert(proc.sh("mkdir " .. proc.quote(writable)))
    p = proc.spawn {
      argv = { "unshare", "--mount", "--propagation", "private", "sh", "-c", SETUP, "sh",
               writable, bin(), "run", "--state-dir", dir .. "/nostate", dir .. "/pipeline.lua" },
      stdout = dir .. "/stdout", stderr = dir .. "/stderr",
    }
    proc.wait_for(function()
      if not p:running() then error("engine exited: " .. (proc.read(dir .. "/stderr") or "")) end
      return #proc.lines(dir .. "/stdout") >= LINES
    end, 60, "every line")
    p:signal("TERM")
    assert.equal(0, p:wait(15), proc.read(dir .. "/stderr"))
    local err = proc.read(dir .. "/stderr") or ""
    assert.equal(LINES, #proc.lines(dir .. "/stdout"))
    assert.matches("cannot create the state directory " .. dir .. "/nostate: Read-only file system",
                   err, 1, true)
    assert.is_nil(io.open(dir .. "/nostate"), "the state directory was created")
  end)
end)

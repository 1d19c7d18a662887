--- fake.lua - runs the fake Docker API server (build/fakedocker) for specs.
--
--   local fake = require "spec.support.fake"
--   local srv = fake.start { "--containers", "2", "--rate", "100" }
--   ... srv.host is "unix://<socket>" ...
--   srv:post("/fake/restart/c0")
--   srv:stop()
--
-- The binary is $ENGINE_TOOLS/fakedocker (default build/fakedocker).
local proc = require "spec.support.proc"

local M = {}

local Server = {}
Server.__index = Server

function M.bin()
  return (os.getenv("ENGINE_TOOLS") or "build") .. "/fakedocker"
end

--- Starts the server with extra arguments and waits (bounded) for "ready".
function M.start(args)
  local ok, dir = proc.sh("mktemp -d /tmp/fake.XXXXXX")
  assert(ok, dir)
  dir = dir:gsub("%s+$", "")
  local srv = setmetatable({ dir = dir, sock = dir .. "/docker.sock" }, Server)
  srv.host = "unix://" .. srv.sock
  local argv = { M.bin(), "--socket", srv.sock }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  srv.p = proc.spawn { argv = argv, stdout = dir .. "/stdout", stderr = dir .. "/stderr" }
  proc.wait_for(function()
    if not srv.p:running() then
      error("fakedocker exited: " .. (proc.read(dir .. "/stderr") or ""))
    end
    return (proc.read(dir .. "/stdout") or ""):find("ready\n", 1, true)
  end, 10, "fakedocker to be ready")
  return srv
end

--- POSTs to the control endpoints (/fake/restart/NAME, /fake/fault?...).
function Server:post(path)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "10", "-X", "POST",
                                       "--unix-socket", self.sock, "http://localhost" .. path })
  assert(ok, "POST " .. path .. " failed: " .. out)
end

--- Stops the server (SIGTERM, bounded) and removes its folder. Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  self.p:signal("TERM")
  if not self.p:wait(10) then self.p:kill() end
  self.p:cleanup()
  proc.sh("rm -rf " .. proc.quote(self.dir))
end

return M

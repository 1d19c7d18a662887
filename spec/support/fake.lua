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
local server = require "spec.support.server"

local M = {}

local Server = {}
Server.__index = Server

function M.bin()
  return (os.getenv("ENGINE_TOOLS") or "build") .. "/fakedocker"
end

--- Starts the server with extra arguments and waits (bounded) for "ready".
function M.start(args)
  local dir = server.folder("fake")
  local srv = setmetatable({ dir = dir, sock = dir .. "/docker.sock" }, Server)
  srv.host = "unix://" .. srv.sock
  server.run(srv, { M.bin(), "--socket", srv.sock }, args, "fakedocker", function(out)
    return out:find("ready\n", 1, true)
  end)
  return srv
end

--- POSTs to the control endpoints (/fake/restart/NAME, /fake/fault?...).
function Server:post(path)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "10", "-X", "POST",
                                       "--unix-socket", self.sock, "http://localhost" .. path })
  assert(ok, "POST " .. path .. " failed: " .. out)
end

--- The server's counters (the JSON line it prints on SIGUSR1), waiting at
-- most 10 s for it.
function Server:stats()
  local cjson = require "cjson"
  local function lines()
    local n = 0
    for _ in (proc.read(self.dir .. "/stdout") or ""):gmatch("{[^\n]*}\n") do n = n + 1 end
    return n
  end
  local before = lines()
  self.p:signal("USR1")
  proc.wait_for(function() return lines() > before end, 10, "fakedocker's stats")
  local last
  for l in (proc.read(self.dir .. "/stdout") or ""):gmatch("({[^\n]*})\n") do last = l end
  return cjson.decode(last)
end

--- Stops the server (SIGTERM, bounded) and removes its folder. Idempotent.
Server.stop = server.stop

return M

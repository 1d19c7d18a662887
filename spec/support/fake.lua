--- fake.lua - runs the fake Docker API server (build/fakedocker) for specs.
--
--   local fake = require "spec.support.fake"
--   local srv = fake.start { "--containers", "2", "--rate", "100" }
--   ... srv.host is "unix://<socket>" ...
--   srv:post("/fake/restart/c0")
--   srv:faults()["truncate"]   -- how many times that fault was applied
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

--- The faults the server applied so far: { ["stall-body"] = n, ... } for
-- every mode (GET /fake/faults).
function Server:faults()
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "10",
                                       "--unix-socket", self.sock, "http://localhost/fake/faults" })
  assert(ok, "GET /fake/faults failed: " .. out)
  return require("cjson").decode(out)
end

--- The history of container name as the server holds it now (GET its logs
-- with timestamps, without follow): an array of { stream = "stdout" |
-- "stderr", time = RFC 3339 text, text = the line without its newline }, in
-- order. Frames of one line split in parts are joined.
function Server:logs(name)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "20", "--unix-socket", self.sock,
    "http://localhost/containers/" .. name .. "/logs?stdout=1&stderr=1&timestamps=1" })
  assert(ok, "GET the logs of " .. name .. " failed")
  local lines, pos, partial = {}, 1, nil
  while pos + 7 <= #out do
    local kind = out:byte(pos)
    local b1, b2, b3, b4 = out:byte(pos + 4, pos + 7)
    local size = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    local payload = out:sub(pos + 8, pos + 7 + size)
    pos = pos + 8 + size
    local ts, text = payload:match("^(%S+) (.*)$")
    if partial then text = partial.text .. text end
    if text:sub(-1) == "\n" then
      lines[#lines + 1] = { stream = kind == 2 and "stderr" or "stdout", time = ts, text = text:sub(1, -2) }
      partial = nil
    else
      partial = { text = text }
    end
  end
  return lines
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

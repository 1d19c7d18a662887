--- receiver.lua - runs the HTTP receiver (build/receiver) for output specs.
--
--   local receiver = require "spec.support.receiver"
--   local rx = receiver.start { "--script", "500,200" }
--   ... rx.url is "http://127.0.0.1:<port>" ...
--   for _, req in ipairs(rx:requests()) do print(req.path, req.body) end
--   rx:stop()
local proc = require "spec.support.proc"

local M = {}
local Receiver = {}
Receiver.__index = Receiver

--- Starts the receiver with extra arguments; waits (bounded) for its port.
function M.start(args)
  local _, dir = proc.sh("mktemp -d /tmp/rx.XXXXXX")
  dir = dir:gsub("%s+$", "")
  local rx = setmetatable({ dir = dir }, Receiver)
  local argv = { (os.getenv("ENGINE_TOOLS") or "build") .. "/receiver", "--dir", dir .. "/req" }
  proc.sh("mkdir -p " .. proc.quote(dir .. "/req"))
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  rx.p = proc.spawn { argv = argv, stdout = dir .. "/stdout", stderr = dir .. "/stderr" }
  proc.wait_for(function()
    if not rx.p:running() then error("receiver exited: " .. (proc.read(dir .. "/stderr") or "")) end
    rx.port = (proc.read(dir .. "/stdout") or ""):match("ready (%d+)")
    return rx.port
  end, 10, "the receiver")
  rx.url = "http://127.0.0.1:" .. rx.port
  return rx
end

--- The requests received so far, in order: { n, method, path, headers
-- (lower-case names), body }.
function Receiver:requests()
  local out = {}
  for n = 1, 100000 do
    local base = string.format("%s/req/%06d", self.dir, n)
    local req = proc.read(base .. ".req")
    if not req then break end
    local method, path = req:match("^(%S+) (%S+)")
    local headers = {}
    for k, v in req:gmatch("\n([^:\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
    out[#out + 1] = { n = n, method = method, path = path, headers = headers,
                      body = proc.read(base .. ".body") or "" }
  end
  return out
end

--- Stops the receiver and removes its folder. Idempotent.
function Receiver:stop()
  if self.stopped then return end
  self.stopped = true
  self.p:signal("TERM")
  if not self.p:wait(10) then self.p:kill() end
  self.p:cleanup()
  proc.sh("rm -rf " .. proc.quote(self.dir))
end

return M

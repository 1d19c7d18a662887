--- receiver.lua - runs the HTTP receiver (build/receiver) for output specs.
--
--   local receiver = require "spec.support.receiver"
--   local rx = receiver.start { "--script", "500,200" }
--   ... rx.url is "http://127.0.0.1:<port>" ...
--   for _, req in ipairs(rx:requests()) do print(req.path, req.body) end
--   rx:times()[2] - rx:times()[1]   -- seconds between requests 1 and 2
--   rx:stop()
local proc = require "spec.support.proc"
local server = require "spec.support.server"

local M = {}
local Receiver = {}
Receiver.__index = Receiver

--- Starts the receiver with extra arguments; waits (bounded) for its port.
function M.start(args)
  local dir = server.folder("rx")
  local rx = setmetatable({ dir = dir }, Receiver)
  proc.sh("mkdir -p " .. proc.quote(dir .. "/req"))
  rx.port = server.run(rx, { (os.getenv("ENGINE_TOOLS") or "build") .. "/receiver", "--dir", dir .. "/req" },
                       args, "receiver", function(out) return out:match("ready (%d+)") end)
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

--- When each request arrived whole, by the receiver's clock: an array,
-- request number -> seconds (a number; compare them with one another).
function Receiver:times()
  local out = {}
  for n, at in (proc.read(self.dir .. "/stderr") or ""):gmatch("request (%d+) [^\n]- at ([%d.]+)\n") do
    out[tonumber(n)] = tonumber(at)
  end
  return out
end

--- The most requests that waited for their delayed answers at once (the
-- "waiting N K" lines): more than 1 when a client had several in flight.
function Receiver:most_waiting()
  local most = 0
  for k in (proc.read(self.dir .. "/stderr") or ""):gmatch("waiting %d+ (%d+)\n") do
    most = math.max(most, tonumber(k))
  end
  return most
end

--- Stops the receiver and removes its folder. Idempotent.
Receiver.stop = server.stop

return M

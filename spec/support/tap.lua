--- tap.lua - runs build/tapproxy between the engine and a Docker daemon, and
-- reads back the log streams the daemon sent through it.
--
--   local tap = require "spec.support.tap"
--   local t = tap.start(env.host)     -- t.host: give it to the engine
--   ...
--   for _, r in ipairs(t:logs_responses()) do ... r.lines ... end
--   t:stop()
--
-- The binary is $ENGINE_TOOLS/tapproxy (default build/tapproxy).
local proc = require "spec.support.proc"
local server = require "spec.support.server"

local M = {}

local Tap = {}
Tap.__index = Tap

function M.bin()
  return (os.getenv("ENGINE_TOOLS") or "build") .. "/tapproxy"
end

--- Starts a proxy to the daemon at upstream ("unix://PATH"). sndbuf is the
-- client side's socket send buffer (default 4096 bytes): at most about
-- twice that was sent to a client that closed a stream without reading it.
function M.start(upstream, sndbuf)
  local path = assert(upstream:match("^unix://(.+)$"), "tap: the daemon must be unix://")
  local dir = server.folder("tap")
  local t = setmetatable({ dir = dir, sock = dir .. "/p.sock", rec = dir .. "/rec" }, Tap)
  assert(proc.sh("mkdir " .. proc.quote(t.rec)))
  t.host = "unix://" .. t.sock
  server.run(t, { M.bin(), "--listen", t.sock, "--upstream", path, "--dir", t.rec,
                  "--sndbuf", tostring(sndbuf or 4096) }, nil, "tapproxy",
             function(out) return out:find("ready\n", 1, true) end)
  return t
end

-- The body of a chunked answer from pos on: the body, the position after
-- it, and whether the last chunk came.
local function dechunk(s, pos)
  local parts = {}
  while true do
    local le = s:find("\r\n", pos, true)
    if not le then return table.concat(parts), #s + 1, false end
    local size = tonumber(s:sub(pos, le - 1):match("^%x+"), 16)
    if not size then return table.concat(parts), #s + 1, false end
    if size == 0 then return table.concat(parts), le + 4, true end
    parts[#parts + 1] = s:sub(le + 2, le + 1 + size)
    if le + 1 + size > #s then return table.concat(parts), #s + 1, false end
    pos = le + 2 + size + 2
  end
end

-- The lines of a multiplexed logs body with timestamps: stream (1 stdout,
-- 2 stderr), ts (the text before the first space), text, and `after`: how
-- many bytes of the body follow its frame. An incomplete last frame is left out.
local function demux(body)
  local lines, pos = {}, 1
  while pos + 8 <= #body + 1 do
    local b1, b5, b6, b7, b8 = body:byte(pos), body:byte(pos + 4, pos + 7)
    if not b8 then break end
    local size = ((b5 * 256 + b6) * 256 + b7) * 256 + b8
    if pos + 7 + size > #body then break end
    local payload = body:sub(pos + 8, pos + 7 + size)
    local ts, text = payload:match("^(%S+) (.-)\n?$")
    pos = pos + 8 + size
    lines[#lines + 1] = { stream = b1, ts = ts, text = text, after = #body - pos + 1 }
  end
  return lines
end

--- Every logs answer the daemon sent through the proxy, in connection
-- order: { target = request target, complete = true when the answer ended
-- (its last chunk came), lines = demux's lines }.
function Tap:logs_responses()
  local out = {}
  local ok, names = proc.sh("ls " .. proc.quote(self.rec))
  assert(ok, names)
  local conns = {}
  for n in names:gmatch("(%d+)%.req") do conns[#conns + 1] = tonumber(n) end
  table.sort(conns)
  for _, n in ipairs(conns) do
    local req = proc.read(self.rec .. "/" .. n .. ".req") or ""
    local resp = proc.read(self.rec .. "/" .. n .. ".resp") or ""
    local pos = 1
    for method, target in req:gmatch("(%u+) (%S+) HTTP/1%.1\r\n.-\r\n\r\n") do
      local hend = resp:find("\r\n\r\n", pos, true)
      if not hend then break end
      local head = resp:sub(pos, hend - 1):lower()
      pos = hend + 4
      local body, complete = "", true
      if method == "HEAD" then
        body = ""
      elseif head:find("transfer%-encoding:%s*chunked") then
        body, pos, complete = dechunk(resp, pos)
      else
        local len = tonumber(head:match("content%-length:%s*(%d+)")) or 0
        body = resp:sub(pos, pos + len - 1)
        complete = #body == len
        pos = pos + len
      end
      if target:find("/logs?", 1, true) and head:match("^http/1%.1 200") then
        out[#out + 1] = { target = target, complete = complete, lines = demux(body) }
      end
    end
  end
  return out
end

--- Stops the proxy and removes its folder. Idempotent.
Tap.stop = server.stop

return M

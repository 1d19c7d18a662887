--- server.lua - the process side of the helper servers the specs run
-- (build/fakedocker through fake.lua, build/receiver through receiver.lua).
--
-- A server lives in its own temporary folder, which holds its stdout and
-- stderr; it tells it is ready with a line on stdout.
--
--   local server = require "spec.support.server"
--   local srv = { dir = server.folder("rx") }
--   srv.port = server.run(srv, { "build/receiver", "--dir", srv.dir .. "/req" },
--                         args, "receiver", function(out) return out:match("ready (%d+)") end)
--   server.stop(srv)
local proc = require "spec.support.proc"

local M = {}

--- Makes a fresh folder /tmp/<prefix>.XXXXXX and returns its path. Raises
-- when it cannot.
function M.folder(prefix)
  local ok, dir = proc.sh("mktemp -d /tmp/" .. prefix .. ".XXXXXX")
  assert(ok, dir)
  return (dir:gsub("%s+$", ""))
end

--- Starts argv followed by the strings of extra (may be nil) as srv.p, its
-- stdout and stderr in srv.dir, and waits at most 10 s until ready(stdout
-- text so far) returns a truthy value, which it returns. Raises "<name>
-- exited: <stderr>" when the process ends first, and on timeout; either
-- way the process is stopped and srv.dir removed first (see stop).
function M.run(srv, argv, extra, name, ready)
  local full = {}
  for _, a in ipairs(argv) do full[#full + 1] = a end
  for _, a in ipairs(extra or {}) do full[#full + 1] = a end
  srv.p = proc.spawn { argv = full, stdout = srv.dir .. "/stdout", stderr = srv.dir .. "/stderr" }
  local ok, v = pcall(proc.wait_for, function()
    if not srv.p:running() then
      error(name .. " exited: " .. (proc.read(srv.dir .. "/stderr") or ""), 0)
    end
    return ready(proc.read(srv.dir .. "/stdout") or "")
  end, 10, name .. " to be ready")
  if not ok then
    local err = tostring(v) .. "; stderr: " .. (proc.read(srv.dir .. "/stderr") or "")
    M.stop(srv)
    error(err, 2)
  end
  return v
end

--- Stops srv.p (SIGTERM, SIGKILL after 10 s) and removes srv.dir, also
-- when stopping the process fails (which is raised after). Idempotent.
function M.stop(srv)
  if srv.stopped then return end
  srv.stopped = true
  if srv.p then
    -- the folder goes whatever the process does; an error is raised after
    local ok, err = pcall(function()
      srv.p:signal("TERM")
      if not srv.p:wait(10) then srv.p:kill() end
      srv.p:cleanup()
    end)
    proc.sh("rm -rf " .. proc.quote(srv.dir))
    if not ok then error(err, 2) end
  else
    proc.sh("rm -rf " .. proc.quote(srv.dir))
  end
end

return M

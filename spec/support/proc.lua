--- proc.lua - child processes for the specs, on luaposix.
--
-- A spawned process runs with stdin from /dev/null and its stdout and stderr
-- in files (the paths given, or temporary files this module owns and removes
-- in :cleanup), so a chatty child can never block on a full pipe. Every wait
-- here is bounded: a wait that runs out of time returns nil or raises, it
-- never hangs the spec run.
--
--   local proc = require "spec.support.proc"
--   local p = proc.spawn{ argv = {"sh", "-c", "echo hi"}, env = { X = "1" } }
--   assert.equal(0, p:wait(5))
--   assert.equal("hi\n", p:stdout_text())
--   p:cleanup()

local unistd = require "posix.unistd"
local wait = require "posix.sys.wait"
local signal = require "posix.signal"
local fcntl = require "posix.fcntl"
local ptime = require "posix.time"
local stdlib = require "posix.stdlib"

local M = {}

M.DEFAULT_TIMEOUT = 30

local live = {} -- pid -> process object, for kill_all

local unpack = unpack or table.unpack
local function pack(...) return { n = select("#", ...), ... } end

--- Seconds on the monotonic clock, with sub-second precision.
function M.now()
  local t = ptime.clock_gettime(ptime.CLOCK_MONOTONIC)
  return t.tv_sec + t.tv_nsec / 1e9
end

--- Sleeps s seconds (fractions allowed).
function M.sleep(s)
  local sec = math.floor(s)
  ptime.nanosleep { tv_sec = sec, tv_nsec = math.floor((s - sec) * 1e9) }
end

--- Quotes s for /bin/sh.
function M.quote(s)
  s = tostring(s)
  if s:match("^[%w%-%./_=:,@+]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- Joins an argv array into one quoted shell command.
function M.join(argv)
  local out = {}
  for i, a in ipairs(argv) do out[i] = M.quote(a) end
  return table.concat(out, " ")
end

--- The number of signal `name` ("INT", "SIGINT" or a number). Raises on an
-- unknown name.
function M.signum(name)
  if type(name) == "number" then return name end
  local n = signal[name] or signal["SIG" .. tostring(name)]
  if type(n) ~= "number" then error("unknown signal " .. tostring(name), 2) end
  return n
end

local function open_out(path)
  local fd, err = fcntl.open(path, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC,
                             tonumber("644", 8))
  if not fd then error("cannot open " .. path .. ": " .. tostring(err), 3) end
  return fd
end

local function temp_path()
  local path = os.tmpname() -- creates the file
  return path
end

local Proc = {}
Proc.__index = Proc

--- Starts a child process.
-- opts.argv   array: program (looked up in PATH) and its arguments
-- opts.env    table K = V added to (or replacing in) the inherited
--             environment; V = false removes K
-- opts.stdout path for stdout (truncated), or nil for a temporary file
-- opts.stderr path for stderr, or nil for a temporary file
-- opts.cwd    directory to run in (optional)
-- Returns the process object; raises if the files cannot be opened or fork
-- fails. An exec failure shows as exit code 127 with a message on stderr.
function M.spawn(opts)
  local argv = assert(opts.argv, "proc.spawn: argv is required")
  assert(type(argv[1]) == "string", "proc.spawn: argv[1] must be the program")
  local self = setmetatable({ argv = argv, owned = {} }, Proc)
  self.stdout_path = opts.stdout or temp_path()
  self.stderr_path = opts.stderr or temp_path()
  if not opts.stdout then self.owned[#self.owned + 1] = self.stdout_path end
  if not opts.stderr then self.owned[#self.owned + 1] = self.stderr_path end

  local out = open_out(self.stdout_path)
  local err = open_out(self.stderr_path)
  local nul = assert(fcntl.open("/dev/null", fcntl.O_RDONLY))
  io.stdout:flush()
  io.stderr:flush()
  local pid, ferr = unistd.fork()
  if pid == nil then
    unistd.close(out); unistd.close(err); unistd.close(nul)
    error("fork failed: " .. tostring(ferr), 2)
  end
  if pid == 0 then
    -- child: only async-safe-ish work, and never return into the spec
    unistd.dup2(nul, 0)
    unistd.dup2(out, 1)
    unistd.dup2(err, 2)
    -- LD_PRELOAD only serves the spec runner (a sanitizer runtime under
    -- luajit); children are built with their own, or need none.
    stdlib.setenv("LD_PRELOAD", nil)
    for k, v in pairs(opts.env or {}) do
      if v == false then stdlib.setenv(k, nil) else stdlib.setenv(k, tostring(v)) end
    end
    if opts.cwd then unistd.chdir(opts.cwd) end
    local args = { [0] = argv[1] }
    for i = 2, #argv do args[i - 1] = argv[i] end
    local _, e = unistd.execp(argv[1], args)
    unistd.write(2, "exec " .. argv[1] .. ": " .. tostring(e) .. "\n")
    unistd._exit(127)
  end
  unistd.close(out)
  unistd.close(err)
  unistd.close(nul)
  self._pid = pid
  live[pid] = self
  return self
end

function Proc:pid() return self._pid end

--- Checks once, without blocking, whether the process has ended.
-- Returns its exit code (128 + signal number if a signal ended it) and
-- "exited" or "killed", or nil while it runs.
function Proc:poll()
  if self.code then return self.code, self.how end
  local pid, how, status = wait.wait(self._pid, wait.WNOHANG)
  if pid == nil then
    error("waitpid(" .. self._pid .. "): " .. tostring(how))
  end
  if pid == 0 then return nil end
  if how == "exited" then
    self.code = status
  elseif how == "killed" then
    self.code = 128 + status
  else
    return nil -- stopped or continued: still alive
  end
  self.how = how
  live[self._pid] = nil
  return self.code, self.how
end

function Proc:running() return self:poll() == nil end

--- Waits for the process to end, at most timeout_s seconds (default 30).
-- Returns its exit code and "exited"/"killed" (see poll), or nil if it is
-- still running when the time is up.
function Proc:wait(timeout_s)
  local deadline = M.now() + (timeout_s or M.DEFAULT_TIMEOUT)
  local nap = 0.005
  while true do
    local code, how = self:poll()
    if code then return code, how end
    if M.now() >= deadline then return nil end
    M.sleep(nap)
    if nap < 0.05 then nap = nap * 2 end
  end
end

--- Sends signal name ("INT", "TERM", "SIGKILL", a number) unless the process
-- has already been reaped. Returns true if a signal was sent.
function Proc:signal(name)
  if self:poll() then return false end
  local ok, err = signal.kill(self._pid, M.signum(name))
  if ok == nil then error("kill(" .. self._pid .. "): " .. tostring(err)) end
  return true
end

--- SIGKILLs the process (if it runs) and reaps it. Returns its exit code.
-- Raises if it is still there after 10 seconds.
function Proc:kill()
  self:signal("KILL")
  local code, how = self:wait(10)
  if not code then error("process " .. self._pid .. " survived SIGKILL") end
  return code, how
end

function Proc:stdout_text() return M.read(self.stdout_path) or "" end
function Proc:stderr_text() return M.read(self.stderr_path) or "" end

--- Kills the process if it still runs and removes the temporary files this
-- module made for it. Safe to call twice.
function Proc:cleanup()
  if self._pid and not self.code then self:kill() end
  for _, p in ipairs(self.owned) do os.remove(p) end
  self.owned = {}
end

--- SIGKILLs and reaps every process spawned here that still runs (for an
-- after_each or a test script's teardown). Returns how many there were.
function M.kill_all()
  local n = 0
  for _, p in pairs(live) do
    if p:running() then
      p:kill()
      n = n + 1
    end
  end
  return n
end

--- Calls every function given (nil and false are skipped), in order, each even
-- when an earlier one raised; then raises the first error, if any. For
-- cleanups that must all run: `proc.each(function() rx:stop() end, ...)`.
function M.each(...)
  local first
  for i = 1, select("#", ...) do
    local f = select(i, ...)
    if f then
      local ok, err = pcall(f)
      if not ok and first == nil then first = err end
    end
  end
  if first ~= nil then error(first, 2) end
end

--- Calls fn until it returns a truthy value, which it returns (with any
-- further values). Errors raised by fn propagate. After timeout_s seconds
-- (default 30) raises "timed out after Ns waiting for <what>".
function M.wait_for(fn, timeout_s, what)
  timeout_s = timeout_s or M.DEFAULT_TIMEOUT
  local deadline = M.now() + timeout_s
  local nap = 0.005
  while true do
    local r = pack(fn())
    if r[1] then return unpack(r, 1, r.n) end
    if M.now() >= deadline then
      error(string.format("timed out after %gs waiting for %s", timeout_s,
                          what or "a condition"), 2)
    end
    M.sleep(nap)
    if nap < 0.05 then nap = nap * 2 end
  end
end

--- The whole content of the file at path, or nil and a message if it cannot
-- be read.
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

--- The complete lines of the file at path, without their newlines; a last
-- line with no newline yet (still being written) is left out. A missing file
-- has no lines.
function M.lines(path)
  local s = M.read(path) or ""
  local out = {}
  for line in s:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

local MARK = "__proc_sh_status="

--- Runs cmd with /bin/sh, stderr merged into stdout, for at most timeout_s
-- seconds (default 60; then it is killed and the status is 124 or 137).
-- Returns ok (status == 0), the output, and the exit status.
function M.sh(cmd, timeout_s)
  local full = string.format("LD_PRELOAD= timeout -k 5 %g sh -c %s </dev/null 2>&1; printf '\\n%s%%d' $?",
                             timeout_s or 60, M.quote(cmd), MARK)
  local f = assert(io.popen(full, "r"))
  local out = f:read("*a")
  f:close()
  local body, status = out:match("^(.*)\n" .. MARK .. "(%d+)$")
  if not body then return false, out, -1 end
  status = tonumber(status)
  return status == 0, body, status
end

--- A process's child processes now (from /proc/PID/task/*/children).
function M.children(pid)
  local out = {}
  local ok, tasks = pcall(require("posix.dirent").dir, "/proc/" .. pid .. "/task")
  for _, t in ipairs(ok and tasks or {}) do
    for c in (M.read("/proc/" .. pid .. "/task/" .. t .. "/children") or ""):gmatch("%d+") do
      out[#out + 1] = tonumber(c)
    end
  end
  return out
end

--- A process and its descendants now (at most 64), the process first.
function M.family(pid)
  local out, i = { pid }, 1
  while i <= #out and #out < 64 do
    for _, c in ipairs(M.children(out[i])) do out[#out + 1] = c end
    i = i + 1
  end
  return out
end

return M

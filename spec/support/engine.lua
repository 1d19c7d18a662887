--- engine.lua - runs the engine binary for the integration specs.
--
-- The binary is $ENGINE_BIN, else build/engine. Each start gets a temporary
-- folder holding the pipeline file and the engine's stdout and stderr.
--
--   local engine = require "spec.support.engine"
--   local e = engine.start{ pipeline = [[
--     return { select = { include = { name = { "x-*" } } },
--              batch = { flush_interval = 0.2 },
--              outputs = { { type = "stdout", format = "json" } } }
--   ]], docker_host = env.host }
--   local recs = e:wait_records(3, 20)
--   assert.equal(0, e:stop())
--   e:cleanup()
--
-- The engine gets DOCKER_HOST = docker_host in its environment, and the text
-- {{DOCKER_HOST}} in a pipeline source is replaced by docker_host, so a
-- pipeline can name the host either way.

local cjson = require "cjson"
local luassert = require "luassert"
local stdlib = require "posix.stdlib"
local proc = require "spec.support.proc"

local M = {}

--- The path of the engine binary.
function M.bin()
  local b = os.getenv("ENGINE_BIN")
  if b and b ~= "" then return b end
  return "build/engine"
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function is_source(s)
  if s:find("\n") or s:find("^%s*return") then return true end
  local f = io.open(s, "rb")
  if f then f:close() end
  return f == nil
end

local Engine = {}
Engine.__index = Engine

--- Starts `ENGINE_BIN run [args...] FILE`.
-- o.pipeline     Lua source (a string holding a newline or starting with
--                `return`), or the path of an existing file (used as is)
-- o.docker_host  the daemon's URL (optional)
-- o.args         array of extra arguments, placed between `run` and FILE
-- o.env          table K = V for the engine's environment (false removes K)
-- o.command      "run" (default) or another subcommand
-- o.wrap         array of a command and its arguments that runs the engine
--                (e.g. { "prlimit", "--nofile=200:200", "--" }), optional
-- Returns the running engine; raises if the files cannot be written.
function M.start(o)
  assert(type(o) == "table" and type(o.pipeline) == "string",
         "engine.start: pipeline (source or path) is required")
  local dir = assert(stdlib.mkdtemp("/tmp/engine-spec-XXXXXX"))
  local self = setmetatable({ dir = dir }, Engine)
  if is_source(o.pipeline) then
    self.pipeline_path = dir .. "/pipeline.lua"
    local src = o.pipeline
    if o.docker_host then
      src = src:gsub("{{DOCKER_HOST}}", (o.docker_host:gsub("%%", "%%%%")))
    end
    write_file(self.pipeline_path, src)
  else
    self.pipeline_path = o.pipeline
  end
  local env = {}
  for k, v in pairs(o.env or {}) do env[k] = v end
  if o.docker_host and env.DOCKER_HOST == nil then env.DOCKER_HOST = o.docker_host end
  local argv = {}
  for _, a in ipairs(o.wrap or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = M.bin()
  argv[#argv + 1] = o.command or "run"
  -- each run saves its cursors in its own folder, unless the spec says
  -- where (o.state_dir; false keeps the pipeline's own setting)
  if o.state_dir ~= false and (o.command or "run") == "run" then
    argv[#argv + 1] = "--state-dir"
    argv[#argv + 1] = o.state_dir or (dir .. "/state")
  end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = self.pipeline_path
  self.argv = argv
  self.proc = proc.spawn {
    argv = argv, env = env,
    stdout = dir .. "/stdout", stderr = dir .. "/stderr",
  }
  return self
end

--- Runs `ENGINE_BIN check FILE` (or another short command, o.command) to
-- completion, bounded by o.timeout (default 30 s). Takes the options of
-- start. Returns exit code, stdout text, stderr text; raises on timeout.
function M.run_once(o)
  local opts = {}
  for k, v in pairs(o) do opts[k] = v end
  opts.command = o.command or "check"
  local e = M.start(opts)
  local code = e:wait(o.timeout or 30)
  local out, err = proc.read(e.dir .. "/stdout") or "", e:stderr_text()
  e:cleanup()
  if not code then
    error("engine " .. opts.command .. " did not finish in time; stderr: " .. err, 2)
  end
  return code, out, err
end

function Engine:pid() return self.proc:pid() end
function Engine:running() return self.proc:running() end

--- Waits at most timeout_s for the engine to exit on its own. Returns its
-- exit code (128 + signal if killed), or nil if it still runs.
function Engine:wait(timeout_s) return self.proc:wait(timeout_s) end

--- Sends a signal ("INT", "TERM", "HUP", ...).
function Engine:signal(name) return self.proc:signal(name) end

--- Complete lines the engine has written to stdout so far.
function Engine:stdout_lines() return proc.lines(self.dir .. "/stdout") end

--- Everything the engine has written to stderr so far.
function Engine:stderr_text() return proc.read(self.dir .. "/stderr") or "" end

--- Each complete stdout line decoded as a JSON object, in order. Raises,
-- naming the line, if one is not a JSON object.
function Engine:json_records()
  local recs = {}
  for i, line in ipairs(self:stdout_lines()) do
    local ok, v = pcall(cjson.decode, line)
    if not ok or type(v) ~= "table" then
      error(string.format("engine stdout line %d is not a JSON object: %q", i, line), 2)
    end
    recs[#recs + 1] = v
  end
  return recs
end

--- Waits (bounded: timeout_s, default 20) until the JSON records on stdout
-- number at least `want` (a number), or until want(records) is truthy (a
-- function). Returns the records. Raises on timeout, or at once if the
-- engine exits first, with its stderr in the message.
function Engine:wait_records(want, timeout_s)
  local pred = want
  if type(want) == "number" then
    pred = function(recs) return #recs >= want end
  end
  local what = type(want) == "number" and (want .. " records") or "matching records"
  local recs
  local ok, err = pcall(proc.wait_for, function()
    recs = self:json_records()
    if pred(recs) then return true end
    local code = self.proc:poll()
    if code then
      error(string.format("engine exited (code %d) while waiting for %s", code, what), 0)
    end
    return false
  end, timeout_s or 20, what)
  if not ok then
    error(string.format("%s; %d records so far; engine stderr:\n%s",
                        tostring(err), recs and #recs or 0, self:stderr_text()), 2)
  end
  return recs
end

--- Stops the engine: sends signal (default "INT") and waits at most
-- timeout_s (default 15). Returns the exit code. If it has not exited by
-- then it is SIGKILLed and an error is raised with its stderr.
function Engine:stop(signal, timeout_s)
  signal = signal or "INT"
  timeout_s = timeout_s or 15
  self.proc:signal(signal)
  local code = self.proc:wait(timeout_s)
  if code then return code end
  self.proc:kill()
  error(string.format("engine did not exit within %gs after SIG%s; stderr:\n%s",
                      timeout_s, signal, self:stderr_text()), 2)
end

--- Stops the engine with SIGTERM (waiting at most 10 s, see stop) and
-- asserts that it exited with code 0 in less than bound_s seconds.
function Engine:stop_in_bound(bound_s)
  local t0 = proc.now()
  luassert.equal(0, self:stop("TERM", 10))
  local took = proc.now() - t0
  luassert.is_true(took < bound_s, string.format("stop took %.2f s", took))
end

--- Kills the engine if it still runs and removes its temporary folder
-- (kept when ENGINE_SPEC_KEEP is set, for a look after a failure).
-- Safe to call twice.
function Engine:cleanup()
  if self.proc then self.proc:cleanup() end
  if self.dir and not os.getenv("ENGINE_SPEC_KEEP") then
    proc.sh("rm -rf " .. proc.quote(self.dir))
    self.dir_removed = true
  end
end

--- Ends what a spec started: cleans up the engine e (see cleanup), then
-- stops each helper server given (fake.lua, receiver.lua); any of them may
-- be nil. Every one is tried even when an earlier one raises; the first
-- error is raised after. Returns nothing, so that
-- `e, srv = engine.release(e, srv)` in an after_each also forgets them.
function M.release(e, ...)
  local steps = { e and function() e:cleanup() end or false }
  for i = 1, select("#", ...) do
    local srv = select(i, ...)
    steps[#steps + 1] = srv and function() srv:stop() end or false
  end
  proc.each(unpack(steps))
end

return M

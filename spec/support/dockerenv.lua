--- dockerenv.lua - the private Docker daemon the integration specs use.
--
-- The test script starts one daemon for the whole run
-- (scripts/test/dockerd.sh start DIR) and exports the URL it prints as
-- ENGINE_TEST_DOCKER_HOST. Containers run the image engine-test:latest
-- (busybox) and always with --network none. The client is always
-- /usr/bin/docker, with -H, whatever DOCKER_HOST or PATH say.
--
--   local dockerenv = require "spec.support.dockerenv"
--   local env = dockerenv.get()
--   local name = dockerenv.unique("echo")
--   local id = env:run{ name = name, cmd = "echo hello" }
--   ...
--   env:cleanup("echo")

local proc = require "spec.support.proc"

local M = {}

M.IMAGE = "engine-test:latest"
M.CLIENT = "/usr/bin/docker"

local Env = {}
Env.__index = Env

--- The daemon for this run. Raises if ENGINE_TEST_DOCKER_HOST is not set.
function M.get()
  local host = os.getenv("ENGINE_TEST_DOCKER_HOST")
  if not host or host == "" then
    error("ENGINE_TEST_DOCKER_HOST is not set: start a daemon with " ..
          "`scripts/test/dockerd.sh start DIR` and export the URL it prints", 2)
  end
  return setmetatable({ host = host }, Env)
end

--- The private Podman service of this run, through the same interface:
-- ENGINE_TEST_PODMAN_HOST (its unix:// URL) and ENGINE_TEST_PODMAN_CLIENT
-- (the podman command line with its options, `scripts/test/podman.sh env DIR`).
-- Its containers run with the options Podman needs on these machines
-- (runc, lowered rlimits). Raises if either is not set.
function M.podman()
  local host, client = os.getenv("ENGINE_TEST_PODMAN_HOST"), os.getenv("ENGINE_TEST_PODMAN_CLIENT")
  if not host or host == "" or not client or client == "" then
    error("ENGINE_TEST_PODMAN_HOST or ENGINE_TEST_PODMAN_CLIENT is not set: start a service " ..
          "with `scripts/test/podman.sh start DIR` and export its URL and `scripts/test/podman.sh env DIR`", 2)
  end
  return setmetatable({ host = host, client = client,
    run_args = { "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024" },
  }, Env)
end

local counter = 0

--- A container name unique to this process: prefix-<pid>-<n>. Names made
-- from one prefix all start with it, for cleanup(prefix).
function M.unique(prefix)
  assert(prefix and prefix:match("^[%w][%w_.-]*$"), "dockerenv.unique: bad prefix")
  counter = counter + 1
  return string.format("%s-%d-%d", prefix, require("posix.unistd").getpid(), counter)
end

--- Runs the client with args (an array, each quoted; or a string given to
-- the shell as is), bounded by timeout_s (default 60).
-- Returns ok, output (stdout and stderr), exit status.
function Env:docker(args, timeout_s)
  if type(args) == "table" then args = proc.join(args) end
  local client = self.client or proc.join { M.CLIENT, "-H", self.host }
  return proc.sh(client .. " " .. args, timeout_s)
end

--- Like docker, but raises with the output on failure; returns the output
-- without its trailing newline.
function Env:docker_ok(args, timeout_s)
  local ok, out, status = self:docker(args, timeout_s)
  if not ok then
    local shown = type(args) == "table" and proc.join(args) or args
    error(string.format("docker %s failed (status %d): %s", shown, status, out), 2)
  end
  return (out:gsub("\n$", ""))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

--- Runs a container of the test image with --network none.
-- o.name    container name (optional)
-- o.cmd     a string (run by sh -c) or an argv array (optional)
-- o.tty     true: allocate a TTY (-t), the log is then one raw stream
-- o.labels  table K = V
-- o.env     table K = V
-- o.args    array of further `docker run` options
-- o.detach  default true; false runs it to completion
-- Returns the container id (and, with detach = false, its output).
-- Raises if docker fails (for detach = false: if the container exits non-zero).
function Env:run(o)
  o = o or {}
  local argv = { "run", "--network", "none" }
  for _, a in ipairs(self.run_args or {}) do argv[#argv + 1] = a end
  local cidfile
  if o.detach == false then
    cidfile = os.tmpname()
    os.remove(cidfile) -- docker refuses an existing cidfile
    argv[#argv + 1] = "--cidfile"
    argv[#argv + 1] = cidfile
  else
    argv[#argv + 1] = "-d"
  end
  if o.name then argv[#argv + 1] = "--name"; argv[#argv + 1] = o.name end
  if o.tty then argv[#argv + 1] = "-t" end
  for _, k in ipairs(sorted_keys(o.labels)) do
    argv[#argv + 1] = "--label"; argv[#argv + 1] = k .. "=" .. tostring(o.labels[k])
  end
  for _, k in ipairs(sorted_keys(o.env)) do
    argv[#argv + 1] = "-e"; argv[#argv + 1] = k .. "=" .. tostring(o.env[k])
  end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = M.IMAGE
  if type(o.cmd) == "string" then
    argv[#argv + 1] = "sh"; argv[#argv + 1] = "-c"; argv[#argv + 1] = o.cmd
  elseif type(o.cmd) == "table" then
    for _, a in ipairs(o.cmd) do argv[#argv + 1] = a end
  end
  if not cidfile then
    local out = self:docker_ok(argv)
    -- the id is a line of its own; the client may add warnings after it
    -- (such as "error waiting for container: context canceled")
    for line in out:gmatch("[^\n]+") do
      if line:match("^%x+$") and #line == 64 then return line end
    end
    error("docker run printed no id: " .. out)
  end
  local ok, out, status = self:docker(argv)
  local id = (proc.read(cidfile) or ""):match("%x+")
  os.remove(cidfile)
  if not ok then
    error(string.format("docker run failed (status %d): %s", status, out), 2)
  end
  return id, out
end

--- Removes a container (running or not) and its volumes. Returns true
-- unless docker failed (a container that does not exist is no failure).
function Env:rm(name)
  return (self:docker { "rm", "-f", "-v", name })
end

--- Names of all containers (running or not).
function Env:names()
  local out = self:docker_ok { "ps", "-a", "--format", "{{.Names}}" }
  local names = {}
  for n in out:gmatch("[^\n]+") do names[#names + 1] = n end
  return names
end

--- Removes every container whose name starts with prefix. Returns how many.
function Env:cleanup(prefix)
  assert(prefix and prefix ~= "", "dockerenv cleanup: prefix required")
  local victims = {}
  for _, n in ipairs(self:names()) do
    if n:sub(1, #prefix) == prefix then victims[#victims + 1] = n end
  end
  if #victims == 0 then return 0 end
  local argv = { "rm", "-f", "-v" }
  for _, n in ipairs(victims) do argv[#argv + 1] = n end
  self:docker_ok(argv)
  return #victims
end

--- docker inspect -f format name, trimmed; raises if it fails.
function Env:inspect(name, format)
  return self:docker_ok { "inspect", "-f", format, name }
end

--- Waits (bounded, default 30 s) until the container has ended. Returns its
-- exit code.
function Env:wait_exit(name, timeout_s)
  proc.wait_for(function()
    return self:inspect(name, "{{.State.Status}}") == "exited"
  end, timeout_s or 30, "container " .. name .. " to exit")
  return tonumber(self:inspect(name, "{{.State.ExitCode}}"))
end

return M

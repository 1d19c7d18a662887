-- Malformed input from outside, end to end: a socket the engine may not
-- open, a daemon that answers garbage, and a real container whose output
-- is binary noise. Each gets a clear message; where the engine can go on,
-- it goes on and delivers every line.
local dockerenv = require "spec.support.dockerenv"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"
local stdlib = require "posix.stdlib"

local REPLACEMENT = "\239\191\189" -- U+FFFD

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Runs `engine run` on a pipeline naming host, as prefix (an argv array put
-- in front of the engine, or nil); waits (bounded) for it to exit. Returns
-- the exit code and stderr.
local function run_engine(host, prefix)
  local dir = assert(stdlib.mkdtemp("/tmp/engine-bad-XXXXXX"))
  local path = dir .. "/pipeline.lua"
  write_file(path, string.format("return { docker = { host = %q } }\n", host))
  local argv = {}
  for _, a in ipairs(prefix or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = engine.bin()
  argv[#argv + 1] = "run"
  argv[#argv + 1] = path
  local p = proc.spawn { argv = argv, env = { DOCKER_HOST = false } }
  local code = p:wait(30)
  local err = p:stderr_text()
  p:cleanup()
  proc.sh("rm -rf " .. proc.quote(dir))
  assert(code, "the engine did not exit within 30 s; stderr:\n" .. err)
  return code, err
end

-- A server on a unix socket that reads each request and answers with
-- `mode`: "bytes" (no HTTP at all) or "http" (a 200 answer whose JSON body
-- is garbage), then closes the connection.
local SERVER = [[
local S = require "posix.sys.socket"
local unistd = require "posix.unistd"
local path, mode = arg[1], arg[2]
local fd = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM, 0))
assert(S.bind(fd, { family = S.AF_UNIX, path = path }))
assert(S.listen(fd, 16))
io.stdout:write("ready\n"); io.stdout:flush()
local noise = "\0\1\2\255\254 garbage \r\n\r\n\27[0m" .. string.rep("\128", 40) .. "\n"
while true do
  local c = S.accept(fd)
  if c then
    S.recv(c, 65536)
    if mode == "http" then
      local body = "\255\0{not json" .. noise
      S.send(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " ..
                #body .. "\r\nConnection: close\r\n\r\n" .. body)
    else
      S.send(c, noise)
    end
    unistd.close(c)
  end
end
]]

local function start_garbage(mode)
  local dir = assert(stdlib.mkdtemp("/tmp/engine-garbage-XXXXXX"))
  write_file(dir .. "/server.lua", SERVER)
  local srv = { dir = dir, host = "unix://" .. dir .. "/docker.sock" }
  srv.p = proc.spawn { argv = { "luajit", dir .. "/server.lua", dir .. "/docker.sock", mode } }
  proc.wait_for(function()
    if not srv.p:running() then error("garbage server exited: " .. srv.p:stderr_text()) end
    return srv.p:stdout_text():find("ready\n", 1, true)
  end, 10, "the garbage server")
  function srv.stop()
    srv.p:kill()
    srv.p:cleanup()
    proc.sh("rm -rf " .. proc.quote(dir))
  end
  return srv
end

describe("a Docker socket and daemon that cannot be used #sanitize", function()
  local srv
  after_each(function()
    if srv then srv:stop() end
    srv = nil
  end)

  -- The socket belongs to another user, mode 0600; the engine runs without
  -- capabilities (setpriv drops them all), so the kernel refuses the
  -- connect with EACCES exactly as it refuses an unprivileged user, while
  -- the engine's own files stay readable wherever the checkout lives.
  it("says that the socket's permissions refuse it and exits 1", function()
    srv = fake.start { "--containers", "1" }
    assert(proc.sh("chown nobody:nogroup " .. proc.quote(srv.sock) ..
                   " && chmod 600 " .. proc.quote(srv.sock)))
    local code, err = run_engine(srv.host, { "setpriv", "--bounding-set=-all", "--inh-caps=-all" })
    assert.equal(1, code)
    assert.matches("cannot connect to " .. srv.sock .. ": Permission denied", err, 1, true)
    assert.matches("write permission on the socket file", err, 1, true)
  end)

  it("says that there is no socket at the path and exits 1", function()
    local code, err = run_engine("unix:///tmp/engine-no-such-dir/docker.sock")
    assert.equal(1, code)
    assert.matches("cannot connect to /tmp/engine-no-such-dir/docker.sock: No such file or directory",
                   err, 1, true)
  end)

  it("says that a server answering bytes that are not HTTP is no Docker daemon, and exits 1", function()
    srv = start_garbage("bytes")
    local code, err = run_engine(srv.host)
    assert.equal(1, code)
    assert.matches("cannot reach the Docker daemon at " .. srv.host .. ": the answer is not HTTP",
                   err, 1, true)
  end)

  it("says that a daemon answering HTTP with garbage JSON cannot be used, and exits 1", function()
    srv = start_garbage("http")
    local code, err = run_engine(srv.host)
    assert.equal(1, code)
    assert.matches("cannot list containers at " .. srv.host ..
                   ": the daemon's answer is not valid JSON", err, 1, true)
  end)
end)

-- Every byte value but '\n', as a printf %b argument (\0NNN escapes).
local function all_bytes_escaped()
  local t = {}
  for b = 0, 255 do
    if b ~= 10 then t[#t + 1] = string.format("\\0%03o", b) end
  end
  return table.concat(t)
end

-- The same bytes as the engine must deliver them: ASCII as it is, and
-- every byte from 0x80 on a lone invalid sequence, so one U+FFFD each.
local function all_bytes_delivered()
  local t = {}
  for b = 0, 127 do
    if b ~= 10 then t[#t + 1] = string.char(b) end
  end
  return table.concat(t) .. REPLACEMENT:rep(128)
end

describe("a container whose output is binary noise #sanitize", function()
  local env, prefix, e
  before_each(function()
    env = dockerenv.get()
    prefix = dockerenv.unique("badinput")
  end)
  after_each(function()
    local de = e
    e = nil
    proc.each(function() if de then de:cleanup() end end,
              function() env:cleanup(prefix) end)
  end)

  -- The `local` log driver keeps the bytes as they were written (json-file
  -- would already have replaced invalid UTF-8 inside the daemon), so the
  -- engine's own decoding and encoding get the raw noise.
  it("delivers every line as valid JSON, invalid UTF-8 as U+FFFD, NUL escaped, and keeps running", function()
    e = engine.start { docker_host = env.host, pipeline = string.format([[
return {
  docker = { host = %q },
  select = { include = { name = { %q } } },
  batch = { flush_interval = 0.1 },
}]], env.host, prefix .. "*") }
    local noisy = prefix .. "-noise"
    env:run { name = noisy, args = { "--log-driver", "local" }, env = { B = all_bytes_escaped() },
              cmd = 'printf "A:%b\\n" "$B"; printf "B:\\rx\\r\\n"; ' ..
                    'printf "C:\\303\\050 \\342\\202 \\360\\237\\230 \\377\\376 ok \\342\\202\\254\\n"; ' ..
                    'printf "D:\\000\\000a\\000\\n"; printf "END\\n"' }
    local function lines_of(recs, name)
      local out = {}
      for _, r in ipairs(recs) do
        if r.name == name then out[#out + 1] = r.line end
      end
      return out
    end
    -- json_records raises if any stdout line is not a JSON object.
    local recs = e:wait_records(function(r) return #lines_of(r, noisy) >= 5 end, 30)
    assert.same({
      "A:" .. all_bytes_delivered(),
      "B:\rx",
      "C:" .. REPLACEMENT .. "( " .. REPLACEMENT .. " " .. REPLACEMENT .. " " ..
        REPLACEMENT .. REPLACEMENT .. " ok \226\130\172",
      "D:\0\0a\0",
      "END",
    }, lines_of(recs, noisy))
    -- The raw output holds no byte that JSON forbids unescaped.
    local raw = proc.read(e.dir .. "/stdout")
    assert.is_nil(raw:find("[%z\1-\9\11-\31]"))
    assert.is_true(e:running())

    local after = prefix .. "-after"
    env:run { name = after, cmd = "echo alive" }
    recs = e:wait_records(function(r) return #lines_of(r, after) >= 1 end, 30)
    assert.same({ "alive" }, lines_of(recs, after))
    assert.equal(0, e:stop())
  end)
end)

-- deps_spec.lua - what scripts/deps.sh installs for each group, on a
-- simulated fresh Debian machine: dpkg-query reports nothing installed
-- until the stub apt-get "installs" it, id -u says root, and apt-get
-- records its arguments. No package is installed for real.
local proc = require("spec.support.proc")
local fake = require("spec.support.fake")

-- What building and running need; nothing else may come with `make run`.
local BUILD = { "build-essential", "pkg-config", "libluajit-5.1-dev", "luajit",
                "libcurl4-openssl-dev", "libcjson-dev", "libuv1-dev", "zlib1g-dev", "libzstd-dev",
                "libmosquitto-dev", "libnats-dev" }
local DAEMON = { "docker.io", "busybox-static" }

local function set(...)
  local s = {}
  for _, list in ipairs({ ... }) do
    for _, p in ipairs(list) do s[p] = true end
  end
  return s
end

local function write(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  if mode then assert(os.execute("chmod " .. mode .. " " .. path)) end
end

-- The packages of scripts/deps.d/*.list (test tools and servers).
local function test_lists()
  local out = {}
  for path in io.popen("ls scripts/deps.d/*.list"):lines() do
    for line in io.lines(path) do
      local p = line:gsub("#.*", ""):match("^%s*(%S+)")
      if p then out[#out + 1] = p end
    end
  end
  assert.is_true(#out > 0)
  return out
end

-- Runs scripts/deps.sh ARGS on the simulated machine. Returns the exit
-- code, stderr, and the list of apt-get install calls (each an array of
-- package names).
local function fresh(args, docker_host)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/bin"))
  local db = dir .. "/installed"
  write(db, "")
  write(dir .. "/bin/dpkg-query",
    '#!/bin/sh\neval p=\\${$#}\ngrep -qx "$p" ' .. db .. ' && echo "install ok installed" || exit 1\n', "755")
  write(dir .. "/bin/id", "#!/bin/sh\necho 0\n", "755")
  write(dir .. "/bin/apt-get",
    '#!/bin/sh\necho "$*" >>' .. dir .. '/calls\n' ..
    '[ "$1" = install ] || exit 0\nfor p in "$@"; do case "$p" in -*|install) ;; *) echo "$p" >>' .. db .. ';; esac; done\n',
    "755")
  local argv = { "sh", "scripts/deps.sh" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.spawn({ argv = argv, env = { PATH = dir .. "/bin:" .. os.getenv("PATH"),
                                               DOCKER_HOST = docker_host, LD_PRELOAD = false } })
  local code = p:wait(60)
  local err = p:stderr_text()
  p:cleanup()
  local installs = {}
  for line in (proc.read(dir .. "/calls") or ""):gmatch("[^\n]+") do
    if line:match("^install ") then
      local pkgs = {}
      for w in line:gmatch("%S+") do
        if w ~= "install" and not w:match("^%-") then pkgs[#pkgs + 1] = w end
      end
      installs[#installs + 1] = pkgs
    end
  end
  os.execute("rm -rf " .. dir)
  return code, err, installs
end

local function all_of(installs)
  local s = {}
  for _, call in ipairs(installs) do
    for _, p in ipairs(call) do s[p] = true end
  end
  return s
end

describe("scripts/deps.sh", function()
  local srv
  setup(function() srv = fake.start({ "--containers", "0" }) end)
  teardown(function() if srv then srv:stop() end end)

  it("run installs only build and run packages when a daemon answers", function()
    local code, err, installs = fresh({ "run" }, srv.host)
    assert.equal(0, code, err)
    assert.same(set(BUILD, { "curl" }), all_of(installs))
    -- One apt-get install: nothing is left for the step after the probe.
    assert.equal(1, #installs)
  end)

  it("run adds docker.io and the demo image's busybox only when no daemon answers", function()
    local code, err, installs = fresh({ "run" }, "unix:///nonexistent/docker.sock")
    assert.equal(0, code, err)
    assert.same(set(BUILD, { "curl" }, DAEMON), all_of(installs))
    -- curl comes first: it is what asks whether a daemon answers.
    assert.equal(2, #installs)
    assert.same(DAEMON, installs[2])
  end)

  it("run never installs a test tool or a server", function()
    local _, _, installs = fresh({ "run" }, "unix:///nonexistent/docker.sock")
    local got = all_of(installs)
    for _, p in ipairs(test_lists()) do assert.is_nil(got[p], p) end
    for _, p in ipairs({ "lua-busted", "clickhouse-server", "prometheus", "rsyslog" }) do
      assert.is_nil(got[p], p)
    end
  end)

  it("build installs only the build packages", function()
    local code, err, installs = fresh({ "build" }, srv.host)
    assert.equal(0, code, err)
    assert.same(set(BUILD), all_of(installs))
  end)

  it("test installs what make test needs, as before", function()
    local code, err, installs = fresh({ "test" }, srv.host)
    assert.equal(0, code, err)
    assert.same(set(BUILD, DAEMON, { "curl", "lua-busted", "lua-posix", "lua-cjson" }, test_lists()),
                all_of(installs))
  end)

  it("--list run prints the same packages and installs nothing", function()
    local code, err, installs = fresh({ "--list", "run" }, srv.host)
    assert.equal(0, code, err)
    assert.same({}, installs)
    local ok, out = proc.sh("DOCKER_HOST=" .. proc.quote(srv.host) .. " sh scripts/deps.sh --list run")
    assert.is_true(ok)
    local listed = {}
    for p in out:gmatch("%S+") do listed[#listed + 1] = p end
    assert.same(set(BUILD, { "curl" }), set(listed))
  end)

  it("make run asks for the run group and make test for the test group", function()
    local ok, out = proc.sh("make -n run")
    assert.is_true(ok, out)
    assert.truthy(out:find("scripts/deps.sh run", 1, true), out)
    assert.falsy(out:find("scripts/deps.sh test", 1, true), out)
    ok, out = proc.sh("make -n test")
    assert.is_true(ok, out)
    assert.truthy(out:find("scripts/deps.sh test", 1, true), out)
  end)
end)

-- fakedocker_spec.lua - the fake Docker API server (build/fakedocker) behaves
-- like the parts of the Docker Engine API the engine relies on.
--
-- FAKEDOCKER names the binary to test (default build/fakedocker), e.g. an
-- AddressSanitizer build.

local cjson = require "cjson"
local proc = require "spec.support.proc"

local BIN = os.getenv("FAKEDOCKER") or "build/fakedocker"

local function tmpdir()
  local f = assert(io.popen("mktemp -d /tmp/fakedocker-spec.XXXXXX"))
  local dir = f:read("*l")
  f:close()
  assert(dir and dir ~= "", "mktemp failed")
  return dir
end

-- Starts the server with the extra arguments and waits for its "ready".
local function start(args)
  local dir = tmpdir()
  local srv = { dir = dir, sock = dir .. "/docker.sock", out = dir .. "/stdout" }
  local argv = { BIN, "--socket", srv.sock }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  srv.p = proc.spawn { argv = argv, stdout = srv.out, stderr = dir .. "/stderr" }
  proc.wait_for(function()
    if not srv.p:running() then
      error("fakedocker exited: " .. (proc.read(dir .. "/stderr") or ""))
    end
    return (proc.read(srv.out) or ""):find("ready\n", 1, true)
  end, 10, "fakedocker to print ready")
  return srv
end

-- Sends SIGTERM and returns the exit code (nil if it had to be killed) and
-- what the server wrote on stderr.
local function stop(srv)
  srv.p:signal("TERM")
  local code = srv.p:wait(10)
  srv.p:cleanup()
  local err = proc.read(srv.dir .. "/stderr") or ""
  os.execute("rm -rf " .. proc.quote(srv.dir))
  return code, err
end

-- One curl request. Returns { status, rc (curl's exit code), headers
-- (lower-case names), body }.
local function http(srv, path, extra)
  local hfile, bfile = srv.dir .. "/headers", srv.dir .. "/body"
  os.remove(hfile)
  os.remove(bfile)
  local argv = { "curl", "-s", "--max-time", "20", "--unix-socket", srv.sock,
                 "-D", hfile, "-o", bfile, "-w", "%{http_code}" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = "http://localhost" .. path
  local _, out, rc = proc.sh(proc.join(argv), 30)
  local headers = {}
  for line in (proc.read(hfile) or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  return { status = tonumber(out:match("(%d%d%d)$")), rc = rc, headers = headers,
           body = proc.read(bfile) or "" }
end

local function post(srv, path)
  return http(srv, path, { "-X", "POST" })
end

local function json(srv, path)
  local r = http(srv, path)
  return r.status, cjson.decode(r.body)
end

-- Splits a multiplexed body into frames; a trailing partial frame is
-- returned as the second value.
local function frames(body)
  local out, i = {}, 1
  while #body - i + 1 >= 8 do
    local b1, b2, b3, b4 = body:byte(i + 4, i + 7)
    local size = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    if #body - i + 1 < 8 + size then break end
    out[#out + 1] = { type = body:byte(i), size = size, data = body:sub(i + 8, i + 7 + size) }
    i = i + 8 + size
  end
  return out, body:sub(i)
end

local TS = "(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.(%d%d%d%d%d%d%d%d%d)Z"

-- "<ts> <text>\n" -> ts, text (nil when the frame is not such a line).
local function split_line(data)
  local ts, text = data:match("^(" .. TS:gsub("[()]", "") .. ") (.-)\n$")
  return ts, text
end

-- An RFC3339Nano UTC timestamp as Docker's "SECONDS.NANOSECONDS" form.
local function since_of(ts)
  local y, mo, d, h, mi, s, frac = ts:match(TS)
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era_day = (153 * ((mo + 9) % 12) + 2) / 5
  local days = y * 365 + math.floor(y / 4) - math.floor(y / 100) + math.floor(y / 400)
               + math.floor(era_day) + d - 1 - 719468
  local secs = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
  return string.format("%d.%s", secs, frac)
end

local function urlencode(s)
  return (s:gsub("[^%w%-_.~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

local LOGS = "/v1.41/containers/c0/logs?stdout=1&stderr=1&timestamps=1"

describe("fakedocker", function()
  local srv

  -- Every server must stop cleanly (under ASan, with no leak reported).
  after_each(function()
    if not srv then return end
    local code, err = stop(srv)
    srv = nil
    assert.equals(0, code, "fakedocker did not exit cleanly: " .. err)
  end)

  it("answers _ping with Docker's headers, with or without a version prefix", function()
    srv = start()
    for _, path in ipairs { "/_ping", "/v1.41/_ping" } do
      local r = http(srv, path)
      assert.equals(200, r.status)
      assert.equals("OK", r.body)
      assert.equals("1.41", r.headers["api-version"])
      assert.equals("linux", r.headers["ostype"])
      assert.equals("Docker/20.10-fake (linux)", r.headers["server"])
    end
  end)

  it("rejects an API version above the advertised one with Docker's message", function()
    srv = start { "--api-version", "1.43" }
    local r = http(srv, "/v1.44/containers/json")
    assert.equals(400, r.status)
    assert.same({ message = "client version 1.44 is too new. Maximum supported API version is 1.43" },
                cjson.decode(r.body))
    assert.equals("1.43", http(srv, "/_ping").headers["api-version"])
    assert.equals(200, http(srv, "/v1.43/containers/json").status)
  end)

  it("keeps the connection alive between requests", function()
    srv = start()
    local _, out = proc.sh(proc.join { "curl", "-sv", "--max-time", "20", "--unix-socket", srv.sock,
                                       "http://localhost/_ping", "http://localhost/_ping" }, 30)
    assert.truthy(out:find("Re-using existing connection", 1, true))
  end)

  it("answers 400 to a request that is not HTTP", function()
    srv = start()
    local r = http(srv, "/", { "--request-target", "a b c" })
    assert.equals(400, r.status)
    assert.equals("close", r.headers["connection"])
  end)

  it("lists running containers, and containers not yet started only with all=1", function()
    srv = start { "--containers", "3", "--start-delay", "1000" }
    local status, list = json(srv, "/v1.41/containers/json")
    assert.equals(200, status)
    assert.same({}, list)
    status, list = json(srv, "/v1.41/containers/json?all=1")
    assert.equals(3, #list)
    assert.same({ "/c2" }, list[3].Names)
    assert.equals("created", list[3].State)
  end)

  it("lists running containers in Docker's format", function()
    srv = start { "--containers", "2" }
    local status, list = json(srv, "/v1.41/containers/json")
    assert.equals(200, status)
    assert.equals(2, #list)
    assert.same({ "/c0" }, list[1].Names)
    assert.same({ "/c1" }, list[2].Names)
    assert.equals("fake:latest", list[1].Image)
    assert.same({ fake = "1" }, list[1].Labels)
    assert.equals("running", list[1].State)
    assert.matches("^%x+$", list[1].Id)
    assert.equals(64, #list[1].Id)
    assert.are_not.equal(list[1].Id, list[2].Id)
  end)

  it("inspects a container by name and by id", function()
    srv = start { "--containers", "2" }
    local _, list = json(srv, "/v1.41/containers/json")
    local status, byname = json(srv, "/v1.41/containers/c1/json")
    assert.equals(200, status)
    local _, byid = json(srv, "/v1.41/containers/" .. list[2].Id .. "/json")
    assert.same(byname, byid)
    assert.equals(list[2].Id, byid.Id)
    assert.equals("/c1", byid.Name)
    assert.is_false(byid.Config.Tty)
    assert.equals("fake:latest", byid.Config.Image)
    assert.same({ fake = "1" }, byid.Config.Labels)
    assert.is_true(byid.State.Running)
    assert.equals("running", byid.State.Status)
    assert.matches("^" .. TS .. "$", byid.State.StartedAt)
    assert.equals("json-file", byid.HostConfig.LogConfig.Type)
  end)

  it("answers 404 with Docker's message for an unknown container", function()
    srv = start()
    local r = http(srv, "/v1.41/containers/nope/json")
    assert.equals(404, r.status)
    assert.same({ message = "No such container: nope" }, cjson.decode(r.body))
    assert.equals(404, http(srv, "/v1.41/containers/nope/logs?stdout=1").status)
  end)

  it("returns history as one frame per numbered line, odd on stdout and even on stderr", function()
    srv = start { "--preload", "6", "--rate", "0" }
    local r = http(srv, LOGS)
    assert.equals(200, r.status)
    assert.equals(0, r.rc)
    assert.equals("chunked", r.headers["transfer-encoding"])
    assert.equals("application/vnd.docker.multiplexed-stream", r.headers["content-type"])
    local fs, rest = frames(r.body)
    assert.equals("", rest)
    assert.equals(6, #fs)
    local last
    for i, f in ipairs(fs) do
      assert.equals(i % 2 == 1 and 1 or 2, f.type)
      local ts, text = split_line(f.data)
      assert.equals("c0 " .. i, text)
      assert.truthy(last == nil or ts > last)
      last = ts
    end
  end)

  it("sends only the streams asked for, and no timestamps unless asked", function()
    srv = start { "--preload", "4", "--rate", "0" }
    local fs = frames(http(srv, "/v1.41/containers/c0/logs?stderr=1").body)
    assert.equals(2, #fs)
    assert.equals(2, fs[1].type)
    assert.equals("c0 2\n", fs[1].data)
    assert.equals("c0 4\n", fs[2].data)
    assert.equals(400, http(srv, "/v1.41/containers/c0/logs").status)
  end)

  it("skips lines older than since, keeping the line at since", function()
    srv = start { "--preload", "6", "--rate", "0" }
    local all = frames(http(srv, LOGS).body)
    local ts = split_line(all[3].data)
    local fs = frames(http(srv, LOGS .. "&since=" .. since_of(ts)).body)
    assert.equals(4, #fs)
    assert.equals(all[3].data, fs[1].data)
    assert.equals(6, #frames(http(srv, LOGS .. "&since=0").body))
    assert.equals(400, http(srv, LOGS .. "&since=yesterday").status)
  end)

  it("returns no history for tail=0", function()
    srv = start { "--preload", "6", "--rate", "0" }
    local r = http(srv, LOGS .. "&tail=0")
    assert.equals(200, r.status)
    assert.equals("", r.body)
  end)

  it("splits a 40000-byte line into 16 KiB frames sharing one timestamp", function()
    srv = start { "--preload", "3", "--rate", "0", "--long-every", "2", "--line-bytes", "100" }
    local fs = frames(http(srv, LOGS).body)
    assert.equals(5, #fs)
    local ts1, text1 = split_line(fs[1].data)
    assert.equals(100, #text1)
    assert.equals("c0 1 ", text1:sub(1, 5))
    local stamp = fs[2].data:sub(1, 31)
    local parts = {}
    for i = 2, 4 do
      assert.equals(2, fs[i].type)
      assert.equals(stamp, fs[i].data:sub(1, 31))
      parts[#parts + 1] = fs[i].data:sub(32)
    end
    assert.equals(16384, #parts[1])
    assert.equals(16384, #parts[2])
    assert.is_nil(parts[1]:find("\n", 1, true))
    assert.is_nil(parts[2]:find("\n", 1, true))
    local whole = table.concat(parts)
    assert.equals(40001, #whole)
    assert.equals("c0 2 ", whole:sub(1, 5))
    assert.equals("\n", whole:sub(-1))
    assert.truthy(ts1 < stamp)
    assert.equals("c0 3", select(2, split_line(fs[5].data)):sub(1, 4))
  end)

  it("writes raw lines ending in CRLF for a TTY container", function()
    srv = start { "--preload", "3", "--rate", "0", "--tty" }
    local _, info = json(srv, "/v1.41/containers/c0/json")
    assert.is_true(info.Config.Tty)
    local r = http(srv, LOGS)
    assert.equals("application/vnd.docker.raw-stream", r.headers["content-type"])
    local n = 0
    for ts, text in r.body:gmatch("(%S+) ([^\r\n]*)\r\n") do
      n = n + 1
      assert.matches("^" .. TS .. "$", ts)
      assert.equals("c0 " .. n, text)
    end
    assert.equals(3, n)
  end)

  it("ends a follow stream with the terminating chunk when the container stops", function()
    srv = start { "--rate", "20", "--lines", "10" }
    local r = http(srv, LOGS .. "&follow=1")
    assert.equals(0, r.rc)
    local fs, rest = frames(r.body)
    assert.equals("", rest)
    assert.equals(10, #fs)
    assert.equals("c0 10", select(2, split_line(fs[10].data)))
    local _, info = json(srv, "/v1.41/containers/c0/json")
    assert.is_false(info.State.Running)
    assert.equals("exited", info.State.Status)
  end)

  it("reports start events since a time, with the container's attributes", function()
    -- the stream ends cleanly after 3 events (the fault's default)
    srv = start { "--containers", "3", "--fault", "events-end" }
    local r = http(srv, "/v1.41/events?since=0")
    assert.equals(200, r.status)
    assert.equals(0, r.rc)
    local events = {}
    for line in r.body:gmatch("[^\n]+") do events[#events + 1] = cjson.decode(line) end
    assert.equals(3, #events)
    for i, e in ipairs(events) do
      assert.equals("container", e.Type)
      assert.equals("start", e.Action)
      assert.equals("local", e.scope)
      assert.same({ name = "c" .. (i - 1), image = "fake:latest", fake = "1" }, e.Actor.Attributes)
      assert.equals(64, #e.Actor.ID)
      assert.equals(e.time, math.floor(e.timeNano / 1e9))
    end
  end)

  it("restarts a container on request: die, start, and the numbering goes on", function()
    srv = start { "--rate", "100", "--lines", "2" }
    local dies = urlencode(cjson.encode { event = { "die" } })
    -- each events request below ends after the given number of die events
    assert.equals(204, post(srv, "/fake/fault?mode=events-end&after=1").status)
    assert.equals(0, http(srv, "/v1.41/events?since=0&filters=" .. dies).rc)
    assert.equals(204, post(srv, "/fake/restart/c0").status)
    assert.equals(204, post(srv, "/fake/fault?mode=events-end&after=2").status)
    assert.equals(0, http(srv, "/v1.41/events?since=0&filters=" .. dies).rc)
    local fs = frames(http(srv, LOGS).body)
    assert.equals(4, #fs)
    for i, f in ipairs(fs) do assert.equals("c0 " .. i, select(2, split_line(f.data))) end
    assert.equals(204, post(srv, "/fake/fault?mode=events-end&after=4").status)
    local actions = {}
    for line in http(srv, "/v1.41/events?since=0").body:gmatch("[^\n]+") do
      actions[#actions + 1] = cjson.decode(line).Action
    end
    assert.same({ "start", "die", "start", "die" }, actions)
    assert.equals(404, post(srv, "/fake/restart/nope").status)
  end)

  it("answers the first logs request with --fault 501, then serves normally", function()
    srv = start { "--preload", "2", "--rate", "0", "--fault", "501" }
    local r = http(srv, LOGS)
    assert.equals(501, r.status)
    assert.same({ message = "configured logging driver does not support reading" },
                cjson.decode(r.body))
    assert.equals(2, #frames(http(srv, LOGS).body))
  end)

  it("truncates a stream mid-frame and closes without the terminating chunk", function()
    srv = start { "--preload", "6", "--rate", "0" }
    assert.equals(204, post(srv, "/fake/fault?mode=truncate&count=1").status)
    local r = http(srv, LOGS)
    assert.equals(200, r.status)
    assert.equals(18, r.rc) -- CURLE_PARTIAL_FILE
    local fs, rest = frames(r.body)
    assert.equals(3, #fs)
    assert.truthy(#rest > 0)
    assert.equals(6, #frames(http(srv, LOGS).body))
  end)

  it("closes the connection right after the request for reset", function()
    srv = start { "--preload", "2", "--rate", "0", "--fault", "reset:2" }
    assert.equals(52, http(srv, LOGS).rc) -- CURLE_GOT_NOTHING
    assert.equals(52, http(srv, LOGS).rc)
    assert.equals(0, http(srv, LOGS).rc)
  end)

  it("sends a frame of stream type 7 for bad-header", function()
    srv = start { "--preload", "2", "--rate", "0" }
    assert.equals(204, post(srv, "/fake/fault?mode=bad-header").status)
    local fs = frames(http(srv, LOGS).body)
    assert.equals(7, fs[1].type)
    assert.equals(2, fs[2].type)
  end)

  it("refuses an unknown fault mode", function()
    srv = start()
    assert.equals(400, post(srv, "/fake/fault?mode=explode").status)
  end)

  it("prints its counters as one JSON line on SIGUSR1", function()
    srv = start { "--containers", "2", "--preload", "5", "--rate", "0" }
    http(srv, LOGS)
    http(srv, "/v1.41/containers/c1/logs?stdout=1")
    srv.p:signal("USR1")
    local line = proc.wait_for(function() return proc.lines(srv.out)[2] end, 10, "the stats line")
    local stats = cjson.decode(line)
    assert.equals(2, stats.logs_requests)
    assert.equals(0, stats.events_requests)
    assert.same({ c0 = 5, c1 = 5 }, stats.lines)
  end)

  it("exits 0 on SIGTERM, even with a follow stream open", function()
    srv = start { "--rate", "100" }
    local f = io.popen("LD_PRELOAD= " .. proc.join { "curl", "-sN", "--max-time", "20", "--unix-socket", srv.sock,
                                   "http://localhost" .. LOGS .. "&follow=1" } .. " 2>/dev/null")
    proc.wait_for(function()
      return srv.p:signal("USR1") and proc.read(srv.out):find('"connections":1', 1, true)
    end, 10, "the follow connection")
    local code, err = stop(srv)
    srv = nil
    f:close()
    assert.equals(0, code, err)
  end)
end)

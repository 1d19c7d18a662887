-- receiver_spec.lua - the test HTTP receiver (spec/support/receiver.c) that
-- the output specs post to: it records every request whole and answers as
-- its script says. Requests are made with curl, each bounded by --max-time.
package.path = "lua/?.lua;" .. package.path
local proc = require("spec.support.proc")
local socket = require("posix.sys.socket")
local unistd = require("posix.unistd")
local poll = require("posix.poll")

local TOOLS = os.getenv("ENGINE_TOOLS") or "build"
local BIN = TOOLS .. "/receiver"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function tmpdir()
  local ok, out = proc.sh("mktemp -d /tmp/receiver-spec.XXXXXX")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

-- Starts the receiver with the extra arguments ("@DIR@" in them names its
-- temporary folder, where files, a table name -> content, are written
-- first); waits for "ready <port>".
local function start(args, files)
  local dir = tmpdir()
  for name, text in pairs(files or {}) do write(dir .. "/" .. name, text) end
  local srv = { dir = dir, req = dir .. "/req", out = dir .. "/stdout", err = dir .. "/stderr" }
  assert(os.execute("mkdir " .. proc.quote(srv.req)) == 0)
  local argv = { BIN, "--dir", srv.req, "--port", "0" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = (a:gsub("@DIR@", dir)) end
  srv.p = proc.spawn({ argv = argv, stdout = srv.out, stderr = srv.err })
  srv.port = proc.wait_for(function()
    if not srv.p:running() then error("receiver exited: " .. (proc.read(srv.err) or "")) end
    return tonumber((proc.read(srv.out) or ""):match("^ready (%d+)\n"))
  end, 10, "the receiver to print ready")
  srv.url = "http://127.0.0.1:" .. srv.port
  return srv
end

-- SIGTERM; returns the exit code (nil when it did not end in 10 s).
local function stop(srv)
  srv.p:signal("TERM")
  local code = srv.p:wait(10)
  srv.p:cleanup()
  os.execute("rm -rf " .. proc.quote(srv.dir))
  return code
end

-- Runs curl with the arguments (--max-time 10 unless given). Returns its
-- exit code and what it printed (stdout and stderr).
local function curl(args)
  local argv = { "curl", "-sS" }
  local bounded = false
  for _, a in ipairs(args) do
    if a == "--max-time" then bounded = true end
  end
  if not bounded then argv[#argv + 1] = "--max-time"; argv[#argv + 1] = "10" end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local _, out, status = proc.sh(proc.join(argv), 30)
  return status, out
end

-- Request n as saved: { line, headers (lower-case names), raw, body }.
local function saved(srv, n)
  local base = ("%s/%06d"):format(srv.req, n)
  local raw = proc.read(base .. ".req")
  assert(raw, "request " .. n .. " was not saved")
  local r = { raw = raw, headers = {}, body = proc.read(base .. ".body") }
  for line in raw:gmatch("([^\n]*)\n") do
    if not r.line then
      r.line = line
    else
      local k, v = line:match("^([^:]+):%s*(.*)$")
      r.headers[k:lower()] = v
    end
  end
  return r
end

-- The header lines curl dumped into path, by lower-case name.
local function dumped_headers(path)
  local h = {}
  for line in (proc.read(path) or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then h[k:lower()] = v end
  end
  return h
end

-- Bytes 0..255 repeated to n bytes.
local function binary(n)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local block = table.concat(t)
  return block:rep(math.ceil(n / 256)):sub(1, n)
end

-- A raw TCP connection to the receiver.
local function connect(srv)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = srv.port }))
  return fd
end

-- Reads from fd until the peer closes or 10 s pass. Returns the bytes and
-- whether the peer closed.
local function read_all(fd)
  local chunks, deadline = {}, proc.now() + 10
  while proc.now() < deadline do
    local ready = poll.rpoll(fd, 200)
    if ready and ready > 0 then
      local data = socket.recv(fd, 65536)
      if not data or data == "" then return table.concat(chunks), true end
      chunks[#chunks + 1] = data
    end
  end
  return table.concat(chunks), false
end

describe("receiver", function()
  local srv

  after_each(function()
    if srv then stop(srv) end
    srv = nil
  end)

  it("saves a POST with its path, query, headers and body, and answers 200", function()
    srv = start()
    assert.is_true(srv.port > 0)
    local body = binary(3000)
    write(srv.dir .. "/in", body)
    local rc, out = curl({ "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Test: one two",
      "-H", "Content-Type: application/x-ndjson", "-H", "Expect:",
      "--data-binary", "@" .. srv.dir .. "/in", srv.url .. "/loki/api/v1/push?tenant=a&x=1" })
    assert.equal(0, rc, out)
    assert.equal("200", out)
    local r = saved(srv, 1)
    assert.equal("POST /loki/api/v1/push?tenant=a&x=1 HTTP/1.1", r.line)
    assert.equal("one two", r.headers["x-test"])
    assert.equal("application/x-ndjson", r.headers["content-type"])
    assert.equal("3000", r.headers["content-length"])
    assert.equal("127.0.0.1:" .. srv.port, r.headers.host)
    assert.equal(body, r.body)
    assert.is_nil(r.raw:find("\r", 1, true))
  end)

  it("reassembles a chunked body", function()
    srv = start()
    local body = binary(200000)
    write(srv.dir .. "/in", body)
    local rc, out = curl({ "-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
      "--data-binary", "@" .. srv.dir .. "/in", srv.url .. "/v1/logs" })
    assert.equal(0, rc, out)
    assert.equal("200", out)
    local r = saved(srv, 1)
    assert.equal("chunked", r.headers["transfer-encoding"])
    assert.equal(#body, #r.body)
    assert.equal(body, r.body)
  end)

  it("answers Expect: 100-continue before the body comes", function()
    srv = start()
    local body = binary(2 * 1024 * 1024)
    write(srv.dir .. "/in", body)
    local rc, out = curl({ "-v", "-o", "/dev/null", "-H", "Expect: 100-continue",
      "--data-binary", "@" .. srv.dir .. "/in", srv.url .. "/_bulk" })
    assert.equal(0, rc, out)
    assert.truthy(out:find("< HTTP/1.1 100 Continue", 1, true), out)
    assert.truthy(out:find("< HTTP/1.1 200 OK", 1, true), out)
    assert.equal(body, saved(srv, 1).body)
  end)

  it("answers as the script says, repeating its last status, with Retry-After on request", function()
    srv = start({ "--script", "200,500,429:2,400" })
    local codes, retry = {}, {}
    for i = 1, 6 do
      local hfile = srv.dir .. "/h" .. i
      local rc, out = curl({ "-o", "/dev/null", "-D", hfile, "-w", "%{http_code}", "-d", "n=" .. i,
        srv.url .. "/p" .. i })
      assert.equal(0, rc, out)
      codes[i] = out
      retry[i] = dumped_headers(hfile)["retry-after"] or "-"
    end
    assert.same({ "200", "500", "429", "400", "400", "400" }, codes)
    assert.same({ "-", "-", "2", "-", "-", "-" }, retry)
    for i = 1, 6 do
      local r = saved(srv, i)
      assert.equal("POST /p" .. i .. " HTTP/1.1", r.line)
      assert.equal("n=" .. i, r.body)
    end
  end)

  it("--unique-ids: answers 409 to a _bulk item whose _id it took before, and lists what it took", function()
    srv = start({ "--unique-ids", "--bulk", "201,201,429" })
    local function bulk(body)
      write(srv.dir .. "/in", body)
      local rc, out = curl({ "-H", "Content-Type: application/x-ndjson", "--data-binary",
        "@" .. srv.dir .. "/in", srv.url .. "/_bulk" })
      assert.equal(0, rc, out)
      local statuses = {}
      for st in out:gmatch('"status":(%d+)') do statuses[#statuses + 1] = tonumber(st) end
      return statuses
    end
    local a = '{"create":{"_index":"logs","_id":"a"}}\n{"n":1}\n'
    local b = '{"create":{"_index":"logs","_id":"b"}}\n{"n":2}\n'
    local c = '{"create":{"_index":"logs","_id":"c"}}\n{"n":3}\n'
    local none = '{"create":{"_index":"logs"}}\n{"n":4}\n'
    -- items 1, 2, 3 get 201, 201, 429 from --bulk; a refused _id is not taken
    assert.same({ 201, 201, 429 }, bulk(a .. b .. c))
    assert.same({ 409, 201, 409, 201 }, bulk(a .. c .. b .. none))
    assert.same({ 201 }, bulk(none))
    assert.equal('{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":4}\n', proc.read(srv.req .. "/indexed"))
    assert.truthy((proc.read(srv.err) or ""):find("bulk conflicts 2\n", 1, true))
  end)

  it("sends the body file of a status with every answer of that status", function()
    local reply = '{"took":1,"errors":true,"items":[{"create":{"status":400,"error":{"type":"x","reason":"y"}}}]}'
    srv = start({ "--script", "200,500,200", "--body-200", "@DIR@/reply.json" },
      { ["reply.json"] = reply })
    local outs = {}
    for i = 1, 3 do
      local rc, out = curl({ "-d", "x", "-w", " %{http_code}", srv.url .. "/_bulk" })
      assert.equal(0, rc, out)
      outs[i] = out
    end
    assert.same({ reply .. " 200", " 500", reply .. " 200" }, outs)
  end)

  it("keeps a connection alive across requests", function()
    srv = start()
    local rc, out = curl({ "-d", "a", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n",
      srv.url .. "/one", srv.url .. "/two" })
    assert.equal(0, rc, out)
    assert.equal("200 1\n200 0\n", out)
    assert.equal("POST /one HTTP/1.1", saved(srv, 1).line)
    assert.equal("POST /two HTTP/1.1", saved(srv, 2).line)
    assert.equal("a", saved(srv, 2).body)
  end)

  it("closes a connection after --close-after answers, saying so", function()
    srv = start({ "--close-after", "1" })
    local hfile = srv.dir .. "/h"
    local rc, out = curl({ "-d", "a", "-o", "/dev/null", "-D", hfile,
      "-w", "%{http_code} %{num_connects}\\n", srv.url .. "/one", srv.url .. "/two" })
    assert.equal(0, rc, out)
    assert.equal("200 1\n200 1\n", out)
    assert.equal("close", dumped_headers(hfile).connection)
  end)

  it("closes the connection when the client asks for it", function()
    srv = start()
    local rc, out = curl({ "-d", "a", "-H", "Connection: close", "-o", "/dev/null",
      "-w", "%{http_code} %{num_connects}\\n", srv.url .. "/one", srv.url .. "/two" })
    assert.equal(0, rc, out)
    assert.equal("200 1\n200 1\n", out)
  end)

  it("holds each answer for --delay-ms, having saved the request", function()
    srv = start({ "--delay-ms", "2000", "--script", "503" })
    local rc = curl({ "--max-time", "0.5", "-d", "slow", srv.url .. "/slow" })
    assert.equal(28, rc) -- curl's "operation timed out": no answer came
    assert.equal("slow", saved(srv, 1).body)
    local rc2, out = curl({ "-d", "later", "-o", "/dev/null", "-w", "%{http_code}", srv.url .. "/later" })
    assert.equal(0, rc2, out)
    assert.equal("503", out)
    assert.equal("later", saved(srv, 2).body)
  end)

  it("answers a malformed request with 400 and closes the connection", function()
    srv = start()
    local fd = connect(srv)
    assert(socket.send(fd, "NONSENSE\r\n\r\n"))
    local reply, closed = read_all(fd)
    unistd.close(fd)
    assert.equal("HTTP/1.1 400 Bad Request\r\n", reply:match("^[^\n]*\n"))
    assert.is_true(closed)
  end)

  it("answers pipelined requests in order on one connection", function()
    srv = start({ "--script", "201,202" })
    local fd = connect(srv)
    assert(socket.send(fd, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nA" ..
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nBC\r\n0\r\n\r\n" ..
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local reply, closed = read_all(fd)
    unistd.close(fd)
    assert.is_true(closed)
    local statuses = {}
    for code in reply:gmatch("HTTP/1%.1 (%d+)") do statuses[#statuses + 1] = code end
    assert.same({ "201", "202", "202" }, statuses)
    assert.equal("A", saved(srv, 1).body)
    assert.equal("BC", saved(srv, 2).body)
    assert.equal("GET /c HTTP/1.1", saved(srv, 3).line)
    assert.equal("", saved(srv, 3).body)
  end)

  it("exits 0 on SIGTERM with connections open and an answer pending", function()
    srv = start({ "--delay-ms", "60000" })
    local idle = connect(srv)
    local waiting = connect(srv)
    assert(socket.send(waiting, "POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"))
    proc.wait_for(function() return proc.read(srv.req .. "/000001.req") end, 10, "the request to be saved")
    local code = stop(srv)
    srv = nil
    unistd.close(idle)
    unistd.close(waiting)
    assert.equal(0, code)
  end)

  it("refuses to start without --dir", function()
    local p = proc.spawn({ argv = { BIN, "--port", "0" } })
    assert.equal(2, p:wait(10))
    p:cleanup()
  end)
end)

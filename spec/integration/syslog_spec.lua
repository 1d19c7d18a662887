-- The syslog output against a real rsyslog (Debian's, private, on loopback):
-- RFC 5424 over TCP with octet-counted framing, and over UDP. Every line
-- arrives once, framing intact for long lines and for lines with newlines.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

describe("the syslog output #sanitize", function()
  local dir, srv, e
  local port = 15514 + (require("posix.unistd").getpid() % 500)

  before_each(function()
    dir = select(2, proc.sh("mktemp -d /tmp/rsy.XXXXXX")):gsub("%s+$", "")
    local ok, out = proc.sh(proc.join { "sh", "scripts/test/rsyslog.sh", "start", dir .. "/rs", tostring(port) }, 30)
    assert(ok, out)
  end)
  after_each(function()
    local de, dsrv = e, srv
    e, srv = nil, nil
    proc.each(function() engine.release(de, dsrv) end,
              function() proc.sh(proc.join { "sh", "scripts/test/rsyslog.sh", "stop", dir .. "/rs" }, 30) end,
              function() proc.sh("rm -rf " .. proc.quote(dir)) end)
  end)

  -- "APP-NAME MSGID MSG" lines rsyslog wrote.
  local function received()
    local out = {}
    for line in (proc.read(dir .. "/rs/out.log") or ""):gmatch("([^\n]*)\n") do
      local app, msgid, msg = line:match("^(%S+) (%S+) (.*)$")
      if app == "c0" then out[#out + 1] = { stream = msgid, msg = msg } end
    end
    return out
  end

  for _, transport in ipairs { "tcp", "udp" } do
    it("delivers every line over " .. transport .. ", long lines and newlines intact", function()
      local long = transport == "tcp" and { "--long-every", "25" } or {}
      local args = { "--containers", "1", "--rate", "400", "--lines", "100" }
      for _, a in ipairs(long) do args[#args + 1] = a end
      srv = fake.start(args)
      e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch)
    for _, r in ipairs(batch) do
      local seq = tonumber(r.line:match("^c0 (%%d+)"))
      if seq and seq %% 10 == 0 then r.line = r.line .. "\nsecond line" end
    end
  end },
  outputs = { { type = "syslog", url = "%s://127.0.0.1:%d", facility = 3, hostname = "edge-1" } },
}]], srv.host, transport, port) }
      proc.wait_for(function() return #received() >= 100 end, 30, "100 messages in rsyslog")
      assert.equal(0, e:stop("TERM"))
      local count = {}
      for _, m in ipairs(received()) do
        local seq = tonumber(m.msg:match("^c0 (%d+)"))
        count[seq] = (count[seq] or 0) + 1
        assert.equal(seq % 2 == 1 and "stdout" or "stderr", m.stream)
        if seq % 10 == 0 then assert.matches("\\nsecond line$", m.msg) end
        if transport == "tcp" and seq % 25 == 0 then
          assert.is_true(#m.msg >= 40000, "line " .. seq .. " arrived cut: " .. #m.msg .. " bytes")
        end
      end
      for i = 1, 100 do assert.equal(1, count[i], "line " .. i) end
    end)
  end

  it("cuts a record longer than a UDP datagram takes, and delivers every other one", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", "100" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  filters = { function(batch)
    for _, r in ipairs(batch) do
      if r.line:match("^c0 50$") then r.line = r.line .. " " .. string.rep("x", 80000) end
    end
  end },
  outputs = { { type = "syslog", url = "udp://127.0.0.1:%d" } },
}]], srv.host, port) }
    proc.wait_for(function() return #received() >= 100 end, 30, "100 messages in rsyslog")
    proc.sleep(0.3)
    assert.equal(0, e:stop("TERM"))
    local count = {}
    for _, m in ipairs(received()) do
      local seq = tonumber(m.msg:match("^c0 (%d+)"))
      count[seq] = (count[seq] or 0) + 1
      if seq == 50 then
        assert.is_true(#m.msg > 60000 and #m.msg < 64000, "line 50 arrived with " .. #m.msg .. " bytes")
      end
    end
    for i = 1, 100 do assert.equal(1, count[i], "line " .. i) end
    assert.matches("a record of %d+ bytes was cut to 64000", e:stderr_text())
  end)
end)

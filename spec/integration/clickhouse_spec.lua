-- The clickhouse output against a real ClickHouse server (Debian's
-- clickhouse-server, private, on loopback): the server goes away for a while
-- and comes back, the engine is killed with SIGKILL and started again, and
-- at the end the table holds every line. Duplicates are counted and shown.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local LINES = 3000

local function sql(url, query)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "20", "--data-binary", query, url .. "/" })
  assert(ok, "ClickHouse query failed: " .. query .. ": " .. out)
  return out
end

describe("the clickhouse output", function()
  local dir, url, srv, a, b, state
  local port = 28123 + (require("posix.unistd").getpid() % 500) * 2

  before_each(function()
    local _, d = proc.sh("mktemp -d /tmp/chs.XXXXXX")
    dir = d:gsub("%s+$", "")
    state = dir .. "/state"
    local ok, out = proc.sh(proc.join { "sh", "scripts/clickhouse.sh", "start", dir .. "/ch", tostring(port) }, 60)
    assert(ok, out)
    url = out:match("(http://%S+)")
    sql(url, proc.read("docs/clickhouse.sql"):match("CREATE TABLE.-;"))
  end)

  after_each(function()
    for _, e in ipairs { a, b } do if e then e:cleanup() end end
    if srv then srv:stop() end
    a, b, srv = nil, nil, nil
    proc.sh(proc.join { "sh", "scripts/clickhouse.sh", "stop", dir .. "/ch" }, 60)
    proc.sh("rm -rf " .. proc.quote(dir))
  end)

  it("holds every line after an outage and an engine killed with SIGKILL", function()
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", tostring(LINES) }
    local p = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.1 },
  outputs = { { type = "clickhouse", url = %q, table = "logs", backoff_initial = 0.1, backoff_max = 0.5 } },
}]], srv.host, url)
    local function rows() return tonumber(sql(url, "SELECT count() FROM logs")) end
    a = engine.start { pipeline = p, state_dir = state }
    proc.wait_for(function() return rows() >= 300 end, 30, "the first rows")
    -- the server goes away for a while; the engine retries and readers pause
    local ok, out = proc.sh(proc.join { "sh", "scripts/clickhouse.sh", "pause", dir .. "/ch" }, 60)
    assert(ok, out)
    proc.sleep(1.5)
    ok, out = proc.sh(proc.join { "sh", "scripts/clickhouse.sh", "start", dir .. "/ch", tostring(port) }, 60)
    assert(ok, out)
    proc.wait_for(function() return rows() >= 1200 end, 30, "rows after the outage")
    assert.matches("retrying", a:stderr_text(), 1, true)
    a:signal("KILL")
    a:wait(10)
    b = engine.start { pipeline = p, state_dir = state }
    proc.wait_for(function()
      return tonumber(sql(url, "SELECT uniqExact(line) FROM logs")) >= LINES
    end, 60, "every line in the table")
    assert.equal(0, b:stop("TERM"))
    local total = rows()
    local unique = tonumber(sql(url, "SELECT uniqExact(line) FROM logs"))
    local first, last = sql(url, "SELECT min(toUInt32(splitByChar(' ', line)[2])), " ..
                                 "max(toUInt32(splitByChar(' ', line)[2])) FROM logs"):match("(%d+)%s+(%d+)")
    print(string.format("clickhouse: %d lines, %d rows, %d duplicates (the SIGKILL repeats what was sent but not saved)",
                        LINES, total, total - unique))
    assert.equal(LINES, unique)
    assert.equal("1", first)
    assert.equal(tostring(LINES), last)
    -- nanoseconds kept exactly: time_ns matches the RFC 3339 text
    local t = sql(url, "SELECT time_ns, time FROM logs LIMIT 1")
    local ns, text = t:match("(%d+)%s+(%S+)")
    assert.equal(ns:sub(-9), text:match("%.(%d+)Z"))
  end)
end)

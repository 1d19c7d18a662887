-- The clickhouse output against a real ClickHouse server (Debian's
-- clickhouse-server, private, on loopback): the server goes away for a while
-- and comes back, the engine is killed with SIGKILL and started again, and
-- at the end the table (docs/clickhouse.sql) holds every line exactly once
-- when read as documented: with FINAL, or by distinct record id. Rows the
-- SIGKILL made the engine send twice are counted and shown.
-- Compressed bodies: gzip ones are inserted; zstd ones are inserted when
-- the server decodes them, else its refusal (Debian 12's 18.16 answers
-- 500) is logged and retried, nothing dead-lettered.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"
package.path = "lua/?.lua;" .. package.path
local time = require "engine.time"

local LINES = 3000

local function sql(url, query)
  local ok, out = proc.sh(proc.join { "curl", "-s", "-f", "--max-time", "20", "--data-binary", query, url .. "/" })
  assert(ok, "ClickHouse query failed: " .. query .. ": " .. out)
  return out
end

describe("the clickhouse output #sanitize", function()
  local dir, url, srv, a, b, state
  local port = 28123 + (require("posix.unistd").getpid() % 500) * 2

  before_each(function()
    local _, d = proc.sh("mktemp -d /tmp/chs.XXXXXX")
    dir = d:gsub("%s+$", "")
    state = dir .. "/state"
    local ok, out = proc.sh(proc.join { "sh", "scripts/test/clickhouse.sh", "start", dir .. "/ch", tostring(port) }, 60)
    assert(ok, out)
    url = out:match("(http://%S+)")
    sql(url, proc.read("docs/clickhouse.sql"):match("CREATE TABLE.-;"))
    -- every row inserted, copies included (ReplacingMergeTree drops copies
    -- when it merges, at any time)
    sql(url, "CREATE MATERIALIZED VIEW sent ENGINE = MergeTree() ORDER BY id AS SELECT id, line FROM logs")
  end)

  after_each(function()
    local done = { a, b, srv }
    a, b, srv = nil, nil, nil
    proc.each(function() engine.release(unpack(done, 1, 3)) end,
              function() proc.sh(proc.join { "sh", "scripts/test/clickhouse.sh", "stop", dir .. "/ch" }, 60) end,
              function() proc.sh("rm -rf " .. proc.quote(dir)) end)
  end)

  it("holds every line after an outage and an engine killed with SIGKILL", function()
    -- the container keeps logging: the restarted engine must find it running
    -- (one that ended meanwhile would not be followed); lines 1..LINES count
    srv = fake.start { "--containers", "1", "--rate", "400" }
    local p = string.format([[
return {
  docker = { host = %q },
  engine = { checkpoint_interval = 3 },
  batch = { flush_interval = 0.1 },
  outputs = { { type = "clickhouse", url = %q, table = "logs", backoff_initial = 0.1, backoff_max = 0.5 } },
}]], srv.host, url)
    local function rows() return tonumber(sql(url, "SELECT count() FROM logs")) end
    a = engine.start { pipeline = p, state_dir = state }
    proc.wait_for(function() return rows() >= 300 end, 30, "the first rows")
    -- the server goes away for a while; the engine retries and readers pause
    local ok, out = proc.sh(proc.join { "sh", "scripts/test/clickhouse.sh", "pause", dir .. "/ch" }, 60)
    assert(ok, out)
    proc.sleep(1.5)
    ok, out = proc.sh(proc.join { "sh", "scripts/test/clickhouse.sh", "start", dir .. "/ch", tostring(port) }, 60)
    assert(ok, out)
    proc.wait_for(function() return rows() >= 1200 end, 30, "rows after the outage")
    assert.matches("retrying", a:stderr_text(), 1, true)
    -- killed some 200 rows after a cursor save, well before the next one:
    -- the restarted engine sends those rows again
    local saved = proc.read(state .. "/cursors.json")
    proc.wait_for(function() return proc.read(state .. "/cursors.json") ~= saved end, 30, "a cursor save")
    local at_save = rows()
    proc.wait_for(function() return rows() >= at_save + 200 end, 30, "rows after the save")
    a:signal("KILL")
    a:wait(10)
    b = engine.start { pipeline = p, state_dir = state }
    local first_lines = " FROM logs WHERE toUInt32(splitByChar(' ', line)[2]) <= " .. LINES
    proc.wait_for(function()
      return tonumber(sql(url, "SELECT uniqExact(line)" .. first_lines)) >= LINES
    end, 60, "every line in the table")
    assert.equal(0, b:stop("TERM"))
    local total = tonumber(sql(url, "SELECT count()" .. first_lines:gsub("FROM logs", "FROM sent")))
    local unique = tonumber(sql(url, "SELECT uniqExact(line)" .. first_lines))
    local ids = tonumber(sql(url, "SELECT uniqExact(id)" .. first_lines))
    local final_lines = first_lines:gsub("FROM logs", "FROM logs FINAL")
    local final = tonumber(sql(url, "SELECT count()" .. final_lines))
    local first, last = sql(url, "SELECT min(toUInt32(splitByChar(' ', line)[2])), " ..
                                 "max(toUInt32(splitByChar(' ', line)[2]))" .. first_lines):match("(%d+)%s+(%d+)")
    print(string.format("clickhouse: %d lines, %d rows inserted, %d sent twice (the SIGKILL repeats what was "
                        .. "sent but not saved), %d distinct ids, %d rows read with FINAL",
                        LINES, total, total - unique, ids, final))
    assert.equal(LINES, unique)
    assert.is_true(total > LINES, "the SIGKILL made the engine send rows again")
    -- exactly once as documented: one id per line, one row per line with FINAL
    assert.equal(LINES, ids)
    assert.equal(LINES, final)
    assert.equal("0", (sql(url, "SELECT count() FROM (SELECT line, uniqExact(id) AS n" .. first_lines
                                 .. " GROUP BY line HAVING n > 1)"):gsub("%s+", "")))
    for id in sql(url, "SELECT DISTINCT id" .. first_lines .. " LIMIT 5"):gmatch("%S+") do
      assert.matches("^%x+$", id)
      assert.equal(32, #id)
    end
    assert.equal("1", first)
    assert.equal(tostring(LINES), last)
    -- nanoseconds kept exactly: every row's time_ns is the timestamp the
    -- source (the fake daemon) gave its line
    local source = {}
    for _, l in ipairs(srv:logs("c0")) do
      local secs, ns = assert(time.parse(l.time))
      source[l.text] = string.format("%d%09d", secs, ns)
    end
    local compared = 0
    for line, ns in sql(url, "SELECT line, time_ns" .. final_lines):gmatch("([^\t\n]+)\t(%d+)") do
      assert.equal(source[line], ns, line)
      compared = compared + 1
    end
    assert.equal(LINES, compared)
  end)

  it("takes gzip bodies; zstd ones as far as the server decodes them, else reports its refusal and loses nothing", function()
    -- what this server answers to a zstd body (Debian 12's 18.16: 500,
    -- "Unknown Content-Encoding"; later versions insert it)
    local probe = dir .. "/probe.zst"
    assert(proc.sh("printf '{\"line\":\"probe\"}\\n' | zstd -q -c > " .. proc.quote(probe)))
    sql(url, "CREATE TABLE probe (line String) ENGINE = Memory")
    local _, code = proc.sh(proc.join { "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                                  "-H", "Content-Encoding: zstd", "--data-binary", "@" .. probe,
                                  url .. "/?query=INSERT%20INTO%20probe%20FORMAT%20JSONEachRow" })
    local takes_zstd = code == "200"
    sql(url, "CREATE TABLE logs_zstd AS logs")
    local n = 200
    srv = fake.start { "--containers", "1", "--rate", "400", "--lines", tostring(n), "--linger" }
    a = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.1 },
  outputs = {
    { type = "clickhouse", name = "gz", url = %q, table = "logs", compression = "gzip" },
    { type = "clickhouse", name = "zs", url = %q, table = "logs_zstd", compression = "zstd",
      backoff_initial = 0.1, backoff_max = 0.5, dead_letter = %q },
  },
}]], srv.host, url, url, dir .. "/dead.jsonl"), state_dir = state }
    local function rows(t) return tonumber(sql(url, "SELECT count() FROM " .. t)) end
    proc.wait_for(function() return rows("logs") >= n end, 30, "the gzip rows")
    if takes_zstd then
      proc.wait_for(function() return rows("logs_zstd") >= n end, 30, "the zstd rows")
    else
      proc.wait_for(function() return a:stderr_text():find("Unknown Content-Encoding", 1, true) end, 30,
                    "the server's refusal in the log")
      assert.matches("output zs", a:stderr_text(), 1, true)
      assert.equal(0, rows("logs_zstd"))
      assert.equal("", proc.read(dir .. "/dead.jsonl") or "", "a refused zstd body is retried, not dead-lettered")
    end
    print(string.format("clickhouse %s: gzip %d rows; zstd %s", sql(url, "SELECT version()"):gsub("%s+$", ""),
                        rows("logs"), takes_zstd and rows("logs_zstd") .. " rows" or "answered " .. code))
    assert.equal(n, rows("logs"))
  end)
end)

-- Lines a daemon sends twice within one follow stream (Docker's json-file
-- follow does where the file rotated): the engine delivers each line once
-- and counts the copies it dropped, per container.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

-- The container's entry in /readers.
local function reader_entry(url, name)
  local status, body = metrics.get(url .. "/readers")
  assert.equal(200, status)
  for _, r in ipairs(cjson.decode(body)) do
    if r.name == name then return r end
  end
end

-- How often each text of container `name` was delivered, and on which stream.
local function counts(recs, name)
  local count, streams = {}, {}
  for _, r in ipairs(recs) do
    if r.name == name then
      count[r.line] = (count[r.line] or 0) + 1
      streams[r.line] = r.stream
    end
  end
  return count, streams
end

describe("lines the fake daemon repeats within a stream #tsan #sanitize", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  local LINES = 2000
  for _, case in ipairs {
    { "repeat", "a run of earlier lines on both streams" },
    { "repeat-stderr", "a run of earlier stderr lines" },
  } do
    local mode, what = case[1], case[2]
    it("drops " .. what .. ", delivers every line once and counts the copies", function()
      -- every logs request repeats: the live stream and the last read from
      -- the cursor after the container exits
      srv = fake.start { "--containers", "1", "--rate", "1000", "--lines", tostring(LINES),
                         "--fault", mode .. ":1000" }
      local url
      e, url = metrics.start_engine { docker_host = srv.host }
      proc.wait_for(function()
        local r = reader_entry(url, "c0")
        return r and r.state == "finished"
      end, 60, "c0 read to its end")
      local count, streams = counts(e:json_records(), "c0")
      for i = 1, LINES do
        local text = "c0 " .. i
        assert.equal(1, count[text], text .. " arrived " .. tostring(count[text] or 0) .. " times")
        assert.equal(i % 2 == 1 and "stdout" or "stderr", streams[text])
      end
      local sent_again = srv:stats().repeated
      assert.is_true(sent_again >= LINES / 40 * (mode == "repeat" and 7 or 3),
                     "the fake daemon repeated " .. sent_again .. " lines")
      assert.equal(sent_again, reader_entry(url, "c0").repeated)
      local status, body = metrics.get(url .. "/metrics")
      assert.equal(200, status)
      assert.equal(sent_again, metrics.parse(body):value("engine_docker_repeated_lines_total",
                                                         { container = "c0" }))
      -- said once, at info level
      local _, said = e:stderr_text():gsub("sent lines of this stream twice", "")
      assert.equal(1, said)
      assert.matches("info%s+%[c0%] the daemon sent lines of this stream twice", e:stderr_text())
    end)
  end

  it("counts nothing while the daemon sends each line once, across stream cycles", function()
    srv = fake.start { "--containers", "1", "--rate", "500", "--lines", "1500" }
    local url
    e, url = metrics.start_engine { docker_host = srv.host, engine = "cycle = 1," }
    proc.wait_for(function()
      local r = reader_entry(url, "c0")
      return r and r.state == "finished"
    end, 60, "c0 read to its end")
    local count = counts(e:json_records(), "c0")
    for i = 1, 1500 do assert.equal(1, count["c0 " .. i], "line " .. i) end
    assert.equal(0, reader_entry(url, "c0").repeated)
    assert.is_nil(e:stderr_text():find("twice", 1, true))
  end)
end)

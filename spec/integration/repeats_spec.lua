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

  -- Starts an engine (extra engine settings `engine_opts`) on the fake
  -- daemon srv and waits until c0 was read to its end; returns its URL.
  local function read_c0(engine_opts)
    local url
    e, url = metrics.start_engine { docker_host = srv.host, engine = engine_opts }
    proc.wait_for(function()
      local r = reader_entry(url, "c0")
      return r and r.state == "finished"
    end, 60, "c0 read to its end")
    return url
  end

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
      local url = read_c0()
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

  -- The local log driver's follow stream skips a whole file where the
  -- driver rotates: the fake daemon leaves 1,500 lines out of the follow
  -- stream (the history keeps them) and reports the local driver.
  it("finds a local-driver stream that skipped lines behind the log, and reads them from its cursor",
     function()
    srv = fake.start { "--containers", "1", "--rate", "1000", "--lines", "4000", "--local",
                       "--fault", "skip:1" }
    local url = read_c0()
    -- (fewer than 1,500 when the engine left the stream before the skip ended)
    assert.is_true(srv:stats().skipped > 0, "the fake daemon skipped nothing")
    local count = counts(e:json_records(), "c0")
    for i = 1, 4000 do assert.equal(1, count["c0 " .. i], "line " .. i) end
    local status, body = metrics.get(url .. "/metrics")
    assert.equal(200, status)
    assert.is_true(metrics.parse(body):value("engine_readers_cycled_total") >= 1)
    local _, said = e:stderr_text():gsub("follow stream skipped lines where the local log driver rotated", "")
    assert.equal(1, said)
  end)

  -- The same skip while the container writes on: at 4,000 lines a second the
  -- 1,500 lines are left out within 0.4 s, so the stream never falls quiet
  -- for the tail probe. The reader checks each span of a busy local-driver
  -- stream by reading it again (from before it, no follow) and delivers
  -- what the span lacks, late; the stream itself is not reopened.
  it("finds lines a busy local-driver stream skipped by reading its spans again", function()
    srv = fake.start { "--containers", "1", "--rate", "4000", "--lines", "16000", "--local",
                       "--fault", "skip:1" }
    local url = read_c0()
    local skipped = srv:stats().skipped
    assert.equal(1500, skipped)
    local count = counts(e:json_records(), "c0")
    for i = 1, 16000 do assert.equal(1, count["c0 " .. i], "line " .. i) end
    assert.equal(skipped, reader_entry(url, "c0").skipped)
    local status, body = metrics.get(url .. "/metrics")
    assert.equal(200, status)
    local m = metrics.parse(body)
    assert.equal(skipped, m:value("engine_docker_skipped_lines_total", { container = "c0" }))
    assert.equal(0, m:value("engine_readers_cycled_total"))
    local _, said = e:stderr_text():gsub("follow stream skipped %d+ lines where the local log driver", "")
    assert.equal(1, said)
  end)

  it("counts nothing while the daemon sends each line once, across stream cycles", function()
    srv = fake.start { "--containers", "1", "--rate", "500", "--lines", "1500" }
    local url = read_c0("cycle = 1,")
    local count = counts(e:json_records(), "c0")
    for i = 1, 1500 do assert.equal(1, count["c0 " .. i], "line " .. i) end
    assert.equal(0, reader_entry(url, "c0").repeated)
    assert.is_nil(e:stderr_text():find("twice", 1, true))
  end)
end)

-- The real daemon (Debian's docker.io): json-file follow streams repeat
-- runs of lines where the file rotates. What the daemon sent is recorded by
-- a proxy between it and the engine (spec/support/tapproxy.c).
describe("lines the real daemon repeats where its log file rotates", function()
  local dockerenv = require "spec.support.dockerenv"
  local tap = require "spec.support.tap"
  local env = dockerenv.get()
  local PREFIX = "rot"
  local N = 20000
  local TAIL = 16384 -- at most what a closed stream left unread (tap.start)
  local t, e

  after_each(function()
    e = engine.release(e)
    if t then t:stop() end
    t = nil
    env:cleanup(PREFIX)
  end)

  -- Copies within each answer the daemon sent: lines equal to an earlier
  -- one of the same answer (stream, timestamp and text). `sure` leaves out
  -- the copies an answer the engine closed may have left unread.
  local function copies(responses)
    local all, sure = 0, 0
    for _, r in ipairs(responses) do
      local seen = {}
      for _, l in ipairs(r.lines) do
        local k = l.stream .. " " .. l.ts .. " " .. l.text
        if seen[k] then
          all = all + 1
          if r.complete or l.after >= TAIL then sure = sure + 1 end
        end
        seen[k] = true
      end
    end
    return all, sure
  end

  -- Distinct lines the daemon sent (stream and text), over every answer.
  local function distinct(responses)
    local set, n = {}, 0
    for _, r in ipairs(responses) do
      for _, l in ipairs(r.lines) do
        local k = l.stream .. " " .. l.ts .. " " .. l.text
        if not set[k] then set[k], n = true, n + 1 end
      end
    end
    return n
  end

  -- Runs a container with driver options `opts` printing `cmd` while an
  -- engine (extra engine settings `engine_opts`) follows it through the
  -- proxy; returns its records, its /readers entry and the daemon's answers.
  local function follow(opts, cmd, engine_opts)
    t = tap.start(env.host)
    local url
    e, url = metrics.start_engine {
      docker_host = t.host, engine = engine_opts,
      top = string.format("select = { include = { name = { %q } } },", PREFIX .. "-*"),
    }
    proc.wait_for(function() return e:stderr_text():find("connected to the Docker daemon", 1, true) end,
                  20, "the engine to reach the daemon")
    local name = dockerenv.unique(PREFIX)
    local args = {}
    for _, o in ipairs(opts) do args[#args + 1] = o end
    env:run { name = name, cmd = cmd, args = args }
    env:wait_exit(name, 300)
    local entry
    proc.wait_for(function()
      entry = reader_entry(url, name)
      return entry and entry.state == "finished"
    end, 120, name .. " read to its end")
    return counts(e:json_records(), name), entry, t:logs_responses(), url
  end

  -- N numbered lines, 20 at a time with a 5 ms rest (at most 4,000 a second),
  -- after a pause in which the engine attaches (the files keep about 9,000)
  local numbered = string.format('sleep 2; i=1; while [ $i -le %d ]; do echo "line $i of the rotation spec"; ' ..
                                 'i=$((i+1)); [ $((i %% 20)) = 0 ] && usleep 5000; done; sleep 1', N)
  local function assert_numbered(count)
    for i = 1, N do
      local text = "line " .. i .. " of the rotation spec"
      assert.equal(1, count[text], text .. " arrived " .. tostring(count[text] or 0) .. " times")
    end
  end
  local JSON_FILE = { "--log-opt", "max-size=64k", "--log-opt", "max-file=5" }

  it("json-file, one stream: every line once, and exactly the daemon's copies counted", function()
    local count, entry, responses = follow(JSON_FILE, numbered)
    assert_numbered(count)
    local all, sure = copies(responses)
    for _, r in ipairs(responses) do assert.is_true(r.complete, "a logs answer was cut") end
    assert.equal(all, sure)
    print(string.format("\njson-file, default cycle: the daemon sent %d copies in %d answers; counted %d",
                        all, #responses, entry.repeated))
    assert.is_true(all > 0, "the daemon repeated nothing in about 40 rotations")
    assert.equal(all, entry.repeated)
  end)

  -- A resume reads the files from `since` while they rotate, and json-file
  -- may then skip lines (a run of some hundred lines of a rotated file in
  -- no answer at all, when the stream was cycled every 2 s while the
  -- container wrote): a busy stream is not cycled until it is quiet again.
  it("json-file with a 2 s cycle: every line once, and the copies counted are the daemon's", function()
    local count, entry, responses = follow(JSON_FILE, numbered, "cycle = 2,")
    assert_numbered(count)
    for text in pairs(count) do assert.matches("^line %d+ of the rotation spec$", text) end
    local all, sure = copies(responses)
    print(string.format("\njson-file, 2 s cycle: the daemon sent %d copies (%d surely read) in %d answers; " ..
                        "counted %d", all, sure, #responses, entry.repeated))
    assert.is_true(#responses >= 2, "the stream was cycled")
    assert.is_true(entry.repeated <= all)
    assert.is_true(entry.repeated >= sure)
  end)

  -- The local driver's follow stream skips a whole file where the driver
  -- rotates (Debian's dockerd 20.10: it reads on in the new file from the
  -- old one's offset, so the stream falls quiet while the new file fills).
  -- A reader checks a quiet stream of a local-driver container against
  -- the daemon's newest entry (tail=1) and resumes from its cursor when the
  -- daemon has more, and reads each span of a busy one again (since, no
  -- follow) to deliver what the stream skipped; the files still hold what
  -- was skipped. Here each file takes about two seconds to fill: 1,000
  -- lines a second, 128 KiB files.
  -- The daemon does not skip at every rotation, nor in every run (the fake
  -- daemon's skip case above always does).
  it("local driver rotation: every line once, although its follow stream skips each rotated file",
     function()
    local slow = string.format('sleep 2; i=1; while [ $i -le %d ]; do echo "line $i of the rotation spec"; ' ..
                               'i=$((i+1)); [ $((i %% 20)) = 0 ] && usleep 20000; done; sleep 1', N)
    local count, entry, responses, url = follow({ "--log-driver", "local", "--log-opt", "max-size=128k" },
                                                slow)
    assert_numbered(count)
    local all, sure = copies(responses)
    local status, body = metrics.get(url .. "/metrics")
    assert.equal(200, status)
    -- the default cycle is 300 s: every stream reopened here was behind
    local skipped = metrics.parse(body):value("engine_readers_cycled_total")
    print(string.format("\nlocal driver: %d answers, %d resumed after a skip, %d skipped lines found by " ..
                        "span checks; %d copies (%d surely read); counted %d",
                        #responses, skipped, entry.skipped, all, sure, entry.repeated))
    assert.is_true(entry.repeated <= all)
    assert.is_true(entry.repeated >= sure)
  end)

  -- With 64 KiB files at 4,000 lines a second a file fills in a third of a
  -- second and the daemon keeps about 1.5 s of log. Debian's dockerd 20.10
  -- then loses lines in its own reads of a compressed rotation (the
  -- default): the follow stream skips and stalls, and a read whose `since`
  -- is within the newest files can miss one being compressed
  -- (scripts/dev/local-reads.lua measures it). The span checks find much of
  -- what the stream skipped, not all of it in every run: what is asserted
  -- here is that no line arrives twice; the counts are printed.
  it("local driver, 64 KiB files at 4,000 lines a second: no line twice", function()
    local count, entry, responses = follow({ "--log-driver", "local", "--log-opt", "max-size=64k" },
                                           numbered)
    local delivered = 0
    for text, n in pairs(count) do
      assert.equal(1, n, text .. " arrived " .. n .. " times")
      assert.matches("^line %d+ of the rotation spec$", text)
      delivered = delivered + 1
    end
    local checks = 0
    for _, r in ipairs(responses) do
      if r.target:find("follow=0", 1, true) and not r.target:find("tail=", 1, true) then checks = checks + 1 end
    end
    print(string.format("\nlocal driver, 64 KiB: %d of %d lines delivered, %d of them found by %d span checks",
                        delivered, N, entry.skipped, checks))
  end)

  it("keeps a line the container prints many times a millisecond, every time", function()
    local M = 20000
    local count, entry, responses = follow({}, string.format("sleep 2; yes 'the same line' | head -n %d; sleep 1", M))
    assert.equal(M, count["the same line"])
    local all = copies(responses)
    assert.equal(all, entry.repeated)
  end)
end)

-- What `engine run` does with settings only an engine run shows: history =
-- "start" leaves out the history of containers running at start, the API
-- version is negotiated with an older daemon, and the file output rotates
-- by size and reopens its file on SIGUSR1 (for logrotate).
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

-- Sequence numbers of c0 among JSON lines, counted.
local function c0_seqs(lines)
  local count = {}
  for _, l in ipairs(lines) do
    local seq = tonumber(cjson.decode(l).line:match("^c0 (%d+)"))
    if seq then count[seq] = (count[seq] or 0) + 1 end
  end
  return count
end

describe("engine run #sanitize", function()
  local srv, e, tmp
  before_each(function()
    tmp = select(2, proc.sh("mktemp -d /tmp/erun.XXXXXX")):gsub("%s+$", "")
  end)
  after_each(function()
    local de, dsrv = e, srv
    e, srv = nil, nil
    proc.each(function() engine.release(de, dsrv) end,
              function() proc.sh("rm -rf " .. proc.quote(tmp)) end)
  end)

  it('with history = "start" reads only what running containers log after the start', function()
    -- 500 lines of history, then 50 lines a second
    srv = fake.start { "--containers", "1", "--rate", "50", "--preload", "500" }
    e = engine.start { pipeline = string.format([[
return { docker = { host = %q }, history = "start", batch = { flush_interval = 0.05 } }]], srv.host) }
    proc.wait_for(function()
      local n = 0
      for _ in pairs(c0_seqs(e:stdout_lines())) do n = n + 1 end
      return n >= 20
    end, 30, "20 new lines")
    assert.equal(0, e:stop("TERM"))
    local count, first = c0_seqs(e:stdout_lines()), math.huge
    for seq, n in pairs(count) do
      assert.equal(1, n, "line " .. seq)
      if seq < first then first = seq end
    end
    assert.is_true(first > 500, "history line " .. first .. " was read")
    local max = 0
    for seq in pairs(count) do if seq > max then max = seq end end
    for seq = first, max do assert.equal(1, count[seq], "line " .. seq) end
  end)

  it("reads the rest of a container's log when its follow stream ended before its last lines", function()
    -- the container writes 10,000 lines in a second and exits; the engine
    -- is held back (a slow filter, a small max_buffered), so the follow
    -- stream, which ends at the exit, has not sent most of them
    local LINES = 10000
    srv = fake.start { "--containers", "1", "--rate", "10000", "--lines", tostring(LINES), "--stdout-only",
                       "--line-bytes", "100", "--cut-on-exit" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05, max_lines = 50 },
  filters = { function(batch) local t = os.clock() while os.clock() - t < 0.02 do end end },
  engine = { max_buffered = 65536 },
}]], srv.host) }
    proc.wait_for(function() return e:stderr_text():find("[c0] stopped following", 1, true) end, 120,
                  "the reader to finish")
    assert.equal(0, e:stop("TERM"))
    local count = c0_seqs(e:stdout_lines())
    for seq = 1, LINES do assert.equal(1, count[seq], "line " .. seq) end
  end)

  it("negotiates the API version of an older daemon and uses it on every request", function()
    -- the fake refuses any request for a newer version than 1.30
    srv = fake.start { "--containers", "1", "--rate", "100", "--api-version", "1.30" }
    e = engine.start { pipeline = string.format([[
return { docker = { host = %q }, batch = { flush_interval = 0.05 } }]], srv.host) }
    proc.wait_for(function()
      local n = 0
      for _ in pairs(c0_seqs(e:stdout_lines())) do n = n + 1 end
      return n >= 50
    end, 30, "50 lines")
    assert.equal(0, e:stop("TERM"))
    assert.matches("(API 1.30)", e:stderr_text(), 1, true)
    assert.is_nil(e:stderr_text():find("too new", 1, true))
  end)

  -- Every c0 line once over the files given, none lost; returns the
  -- highest sequence number.
  local function once_over(files)
    local lines = {}
    for _, p in ipairs(files) do
      for _, l in ipairs(proc.lines(p)) do lines[#lines + 1] = l end
    end
    local count, max = c0_seqs(lines), 0
    for seq in pairs(count) do if seq > max then max = seq end end
    for seq = 1, max do assert.equal(1, count[seq], "line " .. seq) end
    return max
  end

  it("writes the file output and rotates it by size", function()
    local path = tmp .. "/out.jsonl"
    srv = fake.start { "--containers", "1", "--rate", "200" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "file", path = %q, format = "json", max_bytes = 20000, keep = 100 } },
}]], srv.host, path) }
    proc.wait_for(function() return proc.read(path .. ".2") end, 30, "two rotated files")
    assert.equal(0, e:stop("TERM"))
    local files = { path }
    for i = 1, 100 do
      local p = path .. "." .. i
      if proc.read(p) then files[#files + 1] = p end
    end
    assert.is_true(once_over(files) > 100)
  end)

  it("reopens the file output on SIGUSR1", function()
    local path = tmp .. "/out.jsonl"
    srv = fake.start { "--containers", "1", "--rate", "200" }
    e = engine.start { pipeline = string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  outputs = { { type = "file", path = %q, format = "json" } },
}]], srv.host, path) }
    proc.wait_for(function() return #(proc.lines(path)) >= 50 end, 30, "lines in the file")
    -- logrotate's way: move the file, then SIGUSR1; new lines go to a new
    -- file at the path, none to the moved one after the reopen
    local moved = tmp .. "/moved.jsonl"
    assert(os.rename(path, moved))
    e:signal("USR1")
    proc.wait_for(function() return e:stderr_text():find("reopening the output files", 1, true) end, 10,
                  "the reopen")
    proc.wait_for(function() return #(proc.lines(path)) >= 10 end, 30, "lines in the reopened file")
    local moved_size = #(proc.read(moved) or "")
    proc.sleep(0.5)
    assert.equal(moved_size, #(proc.read(moved) or ""), "lines went on to the moved file")
    assert.equal(0, e:stop("TERM"))
    assert.is_true(once_over { moved, path } > 60)
  end)
end)

-- Cursors saved in the state directory: an engine stopped (or killed) and
-- started again goes on where the last one's outputs acknowledged; the
-- cursors of containers the daemon no longer has are forgotten; a file over
-- the size limit is read rather than discarded; with fsync, the folder is
-- fsync'ed after each rename.
local cjson = require "cjson"
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local proc = require "spec.support.proc"

local function pipeline(host, engine_opts)
  return string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { backoff_initial = 0.05, backoff_max = 0.5, %s },
}]], host, engine_opts or "")
end

local T = "1704067200000000000"

-- A 64-hex id for container number i of a spec's own.
local function gone_id(i) return string.format("%064x", 0xdead0000 + i) end

-- The ids in a cursor file.
local function saved_ids(path)
  local text = proc.read(path)
  assert(text, "no file " .. path)
  local doc = cjson.decode(text)
  local ids = {}
  for id, entry in pairs(doc.containers) do ids[id] = entry end
  return ids
end

-- How many times each sequence number of container c0 was delivered, over
-- the outputs of several engine runs.
local function counts(...)
  local count, max = {}, 0
  for _, e in ipairs { ... } do
    for _, r in ipairs(e:json_records()) do
      local name, seq = r.line:match("^(%S+) (%d+)")
      if name == "c0" then
        seq = tonumber(seq)
        count[seq] = (count[seq] or 0) + 1
        if seq > max then max = seq end
      end
    end
  end
  return count, max
end

local function received(e)
  local n = 0
  for _, r in ipairs(e:json_records()) do if r.line:match("^c0 ") then n = n + 1 end end
  return n
end

describe("an engine restarted on the same state directory #sanitize", function()
  local srv, a, b, state
  before_each(function()
    local _, dir = proc.sh("mktemp -d /tmp/state.XXXXXX")
    state = dir:gsub("%s+$", "")
  end)
  after_each(function()
    local done = { a, b, srv }
    a, b, srv = nil, nil, nil
    proc.each(function() engine.release(unpack(done, 1, 3)) end,
              function() proc.sh("rm -rf " .. proc.quote(state)) end)
  end)

  it("after SIGTERM, resumes with no line lost and none repeated", function()
    srv = fake.start { "--containers", "1", "--rate", "300" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(a) >= 300 end, 20, "lines in the first run")
    assert.equal(0, a:stop("TERM"))
    proc.sleep(0.5) -- the container logs on meanwhile
    b = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(b) >= 300 end, 20, "lines in the second run")
    assert.matches("resuming from the saved cursor", b:stderr_text(), 1, true)
    assert.equal(0, b:stop("TERM"))
    local count, max = counts(a, b)
    for i = 1, max do assert.equal(1, count[i], "line " .. i) end
  end)

  it("after SIGKILL, resumes with no line lost, repeating only what was not yet saved", function()
    srv = fake.start { "--containers", "1", "--rate", "300" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    -- the lines on the first run's stdout, sampled until the kill
    local samples = {}
    local function lines_out()
      local _, n = (proc.read(a.dir .. "/stdout") or ""):gsub("\n", "")
      return n
    end
    proc.wait_for(function()
      samples[#samples + 1] = { t = proc.now(), n = lines_out() }
      return samples[#samples].n >= 1500
    end, 60, "lines in the first run")
    a:signal("KILL")
    local killed_at = proc.now()
    a:wait(10)
    -- What one checkpoint_interval can hold, measured from outside: the
    -- lines the first run wrote in the last interval (1 s) before the kill,
    -- and half a second for a save's time and the sampling.
    local before = 0
    for _, sample in ipairs(samples) do
      if sample.t <= killed_at - 1.5 then before = sample.n end
    end
    local window = lines_out() - before
    b = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(b) >= 300 end, 20, "lines in the second run")
    assert.equal(0, b:stop("TERM"))
    local count, max = counts(a, b)
    local dups = 0
    for i = 1, max do
      assert.is_true((count[i] or 0) >= 1, "line " .. i .. " was lost")
      dups = dups + (count[i] - 1)
    end
    print(string.format("SIGKILL restart: %d lines, %d repeated, %d written in the last 1.5 s before the kill",
                        max, dups, window))
    assert.is_true(dups <= window, dups .. " lines repeated, more than the " .. window ..
                   " written in the last checkpoint_interval before the kill")
  end)

  it("starts empty, with a warning, when the cursor file is corrupt", function()
    local f = assert(io.open(state .. "/cursors.json", "w"))
    f:write("{not json")
    f:close()
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "20" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = state }
    proc.wait_for(function() return received(a) >= 20 end, 20, "every line")
    assert.equal(0, a:stop("TERM"))
    assert.matches("could not be read", a:stderr_text(), 1, true)
    assert.truthy(proc.read(state .. "/cursors.json.corrupt"))
  end)

  it("keeps running in memory when the state directory cannot be written", function()
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "20" }
    a = engine.start { pipeline = pipeline(srv.host), state_dir = "/proc/engine-state" }
    proc.wait_for(function() return received(a) >= 20 end, 20, "every line")
    assert.equal(0, a:stop("TERM"))
    assert.matches("cursors are kept in memory only", a:stderr_text(), 1, true)
  end)

  it("forgets the cursors of containers the daemon no longer has, after a reconcile and a grace", function()
    local entries = {}
    for i = 1, 500 do
      entries[i] = string.format('"%s":{"newest":"%s","floor":"%s","evicted":null,"keys":["%s,1,1,00000000000000%02x"]}',
                                 gone_id(i), T, T, T, i % 256)
    end
    local f = assert(io.open(state .. "/cursors.json", "w"))
    f:write('{"version":2,"containers":{' .. table.concat(entries, ",") .. "}}")
    f:close()
    srv = fake.start { "--containers", "1", "--rate", "100" }
    a = engine.start { pipeline = pipeline(srv.host, "reconcile_interval = 1"), state_dir = state }
    proc.wait_for(function() return a:stderr_text():find("loaded the cursors of 500 containers", 1, true) end,
                  20, "the cursors loaded")
    local ids
    proc.wait_for(function()
      ids = saved_ids(state .. "/cursors.json")
      for i = 1, 500 do if ids[gone_id(i)] then return false end end
      return next(ids) ~= nil -- the live container's cursor stays
    end, 30, "the cursors of the 500 gone containers to leave the file")
    assert.matches("forgot the cursors of 500 containers the daemon no longer has", a:stderr_text(), 1, true)
    assert.equal(0, a:stop("TERM"))
    ids = saved_ids(state .. "/cursors.json")
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("reads a file over the size limit one container at a time, and writes it back smaller", function()
    -- the layout the engine wrote before: keys first, "version" last; 31
    -- entries of 9 MB each (over the 8 MiB kept per entry) and a small one
    local keys = {}
    for i = 1, 210000 do keys[i] = string.format("%s,1,10,%016x", T, i) end
    local list = '{"keys":["' .. table.concat(keys, '","') .. '"],'
    keys = nil
    local small = string.format('"%s":{"keys":["%s,2,3,00000000000000ab"],"newest":"%s","floor":"%s"}',
                                gone_id(0), T, T, T)
    local f = assert(io.open(state .. "/cursors.json", "w"))
    f:write('{"containers":{', small)
    for i = 1, 31 do
      f:write(string.format(',"%s":', gone_id(i)), list,
              string.format('"newest":"%s","floor":"%s","evicted":"%s"}', T, T, T))
    end
    f:write('},"version":2}')
    f:close()
    list = nil
    assert.is_true(#proc.read(state .. "/cursors.json") > 256 * 1024 * 1024)
    collectgarbage()
    srv = fake.start { "--containers", "1", "--rate", "100" }
    a = engine.start { pipeline = pipeline(srv.host, "reconcile_interval = 60"), state_dir = state }
    proc.wait_for(function() return a:stderr_text():find("loaded the cursors of 32 containers", 1, true) end,
                  60, "the cursors loaded")
    assert.matches("over the limit of 256 MiB: reading it one container at a time", a:stderr_text(), 1, true)
    local ids
    proc.wait_for(function()
      local text = proc.read(state .. "/cursors.json")
      if #text > 1024 * 1024 then return false end
      ids = saved_ids(state .. "/cursors.json")
      return ids[gone_id(0)] ~= nil
    end, 30, "the file written back")
    assert.equal(0, a:stop("TERM"))
    assert.is_nil(proc.read(state .. "/cursors.json.corrupt"))
    assert.same({ T .. ",2,3,00000000000000ab" }, ids[gone_id(0)].keys)
    for i = 1, 31 do
      local e = ids[gone_id(i)]
      assert.is_table(e, "container " .. i)
      assert.same({}, e.keys) -- too large to keep: it resumes after its newest line
      assert.equal(T, e.evicted)
    end
  end)

  it("fsyncs the state folder after renaming the file, when fsync is on", function()
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "20" }
    local pfile, trace, dir = state .. "/pipeline.lua", state .. "/trace", state .. "/s"
    local f = assert(io.open(pfile, "w"))
    f:write(pipeline(srv.host, "fsync = true, checkpoint_interval = 0.2"))
    f:close()
    -- the engine runs 3 s under strace, then gets SIGTERM (and saves once more)
    -- from timeout(1), whose own status (124) is not the engine's
    local _, out = proc.sh(proc.join { "strace", "-f", "-e", "trace=openat,fsync,rename,renameat,renameat2",
                                        "-o", trace, "timeout", "-s", "TERM", "3", engine.bin(), "run",
                                        "--state-dir", dir, pfile } .. " >/dev/null 2>" .. proc.quote(state .. "/err"), 30)
    local log = proc.read(trace) or ""
    assert.matches("stopped: readers live 0", proc.read(state .. "/err") or "", 1, true)
    -- the folder, opened as a directory, then that descriptor fsync'ed by
    -- the same thread before it is closed
    local synced, open_dir = false, {}
    local dir_open = 'openat%(AT_FDCWD, "' .. dir:gsub("%p", "%%%0") .. '", O_RDONLY|[^)]*DIRECTORY[^)]*%)%s*= (%d+)'
    for line in log:gmatch("[^\n]+") do
      local pid = line:match("^(%d+)")
      local fd = line:match(dir_open)
      if fd then open_dir[pid] = fd
      elseif open_dir[pid] and line:match("fsync%(" .. open_dir[pid] .. "%)%s*= 0") then synced = true end
    end
    assert.is_true(synced, "the folder was never fsync'ed:\n" .. log:sub(1, 3000))
    assert.truthy(log:find('cursors%.json%.tmp", [^\n]*cursors%.json"%) = 0'), "no rename:\n" .. log:sub(1, 3000))
  end)
end)

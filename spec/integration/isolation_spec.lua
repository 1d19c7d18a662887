-- Filters that cannot take the engine down (engine.filter_isolation =
-- "process"): a filter that segfaults through FFI, aborts, is
-- stuck inside one C call, loops in JIT-compiled code or runs out of Lua
-- memory is reported with its name, its batch follows on_error, the filter
-- process starts again, the engine reads on and stops within its bound, and
-- no process is left behind. The filter processes fork from the zygote, a
-- child of the engine forked before any thread: a restart or a reload forks
-- a new one from it, under the sanitizers too.
local engine = require "spec.support.engine"
local fake = require "spec.support.fake"
local metrics = require "spec.support.metrics"
local proc = require "spec.support.proc"

local LINES = 200
local STOP_TIMEOUT = 3

-- A pipeline whose filter marks each record it passes (`seen`), does `bad`
-- (Lua code) on the record whose line is "c0 <at>", and follows on_error.
local function pipeline(host, o)
  return string.format([[
local ffi = require("ffi")
ffi.cdef "void abort(void);"
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { filter_isolation = "process", stop_timeout = %d, filter_timeout = %g, %s },
  filters = { { name = "fragile", on_error = %q, %s
    init = function(ctx) ctx.state.inits = (ctx.state.inits or 0) + 1 end,
    process = function(batch, ctx)
      for _, r in ipairs(batch) do
        if r.line == "c0 %d" then %s end
        r.seen = true
      end
      return batch
    end } },
  outputs = { { type = "stdout" } }, %s
}]], host, o.stop_timeout or STOP_TIMEOUT, o.filter_timeout or 1, o.engine or "", o.on_error or "pass",
    o.extra or "", o.at or 40, o.bad, o.top or "")
end

-- The numbers of c0's lines delivered, each with how often, and whether the
-- filter saw it.
local function delivered(recs)
  local count, seen = {}, {}
  for _, r in ipairs(recs) do
    local n = tonumber(r.line:match("^c0 (%d+)$"))
    if n then
      count[n] = (count[n] or 0) + 1
      seen[n] = r.seen
    end
  end
  return count, seen
end

local children = proc.children

-- The engine's processes: its zygote (its one child) and the zygote's
-- children (the filter process); nil when they are not (yet) so.
local function tree(pid)
  local kids = children(pid)
  if #kids ~= 1 then return nil end
  local workers = children(kids[1])
  if #workers ~= 1 then return nil end
  return { zygote = kids[1], worker = workers[1] }
end

-- Waits for the engine's tree, a filter process other than `not_worker`.
local function wait_tree(e, not_worker)
  local t
  proc.wait_for(function()
    t = tree(e:pid())
    return t and t.worker ~= not_worker
  end, 20, "the zygote and a filter process")
  return t
end

local function alive(pid) return proc.read("/proc/" .. pid .. "/stat") ~= nil end

-- Stops e within STOP_TIMEOUT + 1 s and checks that its zygote and filter
-- process are gone too.
local function stop_clean(e)
  local t = wait_tree(e)
  e:stop_in_bound(STOP_TIMEOUT + 1)
  for _, k in ipairs { t.zygote, t.worker } do
    proc.wait_for(function() return not alive(k) end, 5, "the process " .. k .. " to end")
  end
end

describe("a filter that fails hard #sanitize #tsan", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  local function run(o)
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", tostring(LINES), "--linger",
                       "--stdout-only" }
    e = engine.start { pipeline = pipeline(srv.host, o) }
    -- every line, or (a batch dropped) up to the last one
    local recs = e:wait_records(function(r)
      local count = delivered(r)
      local n = 0
      for _ in pairs(count) do n = n + 1 end
      return o.last and count[LINES] or n >= LINES
    end, 30)
    return recs
  end

  local function assert_reported(says)
    local log = e:stderr_text()
    assert.matches("filter fragile %(on_error=[%a_]+%): [^\n]*" .. says, log)
    assert.matches("restarting the filter process", log, 1, true)
  end

  it("segfaulting through FFI: reported, the batch passes as it came, later lines are filtered", function()
    run { bad = "ffi.cast('int *', 0)[0] = 1" }
    assert_reported("the filter process")
    -- the new filter process came from the zygote, which the crash left as it was
    local t = wait_tree(e)
    assert.is_true(alive(t.worker))
    local count, seen = delivered(e:json_records())
    for i = 1, LINES do assert.equal(1, count[i], "line " .. i) end
    assert.is_nil(seen[40], "the crashed batch went on unfiltered")
    assert.is_true(seen[LINES], "the new filter process filters the later lines")
    stop_clean(e)
  end)

  it("aborting through FFI: the batch goes to the dead-letter file with the reason", function()
    local dl = os.tmpname()
    run { bad = "ffi.C.abort()", on_error = "dead_letter", top = string.format("dead_letter = { path = %q },", dl),
          last = true }
    assert_reported("the filter process")
    local count, seen = delivered(e:json_records())
    assert.is_nil(count[40], "the batch was dead-lettered, not delivered")
    assert.is_true(seen[LINES])
    stop_clean(e)
    local text = proc.read(dl) or ""
    os.remove(dl)
    assert.matches('"filter":"fragile"', text, 1, true)
    assert.matches('"line":"c0 40"', text, 1, true)
    assert.matches("the filter process", text, 1, true)
  end)

  -- logrotate moves the dead-letter file and sends SIGUSR1; a filter
  -- process forked after that (from the zygote, which loaded the program
  -- before) writes its dead letters to the new file at the path too
  it("a filter process started after SIGUSR1 writes dead letters to the file now at the path", function()
    local dl = os.tmpname()
    srv = fake.start { "--containers", "1", "--rate", "50", "--lines", tostring(LINES), "--linger",
                       "--stdout-only" }
    e = engine.start { pipeline = string.format([[
local ffi = require("ffi")
ffi.cdef "void abort(void);"
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { filter_isolation = "process", stop_timeout = %d },
  dead_letter = { path = %q },
  filters = { { name = "fragile", on_error = "dead_letter",
    process = function(batch)
      for _, r in ipairs(batch) do
        if r.line == "c0 100" then ffi.C.abort() end
        if r.line == "c0 150" then error("refused") end
      end
      return batch
    end } },
  outputs = { { type = "stdout" } },
}]], srv.host, STOP_TIMEOUT, dl) }
    e:wait_records(function(r) return delivered(r)[50] end, 30)
    assert(os.rename(dl, dl .. ".1"))
    e:signal("USR1")
    e:wait_records(function(r) return delivered(r)[LINES] end, 30)
    stop_clean(e)
    local old, new = proc.read(dl .. ".1") or "", proc.read(dl) or ""
    os.remove(dl)
    os.remove(dl .. ".1")
    assert.matches('"line":"c0 100"', new, 1, true) -- the engine's, for the crashed process
    assert.matches('"line":"c0 150"', new, 1, true) -- the new filter process's own
    assert.matches("refused", new, 1, true)
    assert.equal("", old)
  end)

  it("stuck in a backtracking pattern: timed out, dropped, the engine reads on", function()
    local t0 = proc.now()
    run { bad = "local s = string.rep('x', 5000); s:match('(.-)x(.-)x(.-)y')", on_error = "drop",
          last = true }
    assert_reported("filter timed out after 1 s")
    -- reported within filter_timeout + 1 s of the line (the whole run is
    -- about a second of lines)
    assert.is_true(proc.now() - t0 < 1 + 1 + 1 + 5)
    local count, seen = delivered(e:json_records())
    assert.is_nil(count[40])
    assert.is_true(seen[LINES])
    stop_clean(e)
  end)

  it("looping in JIT-compiled code: timed out, the batch passes", function()
    run { bad = "local x = 0; while true do x = x + 1 end" }
    assert_reported("filter timed out")
    local count, seen = delivered(e:json_records())
    for i = 1, LINES do assert.equal(1, count[i], "line " .. i) end
    assert.is_nil(seen[40])
    assert.is_true(seen[LINES])
    stop_clean(e)
  end)

  it("out of Lua memory: a filter error, the process and the engine go on", function()
    run { bad = "local t = {}; for i = 1, 1e9 do t[i] = {i} end", engine = "lua_memory = 8388608" }
    local log = e:stderr_text()
    assert.matches("filter fragile %(on_error=pass%):[^\n]*not enough memory", log)
    local count, seen = delivered(e:json_records())
    for i = 1, LINES do assert.equal(1, count[i], "line " .. i) end
    assert.is_true(seen[LINES])
    stop_clean(e)
  end)

  it("a stop while a filter is stuck in C ends within stop_timeout, leaving nothing behind", function()
    srv = fake.start { "--containers", "1", "--rate", "200", "--lines", "60", "--linger", "--stdout-only" }
    e = engine.start { pipeline = pipeline(srv.host, {
      at = 10, filter_timeout = 60, bad = "local s = string.rep('x', 5000); s:match('(.-)x(.-)x(.-)y')" }) }
    proc.wait_for(function() return e:stderr_text():find("following container", 1, true) end, 20, "a reader")
    proc.sleep(1) -- line 10 is in the filter by now
    stop_clean(e)
    assert.matches("filter aborted: engine stopping", e:stderr_text(), 1, true)
    assert.is_nil(e:stderr_text():find("stuck in a C function", 1, true))
    -- the stuck batch and what followed went on unfiltered: nothing lost
    local count = delivered(e:json_records())
    for i = 1, 60 do assert.equal(1, count[i], "line " .. i) end
  end)
end)

describe("the filter process #sanitize #tsan", function()
  local srv, e
  after_each(function() e, srv = engine.release(e, srv) end)

  it("keeps timers, init, records kept across batches and reloads working across a restart", function()
    srv = fake.start { "--containers", "1", "--rate", "50", "--lines", "150", "--linger", "--stdout-only" }
    local src = [[
local ffi = require("ffi")
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { filter_isolation = "process", stop_timeout = 3 },
  filters = { { name = "keeper",
    init = function(ctx) ctx.state.ticks = 0 end,
    timers = { { every = 0.2, handler = function(ctx)
      ctx.state.ticks = ctx.state.ticks + 1
      ctx.emit { line = "tick " .. ctx.state.ticks }
    end } },
    process = function(batch, ctx)
      for _, r in ipairs(batch) do
        if r.line == "c0 50" and not ctx.state.crashed then ffi.cast("int *", 0)[0] = 1 end
        r.prev = ctx.state.last and ctx.state.last.line
        ctx.state.last = r
      end
      return batch
    end } },
  outputs = { { type = "stdout" } },
}]]
    e = engine.start { pipeline = string.format(src, srv.host) }
    -- the filter process is the zygote's child, the zygote the engine's
    e:wait_records(function(recs) return delivered(recs)[5] ~= nil end, 30)
    local before = wait_tree(e)
    e:wait_records(function(recs)
      local count = delivered(recs)
      return count[150] ~= nil
    end, 30)
    -- after the crash (line 50): a new filter process, forked by the same zygote
    local after = wait_tree(e, before.worker)
    assert.equal(before.zygote, after.zygote)
    assert.is_false(alive(before.worker))
    local recs = e:json_records()
    local count = delivered(recs)
    for i = 1, 150 do assert.equal(1, count[i], "line " .. i) end
    -- the timer ran before and after the restart (init ran again: its count
    -- started over)
    local ticks, restarted = 0, false
    for _, r in ipairs(recs) do
      local n = tonumber(r.line:match("^tick (%d+)$"))
      if n then
        ticks = ticks + 1
        if ticks > 1 and n == 1 then restarted = true end
      end
    end
    assert.is_true(restarted, "the ticks started over after the restart")
    -- records kept across batches: each line after the first names the one
    -- before it (across batches, in the new process too)
    local prev_ok = 0
    for _, r in ipairs(recs) do
      local n = tonumber(r.line:match("^c0 (%d+)$"))
      if n and n > 60 and r.prev == "c0 " .. (n - 1) then prev_ok = prev_ok + 1 end
    end
    assert.is_true(prev_ok >= 80, "kept records: " .. prev_ok)
    -- a reload starts a new filter process with the new filters
    local f = assert(io.open(e.pipeline_path, "w"))
    f:write(string.format([[
return {
  docker = { host = %q },
  batch = { flush_interval = 0.05 },
  engine = { filter_isolation = "process", stop_timeout = 3 },
  filters = { { name = "second", init = function() end,
    timers = { { every = 0.2, handler = function(ctx) ctx.emit { line = "second tick" } end } } } },
  outputs = { { type = "stdout" } },
}]], srv.host))
    f:close()
    e:signal("HUP")
    e:wait_records(function(r)
      for _, x in ipairs(r) do if x.line == "second tick" then return true end end
    end, 20)
    -- the reloaded pipeline's filter process comes from the zygote, which
    -- loaded the new file
    local reloaded = wait_tree(e, after.worker)
    assert.equal(before.zygote, reloaded.zygote)
    assert.is_nil(e:stderr_text():find("the zygote could not load", 1, true))
    stop_clean(e)
  end)

  it("counts a reloaded pipeline's filter calls as the engine's (the zygote maps its counts)", function()
    srv = fake.start { "--containers", "1", "--rate", "100", "--lines", "400", "--linger", "--stdout-only" }
    local function filters(name)
      return string.format([[ { name = %q, process = function(b) return b end } ]], name)
    end
    local url
    e, url = metrics.start_engine { docker_host = srv.host, filters = filters("first") }
    local function calls(name)
      local status, body = metrics.get(url .. "/metrics")
      if status ~= 200 then return 0 end
      return metrics.parse(body):value("engine_filter_calls_total", { filter = name }) or 0
    end
    proc.wait_for(function() return calls("first") > 0 end, 20, "calls of the first filter")
    local f = assert(io.open(e.pipeline_path, "w"))
    f:write(metrics.pipeline { docker_host = srv.host, listen = url:match("//(.*)$"),
                               filters = filters("second") })
    f:close()
    e:signal("HUP")
    proc.wait_for(function() return calls("second") > 0 end, 20, "calls of the reloaded filter")
    assert.is_nil(e:stderr_text():find("the zygote could not load", 1, true))
    local t = wait_tree(e)
    assert.is_true(alive(t.worker))
    stop_clean(e)
  end)
end)

-- filter_api_spec.lua - the Lua filter API: hooks, timers, ctx.emit, error
-- policies and dead letters, the memory limit, routing and the file output,
-- selections, hot reload and the sandbox; through build/pipeline_feed.
package.path = "lua/?.lua;" .. package.path
local feed = require("spec.support.feed")

local run, numbered, input = feed.run, feed.numbered, feed.input

describe("filter hooks", function()
  it("runs init once before the first batch, keeps state between batches, and shutdown at the end", function()
    local r = feed.run([[
      local calls = 0
      return { filters = { {
        name = "count",
        init = function(ctx) ctx.state.started = "yes"; ctx.state.seen = 0 end,
        process = function(batch, ctx)
          calls = calls + 1
          ctx.state.seen = ctx.state.seen + #batch
          for _, rec in ipairs(batch) do rec.call, rec.started = calls, ctx.state.started end
        end,
        shutdown = function(ctx)
          ctx.emit({ line = "total " .. ctx.state.seen .. " in " .. calls .. " calls" })
        end,
      } } }]], numbered(3, 2))
    assert.equal(0, r.code)
    assert.equal(7, #r.records)
    for i = 1, 6 do
      assert.equal(math.floor((i - 1) / 2) + 1, r.records[i].call)
      assert.equal("yes", r.records[i].started)
    end
    local last = r.records[7]
    assert.equal("total 6 in 3 calls", last.line)
    assert.equal("count", last.name)
    assert.equal("", last.container)
    assert.equal("stdout", last.stream)
    assert.is_truthy(last.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%dZ$"), last.time)
    assert.same({ calls = 5, errors = 0, timeouts = 0, dead_letters = 0, disabled = 0 }, r.filters.count)
  end)

  it("adds what process emits after the filter's result, with the batch's container fields", function()
    local r = run([[return { filters = {
      { name = "e", process = function(batch, ctx)
          ctx.emit({ line = "summary of " .. #batch, time = "2020-01-01T00:00:00.000000000Z" })
          return { batch[1] }
        end },
      function(batch) for _, rec in ipairs(batch) do rec.second = true end end,
    } }]], numbered(1, 3))
    assert.same({ "b1-l1", "summary of 3" }, feed.lines_of(r.records))
    local s = r.records[2]
    assert.same({ "id-web", "web", "img", "stdout", "2020-01-01T00:00:00.000000000Z", true },
      { s.container, s.name, s.image, s.stream, s.time, s.second })
  end)

  it("runs timers on the pipeline thread; what they emit goes through the later filters", function()
    local r = run([[
      local n, seen = 0, 0
      return { filters = {
        { name = "counter",
          process = function(batch) n = n + #batch end,
          timers = { { every = 0.01, handler = function(ctx)
            if n > 0 then
              ctx.emit({ line = "count " .. n })
              seen, n = seen + n, 0
              -- the run ends once every line was counted, however slow the machine
              if seen == 4 then local f = assert(io.open("@DIR@/ticked", "w")); f:close() end
            end
          end } } },
        { name = "tag", process = function(batch) for _, r in ipairs(batch) do r.tagged = 1 end end },
      } }]], numbered(2, 2), { args = { "--lockstep", "--finish-when", "@DIR@/ticked" } })
    assert.equal(0, r.code)
    local counts = {}
    for _, rec in ipairs(r.records) do
      assert.equal(1, rec.tagged)
      if rec.line:match("^count") then counts[#counts + 1] = tonumber(rec.line:match("%d+")) end
    end
    local total = 0
    for _, c in ipairs(counts) do total = total + c end
    assert.is_true(#counts >= 1)
    assert.equal(4, total)
    assert.equal("counter", r.records[#r.records].name)
  end)

  it("refuses emit in init and records without a string line", function()
    local r = run([[return { filters = {
      { name = "a", init = function(ctx) ctx.emit({ line = "x" }) end, process = function() end },
      { name = "b", process = function(b, ctx) ctx.emit({ text = "no line" }) end },
    } }]], numbered(1, 1))
    assert.is_truthy(r.err:find("ctx.emit works in process, timers and shutdown", 1, true), r.err)
    assert.is_truthy(r.err:find("a record needs a string `line`", 1, true), r.err)
    assert.equal(1, r.filters.a.disabled)
    assert.equal(1, r.filters.b.errors)
  end)
end)

describe("errors in hooks", function()
  it("disables a filter whose init fails; its batches follow on_error", function()
    local r = run([[return { filters = {
      { name = "broken_pass", init = function() error("no config") end,
        process = function(b) for _, r in ipairs(b) do r.touched = true end end },
      { name = "broken_drop", on_error = "drop", select = { include = { name = "db" } },
        init = function() error("no db") end, process = function() end },
    } }]], { { { "web", nil, nil, "w" } }, { { "db", nil, nil, "d" } } })
    assert.equal(0, r.code)
    assert.same({ "w" }, feed.lines_of(r.records))
    assert.is_nil(r.records[1].touched)
    assert.is_truthy(r.err:find("filter broken_pass: init: " .. r.path .. ":2: no config", 1, true), r.err)
    assert.is_truthy(r.err:find("filter broken_pass is disabled: its init failed; its batches follow on_error=pass", 1, true), r.err)
    assert.same({ calls = 1, errors = 1, timeouts = 0, dead_letters = 0, disabled = 1 }, r.filters.broken_pass)
    assert.equal(1, r.filters.broken_drop.disabled)
    assert.equal(2, r.stats.filter_errors)
  end)

  it("logs a process error with the filter's and the container's names", function()
    local r = run([[return { filters = { { name = "p", process = function() error("bad line") end } } }]],
      { { { "shop", nil, nil, "x" } } })
    assert.is_truthy(r.err:find("%[shop%] filter p %(on_error=pass%): .-bad line"), r.err)
    assert.equal(1, #r.records)
  end)

  it("logs a failing timer, discards what it emitted and keeps running", function()
    local r = run([[return { filters = { { name = "t", process = function() end,
      timers = { { every = 0.01, handler = function(ctx)
        ctx.emit({ line = "lost" })
        local f = assert(io.open("@DIR@/ran", "w")); f:close()
        error("tick failed")
      end } } } } }]], numbered(2, 1), { args = { "--finish-when", "@DIR@/ran" } })
    assert.equal(0, r.code)
    assert.same({ "b1-l1", "b2-l1" }, feed.lines_of(r.records))
    assert.is_truthy(r.err:find("filter t: timer 1: " .. r.path .. ":5: tick failed", 1, true), r.err)
    assert.is_true(r.filters.t.errors >= 1)
  end)

  it("logs a failing shutdown and still flushes the outputs", function()
    local r = run([[return { filters = { { name = "s", process = function() end,
      shutdown = function(ctx) ctx.emit({ line = "partial" }); error("cannot save") end } } }]], numbered(1, 1))
    assert.equal(0, r.code)
    assert.same({ "b1-l1" }, feed.lines_of(r.records))
    assert.is_truthy(r.err:find("filter s: shutdown: " .. r.path .. ":2: cannot save", 1, true), r.err)
    assert.equal(1, r.filters.s.errors)
  end)

  it("counts errors per filter", function()
    local r = run([[return { filters = {
      { name = "odd", process = function(b) if b[1].line:match("^b[13]") then error("odd") end end },
      { name = "fine", process = function() end },
    } }]], numbered(4, 1))
    assert.same({ calls = 4, errors = 2, timeouts = 0, dead_letters = 0, disabled = 0 }, r.filters.odd)
    assert.same({ calls = 4, errors = 0, timeouts = 0, dead_letters = 0, disabled = 0 }, r.filters.fine)
  end)
end)

describe("on_error", function()
  local source = [[return {
    dead_letter = { path = "@DIR@/dead.jsonl" },
    filters = { { name = "f", on_error = "%s", process = function(b)
      for _, r in ipairs(b) do r.seen = true end
      if b[1].line:match("^b2") then error("batch two is bad") end
    end } } }]]

  it("pass: the failed batch goes on unchanged", function()
    local r = run(source:format("pass"), numbered(3, 2))
    assert.same({ "b1-l1", "b1-l2", "b2-l1", "b2-l2", "b3-l1", "b3-l2" }, feed.lines_of(r.records))
    assert.equal(1, r.stats.filter_errors)
  end)

  it("drop: the failed batch is dropped", function()
    local r = run(source:format("drop"), numbered(3, 2))
    assert.same({ "b1-l1", "b1-l2", "b3-l1", "b3-l2" }, feed.lines_of(r.records))
    assert.equal(0, r.stats.dead_letters)
  end)

  it("dead_letter: the failed batch goes to the dead-letter file as one JSON line", function()
    local r = run(source:format("dead_letter"), numbered(3, 2), { read = { "dead.jsonl" } })
    assert.same({ "b1-l1", "b1-l2", "b3-l1", "b3-l2" }, feed.lines_of(r.records))
    local dead = feed.decode_lines(r.files["dead.jsonl"])
    assert.equal(1, #dead)
    assert.equal("f", dead[1].filter)
    assert.equal("id-web", dead[1].container)
    assert.equal("web", dead[1].name)
    assert.is_truthy(dead[1].error:find("batch two is bad", 1, true), dead[1].error)
    assert.same({ "b2-l1", "b2-l2" }, feed.lines_of(dead[1].records))
    assert.is_true(dead[1].records[1].seen) -- fields changed in place stay changed
    assert.equal(1, r.stats.dead_letters)
    assert.equal(1, r.filters.f.dead_letters)
  end)

  it("dead_letter: a filter's own path wins over the top-level one; bad returns count too", function()
    local r = run([[return {
      dead_letter = { path = "@DIR@/top.jsonl" },
      filters = { { name = "g", on_error = "dead_letter", dead_letter = { path = "@DIR@/g.jsonl" },
        process = function() return 42 end } } }]], numbered(1, 1), { read = { "top.jsonl", "g.jsonl" } })
    assert.equal(0, #r.records)
    assert.is_nil(r.files["top.jsonl"]) -- opened only by filters that use it
    local dead = feed.decode_lines(r.files["g.jsonl"])
    assert.equal("filter g returned a number, expected a table of records or nil", dead[1].error)
  end)

  it("dead_letter needs a path", function()
    local r = run([[return { filters = { { on_error = "dead_letter", process = print } } }]], {})
    assert.equal(2, r.code)
    assert.is_truthy(r.err:find('filters[1].on_error is "dead_letter" but there is no dead_letter', 1, true), r.err)
  end)
end)

describe("the Lua memory limit", function()
  it("turns an allocation beyond engine.lua_memory into an error in the filter, not a crash", function()
    local r = run([[return {
      engine = { lua_memory = 16 * 1024 * 1024 },
      filters = { { name = "hog", process = function(b)
        if b[1].line:match("^b1") then
          local t = {}
          for i = 1, 1e7 do t[i] = ("x"):rep(64) .. i end
        end
        if b[1].line:match("^b2") then local s = ("y"):rep(64 * 1024 * 1024) end
        for _, r in ipairs(b) do r.ok = true end
      end } } }]], numbered(3, 2), { args = { "--lockstep" } })
    assert.equal(0, r.code)
    assert.same({ "b1-l1", "b1-l2", "b2-l1", "b2-l2", "b3-l1", "b3-l2" }, feed.lines_of(r.records))
    assert.is_nil(r.records[1].ok)
    assert.is_nil(r.records[3].ok)
    assert.is_true(r.records[5].ok)
    assert.equal(2, r.filters.hog.errors)
    assert.is_truthy(r.err:find("filter hog (on_error=pass): not enough memory", 1, true), r.err)
  end)

  it("rejects a limit below 1 MiB", function()
    local r = run("return { engine = { lua_memory = 1000 } }", {})
    assert.equal(2, r.code)
    assert.is_truthy(r.err:find("engine.lua_memory must be an integer number of bytes from 1048576", 1, true), r.err)
  end)
end)

describe("routing and the file output", function()
  it("sends a record with `output` only to the outputs it names; others go to every output not routed_only", function()
    local r = run([[return {
      outputs = {
        { name = "all", type = "stdout" },
        { name = "errors", type = "file", path = "@DIR@/errors.log", format = "plain", routed_only = true },
        { name = "audit", type = "file", path = "@DIR@/audit.jsonl" },
      },
      filters = { function(b)
        for _, r in ipairs(b) do
          if r.line:match("ERROR") then r.output = "errors"
          elseif r.line:match("AUDIT") then r.output = { "audit", "errors" }
          elseif r.line:match("LOST") then r.output = "nowhere" end
        end
      end } }]], { { { "web", nil, nil, "ok 1" }, { "web", nil, nil, "ERROR 2" },
        { "web", nil, nil, "AUDIT 3" }, { "web", nil, nil, "LOST 4" } } },
      { read = { "errors.log", "audit.jsonl" } })
    assert.equal(0, r.code)
    assert.same({ "ok 1" }, feed.lines_of(r.records))
    assert.equal("ERROR 2\nAUDIT 3\n", r.files["errors.log"])
    local audit = feed.decode_lines(r.files["audit.jsonl"])
    assert.same({ "ok 1", "AUDIT 3" }, feed.lines_of(audit))
    assert.is_nil(audit[2].output) -- the routing field is not written
    assert.equal(3, r.stats.records_out)
    assert.equal(1, r.stats.records_unrouted)
  end)

  it("ignores `output` with a single output", function()
    local r = run([[return { filters = { function(b) b[1].output = "elsewhere" end } }]], numbered(1, 1))
    assert.same({ "b1-l1" }, feed.lines_of(r.records))
    assert.is_nil(r.records[1].output)
  end)

  it("rotates the file by size, keeping `keep` old files", function()
    local r = run([[return { outputs = { { type = "file", path = "@DIR@/out.log", format = "plain",
      max_bytes = 12, keep = 2 } } }]], numbered(4, 2),
      { read = { "out.log", "out.log.1", "out.log.2", "out.log.3" } })
    assert.equal(0, r.code)
    assert.equal("b4-l1\nb4-l2\n", r.files["out.log"])
    assert.equal("b3-l1\nb3-l2\n", r.files["out.log.1"])
    assert.equal("b2-l1\nb2-l2\n", r.files["out.log.2"])
    assert.is_nil(r.files["out.log.3"])
  end)

  it("reopens its file after pipeline_reopen, for an external logrotate", function()
    local r = run([[
      local n = 0
      return {
        outputs = { { type = "file", path = "@DIR@/out.log", format = "plain" } },
        filters = { function(b)
          n = n + 1
          if n == 3 then assert(os.rename("@DIR@/out.log", "@DIR@/out.log.old")) end
        end } }]], numbered(4, 1),
      { args = { "--lockstep", "--reopen-after", "2" }, read = { "out.log", "out.log.old" } })
    assert.equal(0, r.code)
    assert.equal("b1-l1\nb2-l1\n", r.files["out.log.old"])
    assert.equal("b3-l1\nb4-l1\n", r.files["out.log"])
  end)

  it("checks file output settings", function()
    local r = run([[return { outputs = { { type = "stdout", path = "/tmp/x" } } }]], {})
    assert.equal(2, r.code)
    assert.is_truthy(r.err:find('outputs[1].path is only for outputs of type "file"', 1, true), r.err)
    r = run([[return { outputs = { { type = "file", path = "/nonexistent/dir/x.log" } } }]], {})
    assert.equal(2, r.code)
    assert.is_truthy(r.err:find("cannot open /nonexistent/dir/x.log", 1, true), r.err)
  end)
end)

describe("filters limited to a selection", function()
  it("runs a filter only on the batches of the containers it selects", function()
    local r = run([[return { filters = {
      { name = "webonly", select = { include = { name = "web-*" }, exclude = { label = "skip" } },
        process = function(b) for _, r in ipairs(b) do r.web = true end end },
    } }]], "@labels\tweb-2\tskip=1\n" .. input({ { { "web-1", nil, nil, "a" } }, { { "db", nil, nil, "b" } },
      { { "web-2", nil, nil, "c" } } }))
    assert.same({ "a", "b", "c" }, feed.lines_of(r.records))
    assert.same({ true }, { r.records[1].web, r.records[2].web, r.records[3].web })
    assert.equal(1, r.filters.webonly.calls)
  end)
end)

describe("hot reload", function()
  local old = [[return { filters = { { name = "old",
    process = function(b) for _, r in ipairs(b) do r.by = "old" end end,
    shutdown = function(ctx) ctx.emit({ line = "old shutdown" }) end } } }]]

  it("swaps in a good pipeline between batches: old shutdown, new init, no batch lost or repeated", function()
    local r = run(old, numbered(4, 2), {
      args = { "--lockstep", "--reload-after", "2", "@DIR@/new.lua" },
      files = { ["new.lua"] = [[
        local started
        return { filters = { { name = "new",
          init = function() started = "init ran" end,
          process = function(b) for _, r in ipairs(b) do r.by = "new"; r.started = started end end } } }]] },
    })
    assert.equal(0, r.code)
    assert.same({ "b1-l1", "b1-l2", "b2-l1", "b2-l2", "old shutdown", "b3-l1", "b3-l2", "b4-l1", "b4-l2" },
      feed.lines_of(r.records))
    assert.same({ "old", "old", "old", "old" }, { r.records[1].by, r.records[2].by, r.records[3].by, r.records[4].by })
    for i = 6, 9 do
      assert.equal("new", r.records[i].by)
      assert.equal("init ran", r.records[i].started)
    end
    assert.equal(1, r.stats.reloads)
    assert.is_truthy(r.err:find("reload: " .. r.dir .. "/new.lua is running", 1, true), r.err)
    assert.is_not_nil(r.filters.new)
  end)

  it("keeps the running pipeline when the new one does not load, and says why", function()
    local r = run(old, numbered(3, 1), {
      args = { "--lockstep", "--reload-after", "1", "@DIR@/broken.lua" },
      files = { ["broken.lua"] = "return { filters = { { on_error = 'sometimes', process = print } } }" },
    })
    assert.equal(0, r.code)
    assert.same({ "b1-l1", "b2-l1", "b3-l1", "old shutdown" }, feed.lines_of(r.records))
    for i = 1, 3 do assert.equal("old", r.records[i].by) end
    assert.equal(1, r.stats.reload_failures)
    assert.equal(0, r.stats.reloads)
    assert.is_truthy(r.err:find("reload: " .. r.dir .. "/broken.lua:1: filters[1].on_error must be one of", 1, true), r.err)
    assert.is_truthy(r.err:find("the running pipeline stays", 1, true), r.err)
  end)

  it("keeps the running pipeline when the new one has a syntax error", function()
    local r = run(old, numbered(2, 1), {
      args = { "--lockstep", "--reload-after", "1", "@DIR@/syntax.lua" },
      files = { ["syntax.lua"] = "return {{{" },
    })
    assert.equal(1, r.stats.reload_failures)
    assert.same({ "b1-l1", "b2-l1", "old shutdown" }, feed.lines_of(r.records))
  end)
end)

describe("the sandbox", function()
  it("blocks reads from the engine's stdin and debug.sethook", function()
    local r = run([[return { filters = {
      { name = "read", process = function() io.read() end },
      { name = "lines", process = function() for l in io.lines() do end end },
      { name = "input", process = function() io.input() end },
      { name = "stdin", process = function() io.stdin:read() end },
      { name = "hook", process = function() debug.sethook() end },
      { name = "file", process = function(b)
          for l in io.lines("@DIR@/data.txt") do b[1].data = l end
          b[1].hooked = debug.gethook() ~= nil
        end },
    } }]], numbered(1, 1), { files = { ["data.txt"] = "from a file\n" } })
    assert.equal(0, r.code)
    for _, name in ipairs({ "read", "lines", "input", "stdin", "hook" }) do
      assert.equal(1, r.filters[name].errors, name)
    end
    assert.equal(0, r.filters.file.errors)
    assert.equal("from a file", r.records[1].data)
    assert.is_truthy(r.err:find("io.read is not available to pipelines", 1, true), r.err)
    assert.is_truthy(r.err:find("debug.sethook is not available to pipelines (the runaway guard owns the hook)", 1, true), r.err)
  end)
end)

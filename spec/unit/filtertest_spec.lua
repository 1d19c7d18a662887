-- filtertest_spec.lua - `engine test PIPELINE.lua [CASES]`: a pipeline's
-- filters on test cases (JSON lines), on a simulated clock; a diff and exit
-- code 1 on a mismatch, 2 on a bad case file or pipeline.
local proc = require("spec.support.proc")

local ENGINE = os.getenv("ENGINE_BIN") or "build/engine"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Runs `engine test` with files { name = text } in a temp folder (@DIR@ in
-- args stands for it). Returns the exit code, stdout, stderr.
local function run(files, args)
  local ok, dir = proc.sh("mktemp -d /tmp/filtertest_spec.XXXXXX")
  assert(ok, dir)
  dir = dir:gsub("%s+$", "")
  for name, text in pairs(files) do write(dir .. "/" .. name, text) end
  local argv = { ENGINE, "test" }
  for _, a in ipairs(args) do argv[#argv + 1] = (a:gsub("@DIR@", dir)) end
  local p = proc.spawn({ argv = argv })
  local code = p:wait(60)
  local out, err = p:stdout_text(), p:stderr_text()
  p:cleanup()
  local _, left = proc.sh("ls " .. proc.quote(dir))
  os.execute("rm -rf " .. proc.quote(dir))
  return code, out, err, left
end

-- Upper-cases every line; a timer every 10 s emits how many it saw since
-- its last run; shutdown emits "bye".
local PIPELINE = [[
return {
  filters = {
    { name = "upper",
      init = function(ctx) ctx.state.n = 0 end,
      process = function(batch, ctx)
        for _, rec in ipairs(batch) do
          rec.line = rec.line:upper()
          rec.seen_by = ctx.filter
        end
        ctx.state.n = ctx.state.n + #batch
        return batch
      end,
      timers = { { every = 10, handler = function(ctx)
        ctx.emit({ line = "tick " .. ctx.state.n })
        ctx.state.n = 0
      end } },
      shutdown = function(ctx) ctx.emit({ line = "bye" }) end },
  },
  outputs = { { type = "file", path = "@OUT@" } },
}
]]

describe("engine test", function()
  it("passes matching cases and exits 0, opening no output", function()
    local code, out, err, left = run({
      ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/filtertest_spec_never_written.jsonl"),
      ["p.test.jsonl"] = table.concat({
        '{"case": "upper-cases"}',
        '{"in": [{"name": "web", "line": "hello", "labels": {"app": "shop"}}, {"name": "web", "line": "x"}]}',
        '{"out": {"line": "HELLO", "name": "web", "container": "id-web", "labels": {"app": "shop"}, "seen_by": "upper"}}',
        '{"out": {"line": "X", "stream": "stdout", "time": "2024-01-01T00:00:00.000000001Z"}}',
        '{"out": {"line": "bye", "missing": null}}',
        "",
        "# a comment",
        '{"case": "nothing in, only the shutdown record out"}',
        '{"out": {"line": "bye"}}',
      }, "\n") .. "\n",
    }, { "@DIR@/p.lua" })
    assert.equal(0, code, out .. err)
    assert.equal("ok upper-cases\nok nothing in, only the shutdown record out\n2 passed, 0 failed\n", out)
    assert.is_nil(io.open("/tmp/filtertest_spec_never_written.jsonl", "r"))
    assert.equal("p.lua\np.test.jsonl\n", left)
  end)

  it("prints a diff of what differs and exits 1", function()
    local code, out = run({
      ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/filtertest_spec_never_written.jsonl"),
      ["cases.jsonl"] = table.concat({
        '{"case": "good"}',
        '{"in": {"line": "a"}}',
        '{"out": [{"line": "A"}, {"line": "bye"}]}',
        '{"case": "wrong"}',
        '{"in": [{"line": "a"}, {"line": "b"}]}',
        '{"out": [{"line": "A", "name": "db"}, {"line": "c"}]}',
        '{"case": "too few and too many"}',
        '{"in": {"line": "q"}}',
        '{"out": [{"line": "Q"}, {"line": "bye"}, {"line": "more"}]}',
        '{"case": "unexpected"}',
        '{"in": {"line": "z"}}',
        '{"out": {"line": "Z"}}',
      }, "\n") .. "\n",
    }, { "@DIR@/p.lua", "@DIR@/cases.jsonl" })
    assert.equal(1, code, out)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("ok good", lines[1])
    assert.truthy(lines[2]:match("^FAIL wrong %(/tmp/filtertest_spec%.%w+/cases%.jsonl:4%)$"), lines[2])
    assert.same({
      "  output file, record 1, name:",
      '  - "db"',
      '  + "app"',
      "  output file, record 2, line:",
      '  - "c"',
      '  + "B"',
      "  output file, record 3: not expected",
    }, { unpack(lines, 3, 9) })
    assert.truthy(lines[10]:match('^  %+ {.*"line":"bye"'), lines[10])
    assert.truthy(lines[11]:match("^FAIL too few and too many "), lines[11])
    assert.same({ "  output file, record 3: missing", '  - {"line":"more"}' }, { lines[12], lines[13] })
    assert.truthy(lines[14]:match("^FAIL unexpected "), lines[14])
    assert.equal("  output file, record 2: not expected", lines[15])
    assert.equal("1 passed, 3 failed", lines[#lines])
  end)

  it("runs timers on the simulated clock, at each time they fall due", function()
    local code, out = run({
      ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/filtertest_spec_never_written.jsonl"),
      ["p.test.jsonl"] = table.concat({
        '{"in": [{"line": "a"}, {"line": "b"}]}',
        '{"advance": 9.5}',
        '{"out": [{"line": "A"}, {"line": "B"}]}',
        '{"advance": 0.5}',
        '{"out": {"line": "tick 2"}}',
        '{"in": {"line": "c", "time": "2030-01-01T00:00:00Z"}}',
        '{"out": {"line": "C", "time": "2030-01-01T00:00:00.000000000Z"}}',
        '{"advance": 35}',
        '{"out": [{"line": "tick 1"}, {"line": "tick 0"}, {"line": "tick 0"}]}',
        '{"in": {"line": "after"}}',
        '{"out": {"line": "AFTER", "time": "2024-01-01T00:00:45.000000002Z"}}',
        '{"out": {"line": "bye"}}',
      }, "\n") .. "\n",
    }, { "@DIR@/p.lua" })
    -- One advance of 35 s ran the timer at 20, 30 and 40 s; a record's
    -- default time is the simulated wall clock (45 s after the start).
    assert.equal(0, code, out)
    assert.truthy(out:find("1 passed, 0 failed", 1, true), out)
  end)

  it("a case's end is the pipeline's stop: shutdown records come last", function()
    local code, out = run({
      ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/filtertest_spec_never_written.jsonl"),
      ["p.test.jsonl"] = table.concat({
        '{"in": {"line": "a"}}',
        '{"advance": 25}',
        '{"in": {"line": "b"}}',
        '{"out": [{"line": "A"}, {"line": "tick 1"}, {"line": "tick 0"}, {"line": "B", "time": "2024-01-01T00:00:25.000000001Z"}, {"line": "bye"}]}',
      }, "\n") .. "\n",
    }, { "@DIR@/p.lua" })
    assert.equal(0, code, out)
    assert.truthy(out:find("1 passed, 0 failed", 1, true), out)
  end)

  it("exits 2 with file:line on a bad case file, and on a bad pipeline", function()
    local code, out, err = run({
      ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/filtertest_spec_never_written.jsonl"),
      ["bad.jsonl"] = '{"in": {"line": "a"}}\n{"in": {"lines": "b"}}\n',
    }, { "@DIR@/p.lua", "@DIR@/bad.jsonl" })
    assert.equal(2, code, out .. err)
    assert.truthy(err:find('bad.jsonl:2: unknown key "lines"', 1, true), err)
    code, out, err = run({ ["p.lua"] = "return { outputz = {} }\n", ["p.test.jsonl"] = '{"in": {"line": "a"}}\n' },
                         { "@DIR@/p.lua" })
    assert.equal(2, code, out .. err)
    assert.truthy(err:find('p.lua:1: unknown key "outputz"', 1, true), err)
    code, out, err = run({ ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/x") }, { "@DIR@/p.lua" })
    assert.equal(2, code, out .. err)
    assert.truthy(err:find("p.test.jsonl: cannot read the test cases", 1, true), err)
    code, out, err = run({ ["p.lua"] = PIPELINE:gsub("@OUT@", "/tmp/x"),
                           ["c.jsonl"] = '{"out": {"line": "a"}, "to": "elsewhere"}\n' },
                         { "@DIR@/p.lua", "@DIR@/c.jsonl" })
    assert.equal(2, code, out .. err)
    assert.truthy(err:find('c.jsonl:1: the pipeline has no output named "elsewhere"', 1, true), err)
  end)

  it("passes the README's first tested filter, which engine check accepts", function()
    local readme = assert(proc.read("README.md"))
    local first = readme:match("## A first pipeline.-```lua\n(.-)```")
    local cases = readme:match("## A first tested filter.-```\n(.-)```")
    assert.truthy(first and cases, "the README's first pipeline or its cases are missing")
    local ok, dir = proc.sh("mktemp -d /tmp/filtertest_spec.XXXXXX")
    assert(ok, dir)
    dir = dir:gsub("%s+$", "")
    write(dir .. "/pipeline.lua", first)
    write(dir .. "/pipeline.test.jsonl", cases)
    local ok_check, out_check = proc.sh(proc.join({ ENGINE, "check", dir .. "/pipeline.lua" }))
    local ok_test, out_test = proc.sh(proc.join({ ENGINE, "test", dir .. "/pipeline.lua" }))
    os.execute("rm -rf " .. proc.quote(dir))
    assert.is_true(ok_check, out_check)
    assert.is_true(ok_test, out_test)
    assert.truthy(out_test:find("1 passed, 0 failed", 1, true), out_test)
  end)
end)

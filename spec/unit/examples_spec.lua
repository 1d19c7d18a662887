-- examples_spec.lua - every pipeline in examples/ run through
-- build/pipeline_feed on recorded input (spec/fixtures/examples/*.input),
-- checking what comes out.
package.path = "lua/?.lua;" .. package.path
local proc = require("spec.support.proc")
local feed = require("spec.support.feed")

local FIXTURES = "spec/fixtures/examples/"

-- Runs examples/<name>.lua on its fixture. Returns { code, err, records }.
local function example(name, env, args)
  local argv = { feed.FEED }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = "examples/" .. name .. ".lua"
  argv[#argv + 1] = FIXTURES .. name .. ".input"
  local p = proc.spawn({ argv = argv, env = env })
  local code = p:wait(120)
  local r = { code = code, err = p:stderr_text(), out = p:stdout_text() }
  p:cleanup()
  assert.equal(0, r.code, r.err)
  r.records = feed.decode_lines(r.out)
  r.lines = feed.lines_of(r.records)
  return r
end

describe("examples", function()
  it("drop_debug drops debug lines in any of three spellings", function()
    local r = example("drop_debug")
    assert.same({ "level=info msg=start", "level=error msg=boom" }, r.lines)
  end)

  it("json_logs parses JSON application logs into fields", function()
    local r = example("json_logs")
    assert.same({ "request done", "slow", "plain text line", "{broken json" }, r.lines)
    assert.same({ level = "info", msg = "request done", status = 200, path = "/x" }, r.records[1].app)
    assert.equal("info", r.records[1].level)
    assert.equal(1234.5, r.records[2].app.ms)
    assert.equal("warn", r.records[2].level)
    assert.is_nil(r.records[3].app)
    assert.is_nil(r.records[4].app)
  end)

  it("logfmt_fields turns logfmt into fields", function()
    local r = example("logfmt_fields")
    assert.same({ "user logged in", "just text", "db down" }, r.lines)
    assert.same({ level = "info", msg = "user logged in", user = "ann", id = "42" }, r.records[1].fields)
    assert.same({ "info", "error" }, { r.records[1].level, r.records[3].level })
    assert.is_nil(r.records[2].fields)
  end)

  it("redact_secrets masks tokens, URL passwords, emails and card numbers", function()
    local r = example("redact_secrets")
    assert.same({
      "GET /api Authorization: Bearer [REDACTED]",
      "connecting to postgres://app:[REDACTED]@db:5432/shop",
      "new order from [EMAIL] card [CARD]",
      "healthy",
    }, r.lines)
    assert.same({ 1, 1, 2 }, { r.records[1].redacted, r.records[2].redacted, r.records[3].redacted })
    assert.is_nil(r.records[4].redacted)
    assert.is_nil(r.out:find("hunter2", 1, true))
  end)

  it("stack_traces joins Java and Python traces into one record each", function()
    local r = example("stack_traces")
    assert.same({
      "2024-05-06 07:08:01 ERROR request failed\njava.lang.IllegalStateException: boom\n"
        .. "\tat com.shop.Cart.add(Cart.java:42)\n\tat com.shop.Api.post(Api.java:7)\n"
        .. "Caused by: java.io.IOException: disk\n\t... 12 more",
      "2024-05-06 07:08:03 ERROR worker crashed\nTraceback (most recent call last):\n"
        .. '  File "worker.py", line 10, in run\n    do()\nValueError: bad input',
      "2024-05-06 07:08:02 INFO recovered",
      "2024-05-06 07:08:04 INFO next job",
    }, r.lines)
    assert.same({ "java", "py" }, { r.records[1].name, r.records[2].name })
    assert.equal("stderr", r.records[2].stream)
  end)

  it("sample_noisy keeps 1 in 10 of chatty containers and rate-limits bursts", function()
    local r = example("sample_noisy")
    local by = {}
    for _, rec in ipairs(r.records) do
      by[rec.name] = by[rec.name] or {}
      table.insert(by[rec.name], rec.line)
    end
    assert.same({ "chat 1", "chat 11", "chat 21" }, by["chatty-1"])
    assert.same({ "calm 1", "calm 2", "calm 3" }, by.quiet)
    assert.equal(101, #by.burst)
    assert.equal("burst 100", by.burst[100])
    assert.equal("rate limit: dropped 50 lines", by.burst[101])
  end)

  it("route_errors writes errors to the file and everything else to stdout", function()
    local ok, dir = proc.sh("mktemp -d /tmp/examples_spec.XXXXXX")
    assert(ok, dir)
    dir = dir:gsub("%s+$", "")
    local r = example("route_errors", { ERRORS_LOG = dir .. "/errors.jsonl" })
    local errors = feed.decode_lines(feed.read(dir .. "/errors.jsonl"))
    os.execute("rm -rf " .. proc.quote(dir))
    assert.same({ "GET / 200", "a warning" }, r.lines)
    assert.same({ "ERROR db timeout", "level=error msg=oops", "ERROR at start of stdout line" },
      feed.lines_of(errors))
    assert.is_nil(errors[1].output)
  end)

  it("count_per_minute emits counts per container and drops the lines", function()
    local r = example("count_per_minute")
    assert.same({ "3 lines at shutdown", "7 lines at shutdown" }, r.lines)
    assert.same({ "db", 3, "id-db" }, { r.records[1].name, r.records[1].lines, r.records[1].container })
    assert.same({ "web", 7 }, { r.records[2].name, r.records[2].lines })
  end)

  it("count_per_minute loses no count when its timer runs often", function()
    local r = example("count_per_minute", { COUNT_EVERY = "0.01" }, { "--lockstep" })
    local total = 0
    for _, rec in ipairs(r.records) do total = total + rec.lines end
    assert.equal(10, total)
  end)

  it("pipeline (make run's) drops debug lines and tags levels", function()
    local argv = { feed.FEED, "examples/pipeline.lua", "/dev/stdin" }
    local ok, out = proc.sh(proc.join(argv) .. " 2>/dev/null <<'EOF'\n"
      .. "demo\tstdout\t2024-05-06T07:08:09Z\tlevel=info n=1\n"
      .. "demo\tstdout\t2024-05-06T07:08:09Z\tlevel=debug n=2\nEOF")
    assert(ok, out)
    local recs = feed.decode_lines(out)
    assert.same({ "level=info n=1" }, feed.lines_of(recs))
    assert.equal("info", recs[1].level)
  end)

  -- Every shipped pipeline has its test cases (examples/NAME.test.jsonl),
  -- and `engine test` passes them all.
  describe("engine test on each example's cases", function()
    local ENGINE = os.getenv("ENGINE_BIN") or "build/engine"
    local names = {}
    for file in io.popen("ls examples/*.lua"):lines() do names[#names + 1] = file:match("([%w_]+)%.lua$") end
    assert.is_true(#names >= 10)
    for _, name in ipairs(names) do
      it(name, function()
        local cases = feed.read("examples/" .. name .. ".test.jsonl")
        assert.truthy(cases, "examples/" .. name .. ".test.jsonl is missing")
        local n = 0
        for _ in cases:gmatch('\n{"case"') do n = n + 1 end
        if cases:match('^{"case"') then n = n + 1 end
        local p = proc.spawn({ argv = { ENGINE, "test", "examples/" .. name .. ".lua" } })
        local code = p:wait(60)
        local out, err = p:stdout_text(), p:stderr_text()
        p:cleanup()
        assert.equal(0, code, out .. err)
        assert.truthy(n >= 1)
        assert.truthy(out:find(("\n%d passed, 0 failed\n$"):format(n)), out)
      end)
    end
  end)
end)

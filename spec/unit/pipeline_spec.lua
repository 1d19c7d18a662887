-- pipeline_spec.lua - pipeline.lua loading, filters, the runaway guard and
-- the JSON output, through the pipeline_feed tool (spec/support/pipeline_feed.c)
-- and lua/engine/pipeline.lua directly.
package.path = "lua/?.lua;" .. package.path
local proc = require("spec.support.proc")
local validator = require("engine.pipeline")

local F = require("spec.support.feed")
local write, input, numbered = F.write, F.input, F.numbered

-- True when s is valid UTF-8 (no overlongs, surrogates or code points above
-- U+10FFFF).
local function utf8_valid(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, lo, hi = 1, 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4
    else return false end
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F
    elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    for k = 1, len - 1 do
      local d = s:byte(i + k)
      if not d or d < lo or d > hi then return false end
      lo, hi = 0x80, 0xBF
    end
    i = i + len
  end
  return true
end

-- Runs pipeline_feed on the pipeline source and the input (feed.lua).
local feed = F.run

-- The set of `line` values of the records.
local function line_set(records)
  local set = {}
  for _, rec in ipairs(records) do set[rec.line] = (set[rec.line] or 0) + 1 end
  return set
end

describe("engine.pipeline.validate", function()
  local function fails(tbl, pattern)
    local ok, err = pcall(validator.validate, tbl, "pipeline.lua")
    assert.is_false(ok)
    assert.is_truthy(err:find(pattern, 1, true), "message was: " .. tostring(err))
  end

  it("names the field and the allowed values of a bad on_error", function()
    fails({ filters = { function() end, { on_error = "x", process = function() end } } },
      'pipeline.lua: filters[2].on_error must be one of "pass", "drop", "dead_letter" (got "x")')
  end)

  it("rejects an unknown top-level key, listing the known ones", function()
    fails({ filter = {} }, 'pipeline.lua: unknown key "filter" (expected one of: batch, dead_letter, docker, engine, filters, history, outputs, select)')
  end)

  it("rejects unknown keys inside sections", function()
    fails({ engine = { filter_timout = 1 } }, 'unknown key "filter_timout" in engine')
    fails({ select = { include = { nam = "x" } } }, 'unknown key "nam" in select.include')
    fails({ outputs = { { type = "stdout", fromat = "json" } } }, 'unknown key "fromat" in outputs[1]')
  end)

  it("requires a table", function()
    fails(nil, "pipeline.lua: must return a table (got a nil)")
  end)

  it("requires positive numbers and integer sizes", function()
    fails({ batch = { max_lines = 0 } }, "batch.max_lines must be an integer from 1 to")
    fails({ batch = { max_bytes = 10.5 } }, "batch.max_bytes must be an integer")
    fails({ batch = { flush_interval = -1 } }, "batch.flush_interval must be a positive number (got -1)")
    fails({ engine = { cycle = "300" } }, 'engine.cycle must be a number (got "300")')
    fails({ engine = { stop_timeout = math.huge } }, "engine.stop_timeout must be a finite number")
    fails({ engine = { filter_timeout = -0.5 } }, "engine.filter_timeout must be 0 or a positive number")
  end)

  it("checks the enumerations", function()
    fails({ history = "now" }, 'history must be "all" or "start" (got "now")')
    fails({ engine = { log_level = "trace" } }, 'engine.log_level must be one of "error", "warn", "info", "debug"')
    fails({ outputs = { { type = "kafka" } } }, 'outputs[1].type must be one of "stdout", "file", "null", "http", "clickhouse", "loki", "elasticsearch", "otlp", "syslog", "mqtt", "nats" (got "kafka")')
    fails({ outputs = { { type = "stdout", format = "xml" } } }, 'outputs[1].format must be "json" or "plain"')
  end)

  it("rejects filters without a process function, and duplicate names", function()
    fails({ filters = { { name = "a" } } }, "filters[1].process must be a function(batch, ctx) (got a nil; a filter needs a process function or timers)")
    fails({ filters = { 42 } }, "filters[1] must be a function or a table with a process function (got 42)")
    fails({ filters = { { name = "a", process = print }, { name = "a", process = print } } },
      'filters[2].name "a" is already the name of filters[1]')
    fails({ filters = { [1] = print, [3] = print } }, "filters must be a list of filters (no item 2)")
  end)

  it("checks docker.tls: known keys, non-empty paths, cert and key together", function()
    fails({ docker = { tls = { ca = "" } } }, "docker.tls.ca must be a non-empty string")
    fails({ docker = { tls = { cert = "c.pem" } } }, "docker.tls cert and key go together")
    fails({ docker = { tls = { cacert = "c.pem" } } }, "cacert")
    assert.same({ ca = "a", cert = "c", key = "k" },
                validator.validate({ docker = { tls = { ca = "a", cert = "c", key = "k" } } }).docker.daemons[1].tls)
  end)

  it("takes docker as one daemon's table, named after its host", function()
    local d = validator.validate({ docker = { host = "unix:///run/a.sock", read_delay = 0.2 } }).docker
    assert.is_false(d.list)
    assert.equal(0.2, d.read_delay)
    assert.same({ { name = "a", host = "unix:///run/a.sock" } }, d.daemons)
    assert.same({ { name = "local" } }, validator.validate({}).docker.daemons)
    assert.same({ { name = "gw", host = "tcp://127.0.0.1:2376" } },
      validator.validate({ docker = { name = "gw", host = "tcp://127.0.0.1:2376" } }).docker.daemons)
  end)

  it("takes docker as a list of daemons with engine-wide read_delay and attach beside it", function()
    local d = validator.validate({ docker = {
      read_delay = 0.1, attach = false,
      { name = "edge-a", host = "unix:///run/a.sock" },
      { host = "tcp://127.0.0.1:2376", tls = { ca = "ca.pem", cert = "c.pem", key = "k.pem" } },
      { host = "unix:///var/run/docker.sock" },
    } }).docker
    assert.is_true(d.list)
    assert.equal(0.1, d.read_delay)
    assert.is_false(d.attach)
    assert.same({
      { name = "edge-a", host = "unix:///run/a.sock" },
      { name = "127.0.0.1:2376", host = "tcp://127.0.0.1:2376", tls = { ca = "ca.pem", cert = "c.pem", key = "k.pem" } },
      { name = "docker", host = "unix:///var/run/docker.sock" },
    }, d.daemons)
  end)

  it("refuses duplicate daemon names, mixed forms and bad entries, with the line", function()
    local src = table.concat({
      "return { docker = {",
      '  { name = "a", host = "unix:///run/a.sock" },',
      '  { name = "a", host = "unix:///run/b.sock" },',
      "} }",
    }, "\n")
    local ok, err = pcall(validator.validate, { docker = {
      { name = "a", host = "unix:///run/a.sock" }, { name = "a", host = "unix:///run/b.sock" } } },
      "p.lua", src)
    assert.is_false(ok)
    assert.matches('p.lua:3: docker[2].name names the daemon "a" (given), as docker[1] does', err, 1, true)
    fails({ docker = { { host = "unix:///x/docker.sock" }, { host = "unix:///y/docker.sock" } } },
      'docker[2].host names the daemon "docker" (derived from its host), as docker[1] does: each daemon needs its own name (set name = "...")')
    fails({ docker = { { host = "unix:///a.sock" }, {} , { name = "local" } } },
      'docker[3].name names the daemon "local" (given), as docker[2] does')
    fails({ docker = { host = "unix:///a.sock", { host = "unix:///b.sock" } } },
      "docker.host goes in each daemon's entry when docker is a list of daemons")
    fails({ docker = { { host = "unix:///b.sock", read_delay = 1 } } },
      "docker[1].read_delay is engine-wide: set docker.read_delay beside the list, not in an entry")
    fails({ docker = { { name = "a/b" } } }, "docker[1].name must be at most 63 letters, digits and _ . : -")
    fails({ docker = { "unix:///a.sock" } }, "docker[1] must be a table")
    fails({ docker = { { host = "ssh://x" } } }, "docker[1].host must be unix:///path")
    fails({ docker = { { tls = { cert = "c" } } } }, "docker[1].tls cert and key go together")
    local many = {}
    for i = 1, 17 do many[i] = { name = "d" .. i, host = "unix:///run/d" .. i .. ".sock" } end
    fails({ docker = many }, "docker lists 17 daemons (at most 16)")
    many[17] = nil
    assert.equal(16, #validator.validate({ docker = many }).docker.daemons)
  end)

  it("bounds docker.read_delay", function()
    fails({ docker = { read_delay = -1 } }, "docker.read_delay must be 0 or a positive number (got -1)")
    fails({ docker = { read_delay = 11 } }, "docker.read_delay must be at most 10 seconds")
    assert.equal(0.5, validator.validate({ docker = { read_delay = 0.5 } }).docker.read_delay)
  end)

  it("takes docker.attach as true or false", function()
    fails({ docker = { attach = "yes" } }, "docker.attach must be true or false")
    assert.is_false(validator.validate({ docker = { attach = false } }).docker.attach)
    assert.is_nil(validator.validate({ docker = {} }).docker.attach)
  end)

  it("gives a Loki output default labels, static labels, a tenant and a line format", function()
    local function loki(o)
      o.type, o.url = "loki", "http://127.0.0.1:3100"
      return validator.validate({ outputs = { o } }).outputs[1]
    end
    local d = loki({})
    assert.same({ "name", "stream" }, d.labels)
    assert.same({ "job" }, d.label_names)
    assert.same({ "engine" }, d.label_values)
    assert.equal("raw", d.line_format)
    assert.is_nil(d.tenant)
    local o = loki({ labels = { zone = "eu", job = "edge", "name", "level" }, tenant = "team-a",
                     line_format = "json" })
    assert.same({ "name", "level" }, o.labels)
    assert.same({ "job", "zone" }, o.label_names)
    assert.same({ "edge", "eu" }, o.label_values)
    assert.equal("team-a", o.tenant)
    assert.equal("json", o.line_format)
    o = loki({ labels = "name" })
    assert.same({ "name" }, o.labels)
    assert.same({}, o.label_names)
    local function bad(o2, pattern)
      o2.type, o2.url = "loki", "http://127.0.0.1:3100"
      fails({ outputs = { o2 } }, pattern)
    end
    bad({ labels = {} }, "outputs[1].labels must name at least one label")
    bad({ labels = { job = 7 } }, "outputs[1].labels.job must be a non-empty string: a static label's value (got 7)")
    bad({ labels = { "name", 3 } }, "outputs[1].labels[2] must be a non-empty string: a record field (got 3)")
    bad({ labels = { [1] = "a", [3] = "b" } }, "outputs[1].labels must list record fields (no item 2)")
    bad({ tenant = "" }, "outputs[1].tenant must be a non-empty string")
    bad({ tenant = "a b" }, "outputs[1].tenant must be a Loki tenant id")
    bad({ tenant = "a\r\nX-Evil: 1" }, "outputs[1].tenant must be a Loki tenant id")
    bad({ tenant = "a", headers = { ["X-Scope-OrgID"] = "b" } },
        "outputs[1].tenant and headers[\"X-Scope-OrgID\"] both set the tenant")
    bad({ line_format = "logfmt" }, 'outputs[1].line_format must be "raw" or "json"')
    fails({ outputs = { { type = "http", url = "http://127.0.0.1:9", tenant = "a" } } },
          'outputs[1].tenant is only for outputs of type "loki"')
  end)

  it("rejects a single output table given instead of a list", function()
    fails({ outputs = { type = "stdout" } }, "outputs must be a list of outputs")
  end)

  it("rejects label rules without a key and empty strings", function()
    fails({ select = { include = { label = "=web" } } }, "select.include.label[1] must be \"key\" or \"key=value\"")
    fails({ select = { exclude = { name = { "" } } } }, "select.exclude.name[1] must be a non-empty string")
  end)

  it("normalizes: single strings become lists, filters get names and policies, outputs a default", function()
    local f = function() end
    local v = validator.validate({
      select = { include = { name = "web-*", label = { "app=web", "tier" } }, exclude = { id = "3f2a" } },
      filters = { f, { name = "x", on_error = "drop", process = f } },
      history = "start",
      engine = { filter_timeout = 0, line_max = 4096 },
    }, "p.lua")
    assert.same({ "web-*" }, v.select.include.name)
    assert.same({ "app=web", "tier" }, v.select.include.label)
    assert.same({}, v.select.include.image)
    assert.same({ "3f2a" }, v.select.exclude.id)
    assert.same({ name = "filter1", on_error = "pass", process = f, timers = {} }, v.filters[1])
    assert.same({ name = "x", on_error = "drop", process = f, timers = {} }, v.filters[2])
    assert.same({ { type = "stdout", name = "stdout", format = "json", routed_only = false } }, v.outputs)
    assert.equal("start", v.history)
    assert.equal(0, v.engine.filter_timeout)
    assert.equal(4096, v.engine.line_max)
    assert.is_nil(v.engine.cycle)
  end)
end)

describe("pipeline_load", function()
  it("exits 2 with the validation message", function()
    local r = feed("return { filters = { { on_error = 'x', process = function() end } } }", {})
    assert.equal(2, r.code)
    assert.is_truthy(r.err:find(r.path .. ':1: filters[1].on_error must be one of "pass", "drop", "dead_letter" (got "x")', 1, true), r.err)
  end)

  it("reports a syntax error as file:line:", function()
    local r = feed("return {\n  filters = { function(b) return b end\n}}}\n", {})
    assert.equal(2, r.code)
    assert.equal(r.path .. ":3:", r.err:sub(1, #r.path + 3))
  end)

  it("reports a runtime error in pipeline.lua as file:line:", function()
    local r = feed("local x = nil\nreturn { filters = { x.y } }\n", {})
    assert.equal(2, r.code)
    assert.equal(r.path .. ":2:", r.err:sub(1, #r.path + 3))
  end)

  it("reports a missing file", function()
    local p = proc.spawn({ argv = { F.FEED, "/nonexistent/pipeline.lua", "/dev/null" } })
    assert.equal(2, p:wait(60))
    assert.is_truthy(p:stderr_text():find("cannot open /nonexistent/pipeline.lua", 1, true), p:stderr_text())
    p:cleanup()
  end)

  it("loads a module that sits next to the pipeline with require", function()
    local r = feed([[
      local helper = require("helper")
      return { filters = { helper.tag } }
    ]], { { { "web", nil, nil, "x" } } }, {
      files = { ["helper.lua"] = "return { tag = function(b) for _, r in ipairs(b) do r.tagged = 'yes' end end }" },
    })
    assert.equal(0, r.code)
    assert.equal("yes", r.records[1].tagged)
  end)
end)

describe("the pipeline thread", function()
  it("passes records through with every field when there are no filters", function()
    local r = feed("return {}", {
      { { "web", "stdout", "2024-05-06T07:08:09.123456789Z", "hello" },
        { "web", "stderr,truncated", "2024-05-06T07:08:10Z", "world" } },
    })
    assert.equal(0, r.code)
    assert.equal(2, #r.records)
    assert.same({ time = "2024-05-06T07:08:09.123456789Z", stream = "stdout", container = "id-web",
      name = "web", image = "img", line = "hello", labels = {} }, r.records[1])
    assert.equal("stderr", r.records[2].stream)
    assert.equal("2024-05-06T07:08:10.000000000Z", r.records[2].time)
    assert.is_true(r.records[2].truncated)
    assert.is_nil(r.records[1].truncated)
    assert.same({ batches = 1, records_in = 2, records_out = 2, filter_errors = 0,
      filter_timeouts = 0, output_errors = 0 }, { batches = r.stats.batches,
      records_in = r.stats.records_in, records_out = r.stats.records_out,
      filter_errors = r.stats.filter_errors, filter_timeouts = r.stats.filter_timeouts,
      output_errors = r.stats.output_errors })
  end)

  it("gives records the container's labels", function()
    local r = feed("return {}", "@labels\tweb\tapp=shop\ttier=front\n" .. input({ { { "web", nil, nil, "x" } } }))
    assert.same({ app = "shop", tier = "front" }, r.records[1].labels)
  end)

  it("drops a batch when a filter returns an empty table", function()
    local r = feed([[return { filters = { function(b, ctx)
      if b[1].line:match("^b2") then return {} end
    end } }]], numbered(3, 2))
    assert.equal(0, r.code)
    assert.same({ ["b1-l1"] = 1, ["b1-l2"] = 1, ["b3-l1"] = 1, ["b3-l2"] = 1 }, line_set(r.records))
    assert.equal(6, r.stats.records_in)
    assert.equal(4, r.stats.records_out)
  end)

  it("keeps in-place edits when a filter returns nil", function()
    local r = feed([[return { filters = { function(b) for _, rec in ipairs(b) do rec.line = rec.line:upper() end end } }]],
      numbered(2, 2))
    assert.same({ ["B1-L1"] = 1, ["B1-L2"] = 1, ["B2-L1"] = 1, ["B2-L2"] = 1 }, line_set(r.records))
  end)

  it("outputs the records a filter adds, in order", function()
    local r = feed([[return { filters = { function(b)
      local out = {}
      for _, rec in ipairs(b) do
        out[#out + 1] = rec
        out[#out + 1] = { line = rec.line .. "-copy", level = "info" }
      end
      return out
    end } }]], numbered(1, 2))
    assert.equal(4, #r.records)
    assert.same({ "b1-l1", "b1-l1-copy", "b1-l2", "b1-l2-copy" },
      { r.records[1].line, r.records[2].line, r.records[3].line, r.records[4].line })
    assert.same({ line = "b1-l1-copy", level = "info" }, r.records[2])
    assert.equal(4, r.stats.records_out)
  end)

  it("runs filters in order and gives them ctx with the filter's and container's names", function()
    local r = feed([[return { filters = {
      function(b, ctx) for _, rec in ipairs(b) do rec.seen = ctx.filter end end,
      { name = "second", process = function(b, ctx)
          for _, rec in ipairs(b) do rec.seen = rec.seen .. "," .. ctx.filter .. "," .. ctx.name .. "," .. ctx.container end
        end },
    } }]], numbered(1, 1))
    assert.equal("filter1,second,web,id-web", r.records[1].seen)
  end)

  it("passes batches on unchanged when a pass filter raises every third batch, losing no line", function()
    local r = feed([[
      local n = 0
      return { filters = {
        { name = "flaky", on_error = "pass", process = function(b)
            n = n + 1
            local out = {}
            for i, rec in ipairs(b) do out[i] = rec end
            table.remove(b) -- an in-place change to the array that must not survive the error
            if n % 3 == 0 then error("flaky failure " .. n) end
            for _, rec in ipairs(out) do rec.ok = true end
            return out
          end },
      } }]], numbered(9, 4))
    assert.equal(0, r.code)
    assert.equal(36, #r.records)
    local set = line_set(r.records)
    for b = 1, 9 do
      for l = 1, 4 do assert.equal(1, set[("b%d-l%d"):format(b, l)]) end
    end
    for _, rec in ipairs(r.records) do
      local b = tonumber(rec.line:match("^b(%d+)"))
      assert.equal(b % 3 ~= 0 or nil, rec.ok)
    end
    assert.equal(3, r.stats.filter_errors)
    assert.equal(0, r.stats.filter_timeouts)
    assert.is_truthy(r.err:find("filter flaky (on_error=pass): " .. r.path .. ":8: flaky failure 3", 1, true), r.err)
    assert.is_truthy(r.err:find("[web]", 1, true))
    assert.is_truthy(r.err:find("stack traceback", 1, true))
  end)

  it("drops the batch when a drop filter raises", function()
    local r = feed([[
      return { filters = { { on_error = "drop", process = function(b)
        if b[1].line:match("^b2%-") then error("no") end
      end } } }]], numbered(3, 2))
    assert.same({ ["b1-l1"] = 1, ["b1-l2"] = 1, ["b3-l1"] = 1, ["b3-l2"] = 1 }, line_set(r.records))
    assert.equal(1, r.stats.filter_errors)
  end)

  it("treats a filter returning a number as an error", function()
    local r = feed("return { filters = { { name = 'num', process = function(b) return 42 end } } }", numbered(2, 1))
    assert.equal(2, #r.records)
    assert.equal(2, r.stats.filter_errors)
    assert.is_truthy(r.err:find("filter num returned a number, expected a table of records or nil", 1, true), r.err)
  end)

  it("treats a record without a string line as an error", function()
    local r = feed([[return { filters = {
      { name = "noline", on_error = "drop", process = function(b) return { { text = "x" } } end },
    } }]], numbered(1, 1))
    assert.equal(0, #r.records)
    assert.equal(1, r.stats.filter_errors)
    assert.is_truthy(r.err:find("filter noline returned record 1 without a string `line` (got a nil)", 1, true), r.err)
  end)

  it("treats a non-table record as an error", function()
    local r = feed("return { filters = { function(b) b[1] = 'text' end } }", numbered(1, 1))
    assert.equal("b1-l1", r.records[1].line)
    assert.equal(1, r.stats.filter_errors)
    assert.is_truthy(r.err:find("returned a string as record 1", 1, true), r.err)
  end)

  it("interrupts runaway filters after filter_timeout and keeps the later batches flowing", function()
    -- on the pipeline thread, the filter's state (n) outlives each timeout
    local r = feed([[
      local n = 0
      return {
        engine = { filter_timeout = 0.2, filter_isolation = "thread" },
        filters = { { name = "runaway", process = function(b)
          n = n + 1
          if n == 2 then while true do end end
          if n == 4 then local function f(i) return f(i + 1) end return f(1) end
          if n == 6 then
            while true do local s = string.rep("ab", 200); s:find("x"); s = s:upper() end
          end
          if n == 8 then while true do pcall(function() while true do end end) end end
          for _, rec in ipairs(b) do rec.line = "ok " .. rec.line end
        end } },
      }]], numbered(10, 2))
    assert.equal(0, r.code)
    assert.equal(20, #r.records)
    local set = line_set(r.records)
    for b = 1, 10 do
      local prefix = (b == 2 or b == 4 or b == 6 or b == 8) and "" or "ok "
      assert.equal(1, set[prefix .. ("b%d-l1"):format(b)], "batch " .. b)
      assert.equal(1, set[prefix .. ("b%d-l2"):format(b)], "batch " .. b)
    end
    assert.equal(4, r.stats.filter_timeouts)
    assert.equal(0, r.stats.filter_errors)
    assert.is_truthy(r.err:find("filter timed out after 0.2 s", 1, true), r.err)
  end)

  it("counts a stack overflow from runaway recursion as an error", function()
    local r = feed([[return { filters = { function(b)
      local function g(i) return 1 + g(i + 1) end
      return g(1)
    end } }]], numbered(2, 1))
    assert.equal(2, #r.records)
    assert.equal(2, r.stats.filter_errors)
    assert.is_truthy(r.err:find("stack overflow", 1, true), r.err)
  end)

  it("blocks os.exit", function()
    local r = feed("return { filters = { function(b) os.exit(3) end } }", numbered(1, 1))
    assert.equal(0, r.code)
    assert.equal(1, #r.records)
    assert.equal(1, r.stats.filter_errors)
    assert.is_truthy(r.err:find("os.exit is not available to pipelines", 1, true), r.err)
  end)

  it("blocks jit.on, which would defeat the runaway guard", function()
    local r = feed("return { filters = { function(b) jit.on() end } }", numbered(1, 1))
    assert.equal(1, #r.records)
    assert.equal(1, r.stats.filter_errors)
    assert.is_truthy(r.err:find("jit.on is not available to pipelines", 1, true), r.err)
  end)

  it("sends print() to the log, not among the records", function()
    local r = feed("return { filters = { function(b) print('debug', #b) end } }", numbered(1, 1))
    assert.equal(1, #r.lines)
    assert.is_truthy(r.err:find("print: debug\t1", 1, true), r.err)
  end)

  it("on abort stops the running filter and passes the queued batches on unfiltered", function()
    local r = feed([[
      return {
        engine = { filter_timeout = 0 },
        filters = { function(b)
          local f = assert(io.open("@DIR@/started", "w")); f:close()
          while true do end
        end },
      }]], numbered(5, 3), { args = { "--abort-when", "@DIR@/started" } })
    assert.equal(0, r.code)
    assert.equal(15, #r.records)
    local set = line_set(r.records)
    for b = 1, 5 do
      for l = 1, 3 do assert.equal(1, set[("b%d-l%d"):format(b, l)]) end
    end
    assert.equal(1, r.stats.filter_timeouts)
    assert.is_truthy(r.err:find("filter aborted: engine stopping", 1, true), r.err)
  end)
end)

describe("the stdout output", function()
  it("writes valid JSON for every byte value and replaces invalid UTF-8 with U+FFFD", function()
    local ascii = {}
    for c = 0, 127 do
      if c ~= 10 then ascii[#ascii + 1] = string.char(c) end
    end
    ascii = table.concat(ascii)
    local high = {}
    for c = 128, 255 do high[#high + 1] = string.char(c) end
    high = table.concat(high)
    local valid = "é 日本 😀 \239\191\189"
    local cases = {
      { ascii, ascii },
      { high, string.rep("\239\191\189", 128) },
      { valid, valid },
      { "a\192\175b", "a\239\191\189\239\191\189b" },        -- overlong '/'
      { "\224\128\175", string.rep("\239\191\189", 3) },        -- overlong, 3 bytes
      { "\237\160\128x", string.rep("\239\191\189", 3) .. "x" }, -- surrogate U+D800
      { "\244\144\128\128", string.rep("\239\191\189", 4) },    -- above U+10FFFF
      { "x\230\151", "x\239\191\189" },                         -- cut sequence: one U+FFFD
      { "\240\159\152", "\239\191\189" },
    }
    local batch = {}
    for i, c in ipairs(cases) do batch[i] = { "web", nil, nil, c[1] } end
    local r = feed("return {}", { batch })
    assert.equal(0, r.code)
    assert.equal(#cases, #r.records)
    for i, c in ipairs(cases) do
      assert.is_true(utf8_valid(r.lines[i]), "line " .. i)
      assert.equal(c[2], r.records[i].line, "case " .. i)
    end
  end)

  it("escapes control characters as JSON escapes", function()
    local r = feed("return {}", { { { "web", nil, nil, "a\"b\\c\tq\rz\1\31\127" } } })
    assert.is_truthy(r.lines[1]:find([["line":"a\"b\\c\tq\rz\u0001\u001f]] .. "\127\"", 1, true), r.lines[1])
  end)

  it("writes the fields in a fixed order, then the others sorted", function()
    local r = feed([[return { filters = { function(b)
      for _, rec in ipairs(b) do
        rec.zeta, rec.alpha, rec.mid = 1, 2, 3
        rec[1] = "numeric key"
      end
    end } }]], { { { "web", nil, "2024-05-06T07:08:09Z", "x" } } })
    assert.equal('{"time":"2024-05-06T07:08:09.000000000Z","stream":"stdout","container":"id-web",'
      .. '"name":"web","image":"img","line":"x","labels":{},"1":"numeric key","alpha":2,"mid":3,"zeta":1}',
      r.lines[1])
  end)

  it("encodes numbers, booleans, arrays, empty tables and nesting; skips functions", function()
    local r = feed([[return { filters = { function(b)
      return { {
        line = "v", int = 42, neg = -7, big = 2^53, frac = 0.1, nan = 0/0, inf = 1/0,
        yes = true, no = false, list = { 1, "two", { 3 } }, empty = {}, sparse = { [1] = 1, [3] = 3 },
        fn = print, nested = { a = { b = { c = "d" } } },
        holes = { 1, print, 3 },
      } }
    end } }]], numbered(1, 1))
    local line = r.lines[1]
    assert.equal('{"line":"v","big":9007199254740992,"empty":{},"frac":0.10000000000000001,'
      .. '"holes":[1,null,3],"inf":null,"int":42,"list":[1,"two",[3]],"nan":null,"neg":-7,'
      .. '"nested":{"a":{"b":{"c":"d"}}},"no":false,"sparse":{"1":1,"3":3},"yes":true}', line)
  end)

  it("cuts nesting deeper than 32 levels and survives cycles", function()
    local r = feed([[return { filters = { function(b)
      local t = {}
      t.self = t
      b[1].loop = t
      end } }]], numbered(1, 1))
    assert.equal(1, #r.records)
    local depth, t = 0, r.records[1].loop
    while type(t) == "table" do depth = depth + 1; t = t.self end
    assert.equal(31, depth)
  end)

  it("writes the line alone in plain format", function()
    local r = feed("return { outputs = { { type = 'stdout', format = 'plain' } } }",
      { { { "web", nil, nil, "one" }, { "web", nil, nil, "two\1" } } }, { plain = true })
    assert.equal("one\ntwo\1\n", r.out)
  end)
end)

describe("memory", function()
  it("stays flat over many batches", function()
    local source = [[return { outputs = { { type = "stdout", format = "plain" } }, filters = { function(b)
      local out = {}
      for i, rec in ipairs(b) do out[i] = { line = rec.line:upper(), n = i, t = { rec.time } } end
      return out
    end } }]]
    local function run(n)
      local lines = {}
      for b = 1, n do
        for l = 1, 50 do lines[#lines + 1] = "web\tstdout\t2024-05-06T07:08:09Z\tline " .. string.rep("x", 100) end
        lines[#lines + 1] = ""
      end
      -- under AddressSanitizer, freed memory waits in a quarantine: keep it small
      local env = { ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":quarantine_size_mb=1" }
      local r = feed(source, table.concat(lines, "\n") .. "\n", { args = { "--lockstep" }, plain = true, env = env })
      assert.equal(0, r.code)
      assert.equal(n * 50, r.stats.records_out)
      return r.stats.maxrss_kb
    end
    local small = run(200)
    local large = run(4000)
    assert.is_true(large < small + 4 * 1024, ("maxrss %d KiB after 200 batches, %d KiB after 4000"):format(small, large))
  end)
end)

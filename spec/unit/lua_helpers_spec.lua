-- lua_helpers_spec.lua - the helper modules in lua/engine/: logfmt, kv,
-- time, multiline, sample and redact directly; engine.json (C, preloaded by
-- the engine) through build/pipeline_feed.
package.path = "lua/?.lua;" .. package.path
local feed = require("spec.support.feed")
local logfmt = require("engine.logfmt")
local kv = require("engine.kv")
local etime = require("engine.time")
local multiline = require("engine.multiline")
local sample = require("engine.sample")
local redact = require("engine.redact")

-- A ctx for calling hooks directly: emit collects the records.
local function fake_ctx()
  local ctx = { emitted = {} }
  ctx.emit = function(rec) ctx.emitted[#ctx.emitted + 1] = rec end
  return ctx
end

local function rec(line, container, stream)
  return { line = line, container = container or "c1", name = "n1", stream = stream or "stdout" }
end

local function lines(records)
  local out = {}
  for i, r in ipairs(records) do out[i] = r.line end
  return out
end

describe("engine.logfmt", function()
  it("parses bare, quoted, escaped and empty values", function()
    assert.same({ level = "info", msg = 'user "ann" logged\tin', id = "42", dry = true, empty = "" },
      logfmt.parse('level=info msg="user \\"ann\\" logged\\tin" id=42 dry empty='))
  end)

  it("skips what is not a pair and keeps the last of a repeated key", function()
    assert.same({ a = "2", b = "x" }, logfmt.parse('a=1 =stray a=2 b=x c="unterminated'))
    assert.same({}, logfmt.parse("   "))
  end)
end)

describe("engine.kv", function()
  it("extracts pairs from free text, with quotes", function()
    assert.same({ status = "200", took = "12ms", user = "ann lee" },
      kv.extract("GET /x status=200 took=12ms user='ann lee' trailing"))
  end)

  it("takes separators, include/exclude, prefix and numbers", function()
    assert.same({ a = "1", b = "2" }, kv.extract("a:1; b : 2;junk", { pair_sep = ";", kv_sep = ":" }))
    assert.same({ kv_a = 1 }, kv.extract("a=1 b=2 c=3", { include = { "a", "b" }, exclude = { "b" },
      prefix = "kv_", numbers = true }))
    assert.same({ q = '"x"' }, kv.extract('q="x"', { unquote = false }))
  end)
end)

describe("engine.time", function()
  it("parses Docker timestamps to seconds and nanoseconds without precision loss", function()
    assert.same({ 1714979289, 123456789 }, { etime.parse("2024-05-06T07:08:09.123456789Z") })
    assert.same({ 1714979289, 500000000 }, { etime.parse("2024-05-06T09:08:09.5+02:00") })
    assert.same({ 0, 0 }, { etime.parse("1970-01-01T00:00:00Z") })
    assert.same({ -1, 999999999 }, { etime.parse("1969-12-31T23:59:59.999999999Z") })
    assert.same({ 4102444799, 1 }, { etime.parse("2099-12-31T23:59:59.000000001Z") })
  end)

  it("formats back to the canonical form, round-tripping every nanosecond", function()
    assert.equal("2024-05-06T07:08:09.123456789Z", etime.format(1714979289, 123456789))
    assert.equal("2000-02-29T00:00:00.000000000Z", etime.format(951782400, 0))
    for _, t in ipairs({ "2024-02-29T23:59:59.999999999Z", "1999-12-31T00:00:00.000000001Z",
      "2262-04-11T23:47:16.854775807Z" }) do
      assert.equal(t, etime.format(etime.parse(t)))
    end
  end)

  it("rejects what is not RFC3339 and computes differences", function()
    assert.is_nil((etime.parse("2024-05-06 07:08:09Z")))
    assert.is_nil((etime.parse("2024-13-06T07:08:09Z")))
    assert.is_nil((etime.parse("2024-05-06T07:08:09.1234567890Z")))
    assert.is_nil((etime.parse("2024-05-06T07:08:09")))
    assert.equal(1.5, etime.diff(10, 700000000, 9, 200000000))
  end)
end)

describe("engine.multiline", function()
  local start = "^%d%d%d%d%-%d%d%-%d%d"

  it("joins continuation lines per container and stream, across batches", function()
    local f = multiline.new({ start = start })
    local out1 = f.process({ rec("2024-01-01 a"), rec("  at x"), rec("2024-01-01 b", "c2"),
      rec("2024-01-01 err", "c1", "stderr"), rec("  at y"), rec("\tat z", "c1", "stderr") })
    assert.same({}, out1) -- all still pending
    local out2 = f.process({ rec("  at x2"), rec("2024-01-01 c") })
    assert.same({ "2024-01-01 a\n  at x\n  at y\n  at x2" }, lines(out2))
    local ctx = fake_ctx()
    f.shutdown(ctx)
    assert.same({ "2024-01-01 err\n\tat z", "2024-01-01 c", "2024-01-01 b" }, lines(ctx.emitted))
  end)

  it("flushes a record idle for a timer period, and honours continue and max_lines", function()
    local f = multiline.new({ start = "^%S", continue = { "^Caused by" }, max_lines = 3, flush_after = 0.5 })
    assert.same(0.5, f.timers[1].every)
    local out = f.process({ rec("Exception"), rec("Caused by: x"), rec(" at a"), rec(" at b") })
    assert.same({ "Exception\nCaused by: x\n at a" }, lines(out))
    local ctx = fake_ctx()
    f.timers[1].handler(ctx) -- fresh: kept one more period
    assert.same({}, ctx.emitted)
    f.timers[1].handler(ctx)
    assert.same({ " at b" }, lines(ctx.emitted))
  end)

  it("runs as a filter in the engine, its timer flushing the last trace", function()
    local r = feed.run([[
      local multiline = require("engine.multiline")
      return { filters = {
        multiline.new({ start = "^%S", flush_after = 0.02 }),
        function(b)
          for _, r in ipairs(b) do
            if r.line:find("Traceback") then local f = assert(io.open("@DIR@/flushed", "w")); f:close() end
          end
        end,
      } }]], { { { "py", nil, nil, "Traceback (most recent call last):" }, { "py", nil, nil, "  File \"x.py\"" } } },
      { args = { "--finish-when", "@DIR@/flushed" } })
    assert.equal(0, r.code)
    assert.same({ 'Traceback (most recent call last):\n  File "x.py"' }, feed.lines_of(r.records))
    assert.equal("py", r.records[1].name)
  end)
end)

describe("engine.sample", function()
  it("keeps one record in n per container", function()
    local f = sample.one_in(3)
    local batch = {}
    for i = 1, 7 do batch[i] = rec("a" .. i) end
    assert.same({ "a1", "a4", "a7" }, lines(f.process(batch)))
    assert.same({ "a10" }, lines(f.process({ rec("a8"), rec("a9"), rec("a10") })))
    assert.same({ "b1" }, lines(f.process({ rec("b1", "c2") })))
    assert.equal(3, f.process({ rec("b2", "c2"), rec("b3", "c2"), rec("b4", "c2") })[1].sampled)
  end)

  it("rate-limits per container per window and reports the drops", function()
    local f = sample.rate_limit({ lines = 2, every = 5 })
    assert.equal(5, f.timers[1].every)
    assert.same({ "a1", "a2", "b1" }, lines(f.process({ rec("a1"), rec("a2"), rec("a3"), rec("b1", "c2") })))
    assert.same({}, lines(f.process({ rec("a4") })))
    local ctx = fake_ctx()
    f.timers[1].handler(ctx)
    assert.same({ "rate limit: dropped 2 lines" }, lines(ctx.emitted))
    assert.same({ "c1", "n1", 2 }, { ctx.emitted[1].container, ctx.emitted[1].name, ctx.emitted[1].dropped })
    assert.same({ "a5" }, lines(f.process({ rec("a5") })))
  end)
end)

describe("engine.redact", function()
  -- The corpus: { input, expected } pairs.
  local corpus = {
    { "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig-_x", "Authorization: Bearer [REDACTED]" },
    { "auth header bearer abc.def~ghi/jk+l==", "auth header bearer [REDACTED]" },
    { "connect postgres://app:s3cr%21t@db:5432/main", "connect postgres://app:[REDACTED]@db:5432/main" },
    { "fetch https://bot:tok@api.example.com/x ok", "fetch https://bot:[REDACTED]@api.example.com/x ok" },
    { "login password=hunter2 user=ann", "login password=[REDACTED] user=ann" },
    { '{"password": "hunter2", "api_key":"k-123"}', '{"password": "[REDACTED]", "api_key":"[REDACTED]"}' },
    { "client_secret: abc123; next", "client_secret: [REDACTED]; next" },
    { "mail to ann.lee+logs@example.co.uk now", "mail to [EMAIL] now" },
    { "paid with 4111 1111 1111 1111 today", "paid with [CARD] today" },
    { "card 4111-1111-1111-1111.", "card [CARD]." },
    { "amex 3782 822463 10005", "amex [CARD]" },
    { "raw 5555555555554444 end", "raw [CARD] end" },
    -- left alone:
    { "order 4111 1111 1111 1112 fails Luhn", "order 4111 1111 1111 1112 fails Luhn" },
    { "ts 1714979289123456789 is too long", "ts 1714979289123456789 is too long" },
    { "version 1.2.3 at host:8080 user@host", "version 1.2.3 at host:8080 user@host" },
    { "passwords are required", "passwords are required" },
    { "no secrets here", "no secrets here" },
  }

  it("masks the corpus and leaves ordinary text alone", function()
    for _, case in ipairs(corpus) do
      assert.equal(case[2], (redact.text(case[1])), case[1])
    end
  end)

  it("counts masks, takes a rule list and a mask", function()
    assert.same({ "a [REDACTED] b x@y.com", 1 },
      { redact.text("a 4111111111111111 b x@y.com", { rules = { "card" }, mask = "[REDACTED]" }) })
    assert.has_error(function() redact.text("x", { rules = { "nope" } }) end)
  end)

  it("makes a filter that masks fields and marks changed records", function()
    local f = redact.filter({ fields = { "line", "url" } })
    local batch = { { line = "token=abc", url = "http://u:p@h" }, { line = "clean" } }
    f.process(batch)
    assert.same({ line = "token=[REDACTED]", url = "http://u:[REDACTED]@h", redacted = 2 }, batch[1])
    assert.same({ line = "clean" }, batch[2])
  end)
end)

describe("engine.json", function()
  it("decodes and encodes inside filters, backed by cJSON", function()
    local r = feed.run([[
      local json = require("engine.json")
      return { filters = { function(b)
        for _, r in ipairs(b) do
          local doc, err = json.decode(r.line)
          if doc then
            r.doc = doc
            r.again = json.encode(doc)
            r.is_null = doc.n == json.null
          else
            r.err = err
          end
        end
      end } }]], { { { "web", nil, nil, '{"a":[1,2.5,"x",null,true],"n":null,"o":{"k":"v"}}' },
      { "web", nil, nil, "not json" }, { "web", nil, nil, '{"a":1} trailing' }, { "web", nil, nil, '"\\u00e9\\n"' } } })
    assert.equal(0, r.code)
    local d = r.records[1]
    assert.same({ 1, 2.5, "x" }, { d.doc.a[1], d.doc.a[2], d.doc.a[3] })
    assert.equal('{"a":[1,2.5,"x",null,true],"n":null,"o":{"k":"v"}}', d.again)
    assert.is_true(d.is_null)
    assert.equal("json.decode: invalid JSON at byte 1", r.records[2].err)
    assert.is_truthy(r.records[3].err)
    assert.equal("é\n", r.records[4].doc)
  end)

  it("returns nil and a message for values without a JSON form", function()
    local r = feed.run([[
      local json = require("engine.json")
      return { filters = { function(b)
        local s, err = json.encode(print)
        b[1].err = err
        b[1].deep = json.decode(string.rep("[", 300) .. string.rep("]", 300))
      end } }]], feed.numbered(1, 1))
    assert.equal("json.encode: the value has no JSON form", r.records[1].err)
    assert.is_nil(r.records[1].deep)
  end)
end)

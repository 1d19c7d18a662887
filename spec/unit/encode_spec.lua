-- encode_spec.lua - the wire formats of the network outputs (engine/encode.h)
-- through the encode_tool (spec/support/encode_tool.c): each body is parsed
-- back and checked field by field against the records that went in.
package.path = "lua/?.lua;" .. package.path
local proc = require("spec.support.proc")
local cjson = require("cjson")
local otlp = require("spec.support.otlp")

local TOOLS = os.getenv("ENGINE_TOOLS") or "build"
local TOOL = TOOLS .. "/encode_tool"

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Runs encode_tool FORMAT ARGS with the records (a list of tables, or raw
-- text) as its input. Returns the body; fails the spec unless it exits 0.
local function encode(format, records, args)
  local input = os.tmpname()
  local output = os.tmpname()
  if type(records) == "string" then
    write(input, records)
  else
    local lines = {}
    for i, r in ipairs(records) do lines[i] = cjson.encode(r) end
    write(input, table.concat(lines, "\n") .. (#lines > 0 and "\n" or ""))
  end
  local cmd = proc.join({ TOOL, format, unpack(args or {}) }) ..
    " < " .. proc.quote(input) .. " > " .. proc.quote(output)
  local ok, msg, status = proc.sh(cmd, 60)
  local body = proc.read(output)
  os.remove(input)
  os.remove(output)
  assert(ok, ("encode_tool %s exited %s: %s"):format(format, tostring(status), msg))
  return body
end

-- The complete lines of text, without their newlines.
local function lines_of(text)
  local out = {}
  for line in text:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- Days since 1970-01-01 of a proleptic Gregorian date.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The decimal nanoseconds of a "YYYY-MM-DDTHH:MM:SS.fffffffffZ" time, as a
-- string, computed without the engine (and without a double for the
-- fraction).
local function ns_of(t)
  local y, mo, d, h, mi, s, frac = t:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.?(%d*)Z$")
  assert(y, "bad time " .. t)
  local secs = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 +
    tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
  return ("%d%s"):format(secs, (frac .. "000000000"):sub(1, 9))
end

local T1 = "2026-11-27T22:55:45.123456789Z"
local T2 = "2026-11-27T22:55:45.000000001Z"
local T3 = "1999-12-31T23:59:59.999999999Z"

local function rec(over)
  local r = {
    time = T1, stream = "stdout", container = "c0ffee0123456789abcdef", name = "web",
    image = "nginx:1.25", line = "GET / 200", labels = { app = "web", tier = "front" },
  }
  for k, v in pairs(over or {}) do r[k] = v end
  return r
end

local BAD_UTF8 = "bad \255\254 end"
local FFFD = "bad \239\191\189\239\191\189 end"

-- The number of non-overlapping occurrences of plain text needle in s.
local function count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

describe("ns_of (the spec's own reference)", function()
  it("computes known epochs", function()
    assert.equal("0000000000", ns_of("1970-01-01T00:00:00Z"):sub(1, 10))
    assert.equal("1795820145123456789", ns_of(T1))
    assert.equal("946684799999999999", ns_of(T3))
  end)
end)

describe("encode ndjson", function()
  it("writes one JSON object per record and line, every field as it went in", function()
    local records = { rec(), rec({ line = "second", stream = "stderr", extra = { n = 3 } }) }
    local lines = lines_of(encode("ndjson", records))
    assert.equal(2, #lines)
    for i, line in ipairs(lines) do
      assert.same(records[i], cjson.decode(line))
    end
    assert.equal('{"time":', lines[1]:sub(1, 8))
  end)

  it("keeps newlines inside a line escaped and replaces invalid UTF-8", function()
    local lines = lines_of(encode("ndjson", { rec({ line = "a\nb\r\tc" }), rec({ line = BAD_UTF8 }) }))
    assert.equal(2, #lines)
    assert.equal("a\nb\r\tc", cjson.decode(lines[1]).line)
    assert.equal(FFFD, cjson.decode(lines[2]).line)
  end)

  it("writes nothing for an empty batch", function()
    assert.equal("", encode("ndjson", {}))
  end)
end)

describe("encode json array", function()
  it("writes one JSON array of the records", function()
    local records = { rec(), rec({ name = "db", line = BAD_UTF8 }) }
    local out = cjson.decode(encode("array", records))
    assert.equal(2, #out)
    assert.same(records[1], out[1])
    assert.equal(FFFD, out[2].line)
    assert.equal("db", out[2].name)
  end)

  it("writes [] for an empty batch", function()
    assert.equal("[]", encode("array", {}))
  end)
end)

describe("encode clickhouse (JSONEachRow)", function()
  it("writes every column of the documented layout per row", function()
    local records = {
      rec({ level = "warn", output = "ch", truncated = true }),
      rec({ time = T2, stream = "stderr", line = "x\ny" }),
    }
    local rows = lines_of(encode("clickhouse", records))
    assert.equal(2, #rows)
    local r = cjson.decode(rows[1])
    assert.equal("1795820145123456789", r.time_ns)
    assert.equal(ns_of(T1), r.time_ns)
    assert.equal(T1, r.time)
    assert.equal("2026-11-27", r.date)
    assert.equal("stdout", r.stream)
    assert.equal("c0ffee0123456789abcdef", r.container)
    assert.equal("web", r.name)
    assert.equal("nginx:1.25", r.image)
    assert.equal("GET / 200", r.line)
    assert.same({ app = "web", tier = "front" }, cjson.decode(r.labels))
    -- every other field, except the routing field `output`
    assert.same({ level = "warn", truncated = true }, cjson.decode(r.fields))
    local keys = {}
    for k in pairs(r) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "container", "date", "fields", "id", "image", "labels", "line", "name", "stream",
      "time", "time_ns" }, keys)
    -- a plain record (not from a batch) has no record id: a unique one
    assert.matches("^u[0-9a-f]+$", r.id)
    assert.equal(32, #r.id)
    assert.are_not.equal(r.id, cjson.decode(rows[2]).id)
    local r2 = cjson.decode(rows[2])
    assert.equal(ns_of(T2), r2.time_ns)
    assert.equal("1795820145000000001", r2.time_ns)
    assert.equal("x\ny", r2.line)
    assert.equal("stderr", r2.stream)
    assert.equal("{}", r2.fields)
  end)

  it("quotes time_ns, so the value never passes through a double", function()
    local body = encode("clickhouse", { rec({ time = T3 }) })
    assert.truthy(body:find('"time_ns":"946684799999999999"', 1, true))
    assert.equal("1999-12-31", cjson.decode(body).date)
  end)

  it("converts a time with an offset to UTC", function()
    local r = cjson.decode(encode("clickhouse", { rec({ time = "2026-11-28T00:55:45.5+02:00" }) }))
    assert.equal("2026-11-27T22:55:45.500000000Z", r.time)
    assert.equal(ns_of("2026-11-27T22:55:45.5Z"), r.time_ns)
    assert.equal("2026-11-27", r.date)
  end)

  it("uses the current time for a record whose time is missing or malformed", function()
    local before = os.time()
    local rows = lines_of(encode("clickhouse", { rec({ time = "yesterday" }), rec({ time = false }),
      rec({ time = T1 .. " and more" }), rec({ time = "2026-11-27T22:55:45.1234567890Z" }) }))
    assert.equal(4, #rows)
    local after = os.time()
    for _, row in ipairs(rows) do
      local r = cjson.decode(row)
      local secs = tonumber(r.time_ns:sub(1, -10))
      assert.is_true(secs >= before and secs <= after + 1, "time_ns " .. r.time_ns)
      assert.equal(ns_of(r.time), r.time_ns)
      assert.equal(r.time:sub(1, 10), r.date)
    end
  end)

  it("writes empty strings for missing columns and valid JSON for any bytes", function()
    local r = cjson.decode(encode("clickhouse", { { time = T1, line = BAD_UTF8 } }))
    assert.equal("", r.name)
    assert.equal("", r.container)
    assert.equal("{}", r.labels)
    assert.equal(FFFD, r.line)
  end)

  it("writes nothing for an empty batch", function()
    assert.equal("", encode("clickhouse", {}))
  end)
end)

describe("encode loki (push API)", function()
  it("groups records into streams by the label fields, in record order", function()
    local records = {
      rec({ name = "web", line = "w1", time = T1 }),
      rec({ name = "db", line = "d1", time = T2 }),
      rec({ name = "web", line = "w2", time = T3 }),
      rec({ name = "web", stream = "stderr", line = "e1" }),
      rec({ name = "db", line = "d2" }),
    }
    local body = cjson.decode(encode("loki", records, { "--labels", "name,stream" }))
    local s = body.streams
    assert.equal(3, #s)
    assert.same({ name = "web", stream = "stdout" }, s[1].stream)
    assert.same({ { ns_of(T1), "w1" }, { ns_of(T3), "w2" } }, s[1].values)
    assert.same({ name = "db", stream = "stdout" }, s[2].stream)
    assert.same({ { ns_of(T2), "d1" }, { ns_of(T1), "d2" } }, s[2].values)
    assert.same({ name = "web", stream = "stderr" }, s[3].stream)
    assert.same({ { ns_of(T1), "e1" } }, s[3].values)
  end)

  it("writes timestamps as strings of exact nanoseconds", function()
    local body = encode("loki", { rec() }, { "--labels", "name" })
    assert.truthy(body:find('[["1795820145123456789","GET / 200"]]', 1, true))
  end)

  it("leaves a missing label out and writes numbers and booleans as text", function()
    local records = { rec({ env = nil, code = 7, ok = true }), rec({ env = "prod", code = 7, ok = true }) }
    local s = cjson.decode(encode("loki", records, { "--labels", "env,code,ok" })).streams
    assert.equal(2, #s)
    assert.same({ code = "7", ok = "true" }, s[1].stream)
    assert.same({ env = "prod", code = "7", ok = "true" }, s[2].stream)
  end)

  it("keeps newlines in a line and replaces invalid UTF-8", function()
    local s = cjson.decode(encode("loki", { rec({ line = "a\nb" }), rec({ line = BAD_UTF8 }) },
      { "--labels", "name" })).streams
    assert.equal(1, #s)
    assert.equal("a\nb", s[1].values[1][2])
    assert.equal(FFFD, s[1].values[2][2])
  end)

  it("makes field names valid label names, sending each name once", function()
    local records = { rec({ ["k8s.pod-name"] = "p1", ["9lives"] = "cat", k8s_pod_name = "p2", ["é"] = "e" }) }
    local s = cjson.decode(encode("loki", records,
      { "--labels", "k8s.pod-name,k8s_pod_name,9lives,é,name" })).streams
    assert.equal(1, #s)
    -- "k8s_pod_name" comes out of both first fields: the first one listed wins
    assert.same({ k8s_pod_name = "p1", _9lives = "cat", __ = "e", name = "web" }, s[1].stream)
    for k in pairs(s[1].stream) do
      assert.truthy(k:match("^[%a_][%w_]*$"), k)
    end
  end)

  it("writes no stream for an empty batch", function()
    assert.equal('{"streams":[]}', encode("loki", {}, { "--labels", "name" }))
  end)

  it("puts static labels on every stream, escaped, with valid names, before the fields", function()
    local records = { rec({ name = "web", job = "from-field" }), rec({ name = "db" }) }
    local s = cjson.decode(encode("loki", records, { "--labels", "name,job",
      "--static", 'job=ed"ge\\x\n', "--static", "9team.a-b=é ü", "--static", "=empty" })).streams
    assert.equal(2, #s)
    -- the static job wins over the field of the same name; names are made valid
    assert.same({ job = 'ed"ge\\x\n', _9team_a_b = "é ü", _ = "empty", name = "web" }, s[1].stream)
    assert.same({ job = 'ed"ge\\x\n', _9team_a_b = "é ü", _ = "empty", name = "db" }, s[2].stream)
    for k in pairs(s[1].stream) do
      assert.truthy(k:match("^[%a_][%w_]*$"), k)
    end
  end)

  it("labels a stream that would have no label job=engine, never an empty set", function()
    local records = { rec({ line = "one" }), rec({ env = "prod", line = "two" }) }
    local s = cjson.decode(encode("loki", records, { "--labels", "env" })).streams
    assert.equal(2, #s)
    assert.same({ job = "engine" }, s[1].stream)
    assert.same({ { ns_of(T1), "one" } }, s[1].values)
    assert.same({ env = "prod" }, s[2].stream)
    local body = encode("loki", records, {})
    assert.falsy(body:find('"stream":{}', 1, true), body)
  end)

  it("sends the whole record as the line with --json-line, fields included", function()
    local records = { rec({ level = "warn", n = 3, line = "a \"q\"" }), rec({ line = BAD_UTF8 }) }
    local s = cjson.decode(encode("loki", records, { "--labels", "name", "--json-line" })).streams
    assert.equal(1, #s)
    assert.equal(2, #s[1].values)
    local first = cjson.decode(s[1].values[1][2])
    assert.same(records[1], first)
    assert.equal(ns_of(T1), s[1].values[1][1])
    local second = cjson.decode(s[1].values[2][2])
    assert.equal(FFFD, second.line)
    assert.equal("web", second.name)
    -- the default takes the line alone
    s = cjson.decode(encode("loki", records, { "--labels", "name" })).streams
    assert.equal('a "q"', s[1].values[1][2])
  end)
end)

describe("encode elasticsearch (_bulk)", function()
  it("writes a create action line before each document and ends with a newline", function()
    local records = { rec(), rec({ time = T2, line = "two", level = "error" }) }
    local body = encode("elasticsearch", records, { "--index", "logs-engine" })
    assert.equal("\n", body:sub(-1))
    local lines = lines_of(body)
    assert.equal(4, #lines)
    for i = 1, 3, 2 do
      assert.same({ create = { _index = "logs-engine" } }, cjson.decode(lines[i]))
    end
    local d1, d2 = cjson.decode(lines[2]), cjson.decode(lines[4])
    assert.equal(T1, d1["@timestamp"])
    local prefix = '{"@timestamp":"2026-11-27T22:55:45.123456789Z","time":'
    assert.equal(prefix, lines[2]:sub(1, #prefix))
    d1["@timestamp"] = nil
    assert.same(records[1], d1)
    assert.equal(T2, d2["@timestamp"])
    assert.equal("two", d2.line)
    assert.equal("error", d2.level)
  end)

  it("keeps a record's own @timestamp and writes the key once", function()
    local body = encode("elasticsearch", { rec({ ["@timestamp"] = "2020-01-01T00:00:00Z" }) })
    local lines = lines_of(body)
    assert.equal(1, count(lines[2], '"@timestamp"'))
    assert.equal("2020-01-01T00:00:00Z", cjson.decode(lines[2])["@timestamp"])
  end)

  it("writes the timestamp in UTC with nanoseconds, also for an empty record", function()
    local lines = lines_of(encode("elasticsearch", { { time = "2026-11-28T00:55:45.000000007+02:00" } }))
    assert.equal('{"@timestamp":"2026-11-27T22:55:45.000000007Z","time":"2026-11-28T00:55:45.000000007+02:00"}',
      lines[2])
    local empty = lines_of(encode("elasticsearch", "{}\n"))
    assert.equal(2, #empty)
    assert.truthy(empty[2]:match('^{"@timestamp":"%d%d%d%d%-[^"]+Z"}$'), empty[2])
  end)

  it("escapes the index name and replaces invalid UTF-8 in documents", function()
    local lines = lines_of(encode("elasticsearch", { rec({ line = BAD_UTF8 .. "\n" }) },
      { "--index", 'we"ird' }))
    assert.same({ create = { _index = 'we"ird' } }, cjson.decode(lines[1]))
    assert.equal(FFFD .. "\n", cjson.decode(lines[2]).line)
  end)

  it("writes nothing for an empty batch", function()
    assert.equal("", encode("elasticsearch", {}))
  end)
end)

describe("elasticsearch_bulk_errors", function()
  local function bulk(reply)
    local out = encode("bulk-errors", reply)
    local n, reason = out:match("^(%-?%d+) (.-)\n$")
    assert(n, "unexpected output: " .. out)
    return tonumber(n), reason
  end

  it("returns 0 when every item was created", function()
    local n, reason = bulk([[{"took":3,"errors":false,"items":[
      {"create":{"_index":"logs","_id":"a","status":201,"result":"created"}},
      {"create":{"_index":"logs","_id":"b","status":201,"result":"created"}}]}]])
    assert.equal(0, n)
    assert.equal("", reason)
  end)

  it("counts the failed items and reports the first reason", function()
    local n, reason = bulk([[{"took":3,"errors":true,"items":[
      {"create":{"_index":"logs","status":201}},
      {"create":{"_index":"logs","status":400,"error":{"type":"mapper_parsing_exception",
        "reason":"failed to parse field [level] of type [long]"}}},
      {"create":{"_index":"logs","status":429,"error":{"type":"es_rejected_execution_exception",
        "reason":"rejected execution"}}}]}]])
    assert.equal(2, n)
    assert.equal("status 400 mapper_parsing_exception: failed to parse field [level] of type [long]", reason)
  end)

  it("counts an item with a failing status even without an error object", function()
    local n, reason = bulk('{"errors":true,"items":[{"index":{"status":503}}]}')
    assert.equal(1, n)
    assert.equal("status 503 error: no reason given", reason)
  end)

  it("refuses what is not a _bulk reply", function()
    assert.equal(-1, (bulk("<html>502 Bad Gateway</html>")))
    assert.equal(-1, (bulk('{"error":{"type":"x"},"status":400}')))
    assert.equal(-1, (bulk('[1,2]')))
    assert.equal(-1, (bulk('')))
    assert.equal(-1, (bulk('{"items":[{"create":{"status":201}}')))
  end)
end)

describe("encode otlp (OTLP/HTTP JSON logs)", function()
  local function attrs(list)
    local out = {}
    for _, kv in ipairs(list) do
      assert.is_nil(out[kv.key], "attribute repeated: " .. kv.key)
      out[kv.key] = kv.value
    end
    return out
  end

  it("writes an ExportLogsServiceRequest with one resource per container", function()
    local records = {
      rec({ line = "w1" }),
      rec({ container = "dbdbdbdb", name = "db", image = "postgres", line = "d1", time = T2,
            labels = { role = "primary" } }),
      rec({ line = "w2", time = T3, stream = "stderr" }),
    }
    local before = os.time()
    local body = cjson.decode(encode("otlp", records, { "--share-labels" }))
    local after = os.time()
    local rl = body.resourceLogs
    assert.equal(2, #rl)
    local r1 = attrs(rl[1].resource.attributes)
    assert.same({ stringValue = "web" }, r1["service.name"])
    assert.same({ stringValue = "c0ffee0123456789abcdef" }, r1["container.id"])
    assert.same({ stringValue = "web" }, r1["container.name"])
    assert.same({ stringValue = "nginx:1.25" }, r1["container.image.name"])
    assert.same({ stringValue = "web" }, r1["container.label.app"])
    assert.same({ stringValue = "front" }, r1["container.label.tier"])
    assert.same({ stringValue = "primary" }, attrs(rl[2].resource.attributes)["container.label.role"])
    assert.same({ stringValue = "db" }, attrs(rl[2].resource.attributes)["service.name"])

    assert.equal(1, #rl[1].scopeLogs)
    assert.equal("engine", rl[1].scopeLogs[1].scope.name)
    local lr = rl[1].scopeLogs[1].logRecords
    assert.equal(2, #lr)
    assert.equal(ns_of(T1), lr[1].timeUnixNano)
    assert.equal(ns_of(T3), lr[2].timeUnixNano)
    assert.same({ stringValue = "w1" }, lr[1].body)
    assert.same({ stringValue = "w2" }, lr[2].body)
    assert.same({ stringValue = "stdout" }, attrs(lr[1].attributes)["log.iostream"])
    assert.same({ stringValue = "stderr" }, attrs(lr[2].attributes)["log.iostream"])
    assert.equal("string", type(lr[1].observedTimeUnixNano))
    local observed = tonumber(lr[1].observedTimeUnixNano:sub(1, -10))
    assert.is_true(observed >= before and observed <= after + 1)
    local lr2 = rl[2].scopeLogs[1].logRecords
    assert.equal(1, #lr2)
    assert.equal("1795820145000000001", lr2[1].timeUnixNano)
    assert.same({ stringValue = "d1" }, lr2[1].body)
  end)

  it("keeps the record fields out of the attributes, except stream", function()
    local lr = cjson.decode(encode("otlp", { rec({ output = "x" }) })).resourceLogs[1].scopeLogs[1].logRecords[1]
    local a = attrs(lr.attributes)
    for _, k in ipairs({ "time", "stream", "container", "name", "image", "line", "labels", "output" }) do
      assert.is_nil(a[k], k)
    end
    assert.equal(1, #lr.attributes)
  end)

  it("maps a severity or level field to severityText and severityNumber", function()
    local records = {
      rec({ level = "ERROR" }), rec({ severity = "warning", level = "info" }),
      rec({ level = "debug" }), rec({ level = "verbose" }), rec(),
    }
    local lr = cjson.decode(encode("otlp", records, { "--share-labels" })).resourceLogs[1].scopeLogs[1].logRecords
    assert.equal(5, #lr)
    assert.equal("ERROR", lr[1].severityText)
    assert.equal(17, lr[1].severityNumber)
    assert.is_nil(attrs(lr[1].attributes).level)
    assert.equal("warning", lr[2].severityText)
    assert.equal(13, lr[2].severityNumber)
    assert.same({ stringValue = "info" }, attrs(lr[2].attributes).level)
    assert.equal(5, lr[3].severityNumber)
    assert.equal("verbose", lr[4].severityText)
    assert.is_nil(lr[4].severityNumber)
    assert.is_nil(lr[5].severityText)
    assert.is_nil(lr[5].severityNumber)
  end)

  it("encodes other fields as typed AnyValues", function()
    local r = rec({ user = "ann", count = 42, ratio = 0.5, ok = false, truncated = true,
      tags = { "a", "b" }, http = { status = 200, path = "/x" }, nothing = cjson.null })
    local lr = cjson.decode(encode("otlp", { r })).resourceLogs[1].scopeLogs[1].logRecords[1]
    local a = attrs(lr.attributes)
    assert.same({ stringValue = "ann" }, a.user)
    assert.same({ intValue = "42" }, a.count)
    assert.same({ doubleValue = 0.5 }, a.ratio)
    assert.same({ boolValue = false }, a.ok)
    assert.same({ boolValue = true }, a.truncated)
    assert.same({ arrayValue = { values = { { stringValue = "a" }, { stringValue = "b" } } } }, a.tags)
    assert.same({ kvlistValue = { values = {
      { key = "path", value = { stringValue = "/x" } },
      { key = "status", value = { intValue = "200" } } } } }, a.http)
    assert.same({}, a.nothing)
    -- attributes after log.iostream come sorted by key
    local keys = {}
    for i, kv in ipairs(lr.attributes) do keys[i] = kv.key end
    assert.same({ "log.iostream", "count", "http", "nothing", "ok", "ratio", "tags", "truncated", "user" }, keys)
  end)

  it("splits resources when the labels tables differ, and keeps bytes valid", function()
    local records = { rec({ line = BAD_UTF8 }), rec({ line = "a\nb" }) }
    local rl = cjson.decode(encode("otlp", records)).resourceLogs
    -- without --share-labels every record has a labels table of its own
    assert.equal(2, #rl)
    assert.same({ stringValue = FFFD }, rl[1].scopeLogs[1].logRecords[1].body)
    assert.same({ stringValue = "a\nb" }, rl[2].scopeLogs[1].logRecords[1].body)
  end)

  it("writes no resource for an empty batch", function()
    assert.equal('{"resourceLogs":[]}', encode("otlp", {}))
  end)
end)

describe("encode otlp-proto (OTLP/HTTP protobuf logs)", function()
  -- The protobuf body decoded by protoc (spec/support/otlp.lua) and the
  -- JSON body of the same records, without observedTimeUnixNano (the time
  -- of each encoding), which must lie between before and after (seconds).
  local function both(records, args, before, after)
    local json = cjson.decode(encode("otlp", records, args))
    local proto = otlp.decode(encode("otlp-proto", records, args))
    for _, req in ipairs({ json, proto }) do
      for _, rl in ipairs(req.resourceLogs) do
        for _, sl in ipairs(rl.scopeLogs) do
          for _, lr in ipairs(sl.logRecords) do
            local observed = tonumber(lr.observedTimeUnixNano:sub(1, -10))
            if before then assert.is_true(observed >= before and observed <= after + 1) end
            lr.observedTimeUnixNano = nil
          end
        end
      end
    end
    return json, proto
  end

  local function attrs(list)
    local out = {}
    for _, kv in ipairs(list) do
      assert.is_nil(out[kv.key], "attribute repeated: " .. kv.key)
      out[kv.key] = kv.value
    end
    return out
  end

  it("carries what the JSON form carries: resources, times, severities, typed values", function()
    local records = {
      rec({ line = "w1", level = "ERROR" }),
      rec({ container = "dbdbdbdb", name = "db", image = "postgres", line = "d1", time = T2,
            labels = { role = "primary" }, severity = "warning", level = "info" }),
      rec({ line = "w2", time = T3, stream = "stderr", user = "ann", count = 42, ratio = 0.5,
            ok = false, truncated = true, tags = { "a", "b", { 1, 2 } },
            http = { status = 200, path = "/x", deep = { deeper = { true } } },
            nothing = cjson.null }),
      rec({ line = BAD_UTF8, level = "verbose", [BAD_UTF8] = BAD_UTF8 }),
      rec({ time = "1969-12-31T23:59:59Z", line = "a\nb\tc" }),
    }
    local before = os.time()
    local json, proto = both(records, { "--share-labels" }, before, os.time())
    assert.same(json, proto)
    local rl = proto.resourceLogs
    assert.equal(2, #rl)
    assert.same({ stringValue = "web" }, attrs(rl[1].resource.attributes)["container.label.app"])
    assert.same({ stringValue = "db" }, attrs(rl[2].resource.attributes)["service.name"])
    assert.same({ name = "engine", version = rl[1].scopeLogs[1].scope.version }, rl[1].scopeLogs[1].scope)
    local lr = rl[1].scopeLogs[1].logRecords
    assert.equal(4, #lr)
    assert.equal(ns_of(T1), lr[1].timeUnixNano)
    assert.equal(ns_of(T3), lr[2].timeUnixNano)
    assert.equal("0", lr[4].timeUnixNano) -- before 1970: unknown
    assert.equal(17, lr[1].severityNumber)
    assert.equal("ERROR", lr[1].severityText)
    assert.same({ stringValue = FFFD }, lr[3].body)
    assert.same({ stringValue = FFFD }, attrs(lr[3].attributes)[FFFD])
    assert.same({ stringValue = "a\nb\tc" }, lr[4].body)
    local a = attrs(lr[2].attributes)
    assert.same({ intValue = "42" }, a.count)
    assert.same({ doubleValue = 0.5 }, a.ratio)
    assert.same({ boolValue = false }, a.ok)
    assert.same({}, a.nothing)
    assert.same({ arrayValue = { values = { { stringValue = "a" }, { stringValue = "b" },
      { arrayValue = { values = { { intValue = "1" }, { intValue = "2" } } } } } } }, a.tags)
    local w = rl[2].scopeLogs[1].logRecords[1]
    assert.equal("warning", w.severityText)
    assert.equal(13, w.severityNumber)
    assert.same({ stringValue = "info" }, attrs(w.attributes).level)
  end)

  it("keeps empty strings and multibyte UTF-8", function()
    local mb = "caf\195\169 \226\130\172 \240\159\152\128 \230\151\165\230\156\172"
    local records = {
      rec({ line = "", labels = { [""] = "", e = "" }, empty = "", [mb] = mb }),
      rec({ line = mb, name = "", image = "" }),
    }
    local json, proto = both(records)
    assert.same(json, proto)
    local lr = proto.resourceLogs[1].scopeLogs[1].logRecords[1]
    assert.same({ stringValue = "" }, lr.body)
    assert.same({ stringValue = "" }, attrs(lr.attributes).empty)
    assert.same({ stringValue = mb }, attrs(lr.attributes)[mb])
    local r = attrs(proto.resourceLogs[1].resource.attributes)
    assert.same({ stringValue = "" }, r["container.label."])
    assert.same({ stringValue = "" }, r["container.label.e"])
    assert.same({ stringValue = mb }, proto.resourceLogs[2].scopeLogs[1].logRecords[1].body)
    assert.same({ stringValue = "" }, attrs(proto.resourceLogs[2].resource.attributes)["service.name"])
  end)

  it("writes integers and lengths at every varint size", function()
    local ints = { 0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 2147483648, 2 ^ 46, -1, -128,
                   -(2 ^ 46), 9.1e18 }
    local fields = {}
    for i, v in ipairs(ints) do fields[("i%02d"):format(i)] = v end
    local records = { rec(fields) }
    -- strings around each length a varint changes size at, in messages
    -- nested three deep
    for _, n in ipairs({ 0, 1, 100, 126, 127, 128, 200, 16300, 16383, 16384, 2097152 }) do
      records[#records + 1] = rec({ line = ("x"):rep(n), nest = { a = { b = ("y"):rep(n) } } })
    end
    local json, proto = both(records, { "--share-labels" })
    assert.same(json, proto)
    local a = attrs(proto.resourceLogs[1].scopeLogs[1].logRecords[1].attributes)
    for i, v in ipairs(ints) do
      assert.equal(("%.0f"):format(v), a[("i%02d"):format(i)].intValue)
    end
    local lrs = proto.resourceLogs[1].scopeLogs[1].logRecords
    assert.equal(#records, #lrs)
    assert.equal(2097152, #lrs[#lrs].body.stringValue)
  end)

  it("writes a 1 MB line and labels with many entries", function()
    local big = ("0123456789abcde\195\169"):rep(1024 * 1024 / 17 + 1)
    local labels = {}
    for i = 1, 500 do labels[("com.example.label%03d"):format(i)] = ("value %d \226\130\172"):format(i) end
    local records = { rec({ line = big, labels = labels }), rec({ line = "after", labels = labels }) }
    local json, proto = both(records, { "--share-labels" })
    assert.same(json, proto)
    assert.equal(1, #proto.resourceLogs)
    local r = attrs(proto.resourceLogs[1].resource.attributes)
    assert.equal(4 + 500, #proto.resourceLogs[1].resource.attributes)
    assert.same({ stringValue = "value 7 \226\130\172" }, r["container.label.com.example.label007"])
    local lr = proto.resourceLogs[1].scopeLogs[1].logRecords
    assert.equal(big, lr[1].body.stringValue)
    assert.is_true(#big > 1024 * 1024)
    assert.same({ stringValue = "after" }, lr[2].body)
  end)

  it("writes an empty request for an empty batch", function()
    assert.equal("", encode("otlp-proto", {}))
    assert.same({ resourceLogs = {} }, otlp.decode(""))
  end)
end)

describe("encode syslog (RFC 5424)", function()
  -- Splits an octet-counted stream into its messages; fails on bad framing.
  local function frames(body)
    local out, pos = {}, 1
    while pos <= #body do
      local len, rest = body:match("^([1-9]%d*) ()", pos)
      assert(len, "bad frame header at byte " .. pos)
      len = tonumber(len)
      assert(rest + len - 1 <= #body, "frame overruns the body")
      out[#out + 1] = body:sub(rest, rest + len - 1)
      pos = rest + len
    end
    return out
  end

  -- The parts of one message.
  local function parse(msg)
    local pri, ver, ts, host, app, procid, msgid, sd, text =
      msg:match("^<(%d+)>(%d) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (.*)$")
    assert(pri, "not an RFC 5424 message: " .. msg)
    return { pri = tonumber(pri), version = ver, ts = ts, host = host, app = app, procid = procid,
      msgid = msgid, sd = sd, msg = text }
  end

  it("frames each message with its exact byte count", function()
    local records = { rec(), rec({ line = "caf\195\169 \226\130\172" }), rec({ line = "" }),
      rec({ line = ("x"):rep(70000) }) }
    local body = encode("syslog", records, { "--octet", "--hostname", "edge-1" })
    local msgs = frames(body)
    assert.equal(4, #msgs)
    assert.equal("GET / 200", parse(msgs[1]).msg)
    assert.equal("caf\195\169 \226\130\172", parse(msgs[2]).msg)
    assert.equal("", parse(msgs[3]).msg)
    assert.equal(70000, #parse(msgs[4]).msg)
    local first_len = tonumber(body:match("^(%d+) "))
    assert.equal(#msgs[1], first_len)
  end)

  it("writes PRI, version, timestamp with microseconds, hostname, app-name, procid, msgid", function()
    local m = parse(frames(encode("syslog", { rec() }, { "--hostname", "edge-1", "--facility", "1" }))[1])
    assert.equal(14, m.pri)             -- user (1) * 8 + info (6)
    assert.equal("1", m.version)
    assert.equal("2026-11-27T22:55:45.123456Z", m.ts)
    assert.equal("edge-1", m.host)
    assert.equal("web", m.app)
    assert.equal("c0ffee012345", m.procid)
    assert.equal("stdout", m.msgid)
    assert.equal("-", m.sd)
    assert.equal("GET / 200", m.msg)
  end)

  it("takes the severity from the stream, or from a severity or level field", function()
    local records = { rec({ stream = "stderr" }), rec({ level = "warning" }), rec({ severity = "crit" }),
      rec({ level = 7 }), rec({ stream = "stderr", level = "nonsense" }) }
    local msgs = frames(encode("syslog", records, { "--facility", "16" }))
    local pris = {}
    for i, m in ipairs(msgs) do pris[i] = parse(m).pri end
    assert.same({ 16 * 8 + 3, 16 * 8 + 4, 16 * 8 + 2, 16 * 8 + 7, 16 * 8 + 3 }, pris)
  end)

  it("cuts the app-name to 48 printable characters and fills missing fields with -", function()
    local long = "my service " .. ("n"):rep(60)
    local msgs = frames(encode("syslog", { rec({ name = long }), { line = "bare" } }, { "--hostname", "" }))
    local m1, m2 = parse(msgs[1]), parse(msgs[2])
    assert.equal(48, #m1.app)
    assert.equal(("my_service_" .. ("n"):rep(60)):sub(1, 48), m1.app)
    assert.equal("-", m1.host)
    assert.equal("-", m2.app)
    assert.equal("-", m2.procid)
    assert.equal("-", m2.msgid)
    assert.equal("bare", m2.msg)
  end)

  it("escapes newlines in a line and keeps other bytes as they are", function()
    local records = { rec({ line = "one\ntwo\n" }), rec({ line = BAD_UTF8 }) }
    local msgs = frames(encode("syslog", records))
    assert.equal("one\\ntwo\\n", parse(msgs[1]).msg)
    assert.equal(BAD_UTF8, parse(msgs[2]).msg)
  end)

  it("ends each message with LF under newline framing, as encode_syslog_one writes them", function()
    local records = { rec({ line = "a\nb" }), rec({ line = "c", time = T2 }) }
    local body = encode("syslog", records, { "--newline", "--hostname", "h" })
    local lines = lines_of(body)
    assert.equal(2, #lines)
    assert.equal(#body, #lines[1] + #lines[2] + 2)
    assert.equal("a\\nb", parse(lines[1]).msg)
    assert.equal("2026-11-27T22:55:45.000000Z", parse(lines[2]).ts)
    assert.equal(body, encode("syslog-one", records, { "--hostname", "h" }))
    local octets = frames(encode("syslog", records, { "--octet", "--hostname", "h" }))
    assert.same(lines, octets)
  end)

  it("uses the current time for a record without a valid time", function()
    local before = os.date("!%Y-%m-%dT%H:%M:%S", os.time())
    local m = parse(frames(encode("syslog", { rec({ time = "garbage" }) }))[1])
    local after = os.date("!%Y-%m-%dT%H:%M:%S", os.time() + 1)
    assert.truthy(m.ts:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$"), m.ts)
    assert.is_true(m.ts:sub(1, 19) >= before and m.ts:sub(1, 19) <= after, m.ts)
  end)

  it("writes nothing for an empty batch", function()
    assert.equal("", encode("syslog", {}))
    assert.equal("", encode("syslog", {}, { "--newline" }))
  end)
end)

describe("every encoder, given lazy records (engine/record.h)", function()
  -- The records for encode_tool --lazy (original fields, other fields, and
  -- "=f" / "-f" to set or delete field f on the lazy record), and the plain
  -- records a filter making the same changes would hand on.
  -- (clock: the format writes the current time for a record without a
  -- time, so no record deletes its time.)
  local function cases(clock)
    local A = { container = "aaaa1111", name = "web", image = "nginx:1.25",
                labels = { app = "web", tier = "front" } }
    local B = { container = "bbbb2222", name = "db", image = "postgres:16", labels = {} }
    local lazy, plain = {}, {}
    local function add(c, time, stream, line, extra)
      local l = { container = c.container, name = c.name, image = c.image, labels = c.labels,
                  time = time, stream = stream, line = line }
      for k, v in pairs(extra or {}) do l[k] = v end
      local p = {}
      for k, v in pairs(l) do
        if not k:match("^[=-]") then p[k] = v end
      end
      for k, v in pairs(l) do
        local op, f = k:match("^([=-])(.+)$")
        if op == "=" then p[f] = v elseif op == "-" then p[f] = nil end
      end
      lazy[#lazy + 1], plain[#plain + 1] = l, p
    end
    add(A, T1, "stdout", "level=info msg=one")
    add(A, T2, "stderr", "level=error boom \"quoted\"",
        { truncated = true, level = "error", n = 3, nested = { a = { 1, 2 } } })
    add(A, T1, "stdout", "renamed", { ["=name"] = "api", ["=time"] = T3, severity = "warn" })
    add(B, T3, "stderr", "deleted",
        { ["-stream"] = true, ["-labels"] = true, ["-image"] = true, flag = false })
    add(B, T2, "stdout", "new line", { ["=line"] = "replaced", ["=container"] = "other", host = "h1" })
    add(B, T1, "stdout", BAD_UTF8, { ["-truncated"] = true, ["-time"] = not clock or nil, ["=stream"] = 7 })
    return lazy, plain
  end

  local clocked = { clickhouse = true, loki = true, elasticsearch = true, otlp = true,
                    syslog = true, ["syslog-one"] = true }
  -- OTLP's observedTimeUnixNano is the time of encoding
  -- and records of a batch have record ids, plain ones none (ClickHouse:
  -- a unique one): compared without them
  local function steady(body)
    body = body:gsub('"observedTimeUnixNano":"%d+"', '"observedTimeUnixNano":"now"')
    body = body:gsub(',{"key":"log.record.uid","value":{"stringValue":"%x+"}}', "")
    body = body:gsub('{"key":"log.record.uid","value":{"stringValue":"%x+"}},?', "")
    body = body:gsub(',"_id":"%x+"', "")
    return (body:gsub('"id":"u?%x+"', '"id":"-"'))
  end

  for _, f in ipairs({ { "ndjson" }, { "array" }, { "clickhouse" },
                       { "loki", "--labels", "name,stream,container,image" },
                       { "loki", "--labels", "name", "--static", "job=x", "--json-line" },
                       { "elasticsearch" }, { "otlp" }, { "syslog" }, { "syslog-one" } }) do
    it(f[1] .. ": writes the bytes of the plain records, leaving the records lazy", function()
      local lazy, plain = cases(clocked[f[1]])
      local args = { unpack(f, 2) }
      local want = steady(encode(f[1], plain, { "--share-labels", unpack(args) }))
      local got = steady(encode(f[1], lazy, { "--lazy", unpack(args) }))
      assert.equal(want, got)
      -- the changes made on the lazy records are in the body
      for _, s in ipairs({ "api", "replaced" }) do
        assert.truthy(got:find(s, 1, true), s .. " in " .. got)
      end
    end)
  end

  -- The record ids of the lazy records in each body that carries them.
  local function ids(format, lazy)
    local body = encode(format, lazy, { "--lazy" })
    local pattern = ({ ["ndjson-id"] = '^{"id":"(%x+)"', ["array-id"] = '"id":"(%x+)"',
                       clickhouse = '"id":"(%x+)"', elasticsearch = '"_id":"(%x+)"',
                       otlp = '"log.record.uid","value":{"stringValue":"(%x+)"' })[format]
    local out = {}
    if format == "ndjson-id" then
      for _, l in ipairs(lines_of(body)) do out[#out + 1] = l:match(pattern) end
    else
      for id in body:gmatch(pattern) do out[#out + 1] = id end
    end
    return out, body
  end

  it("writes each record's id where the format has one, the same in every format", function()
    local lazy = cases(true)
    local want = ids("ndjson-id", lazy)
    assert.equal(#lazy, #want)
    local distinct = {}
    for _, id in ipairs(want) do
      assert.matches("^[0-9a-f]+$", id)
      assert.equal(32, #id)
      distinct[id] = true
    end
    for _, f in ipairs({ "array-id", "clickhouse", "elasticsearch" }) do
      assert.same(want, (ids(f, lazy)), f)
    end
    -- OTLP: grouped by container, so compared as a set
    local otlp = ids("otlp", lazy)
    table.sort(otlp)
    local sorted = { unpack(want) }
    table.sort(sorted)
    assert.same(sorted, otlp)
    -- the same records encoded again: the same ids
    assert.same(want, (ids("ndjson-id", lazy)))
    -- without record_id, the http bodies have none
    assert.falsy(encode("ndjson", lazy, { "--lazy" }):find('"id"', 1, true))
    assert.falsy(encode("array", lazy, { "--lazy" }):find('"id"', 1, true))
    -- with it, the id comes first and the rest of the record is unchanged
    local _, body = ids("ndjson-id", lazy)
    local plain = lines_of(encode("ndjson", lazy, { "--lazy" }))
    for i, l in ipairs(lines_of(body)) do
      assert.equal(plain[i], "{" .. l:sub(#'{"id":"' + 32 + 3))
    end
  end)

  it("otlp-proto: the same request as the JSON form, record ids included", function()
    local lazy = cases(true)
    local json = cjson.decode(encode("otlp", lazy, { "--lazy" }))
    local proto = otlp.decode(encode("otlp-proto", lazy, { "--lazy" }))
    for _, req in ipairs({ json, proto }) do
      for _, rl in ipairs(req.resourceLogs) do
        for _, lr in ipairs(rl.scopeLogs[1].logRecords) do
          assert.matches("^%d+$", lr.observedTimeUnixNano)
          lr.observedTimeUnixNano = nil
        end
      end
    end
    assert.same(json, proto)
    local n = 0
    for _, rl in ipairs(proto.resourceLogs) do
      for _, lr in ipairs(rl.scopeLogs[1].logRecords) do
        for _, a in ipairs(lr.attributes) do
          if a.key == "log.record.uid" then n = n + 1 end
        end
      end
    end
    assert.equal(#lazy, n)
  end)
end)

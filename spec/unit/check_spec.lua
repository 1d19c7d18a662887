-- check_spec.lua - `engine check`: every mistake of a pipeline in one run,
-- each with its file:line, and no side effect (no file or folder created,
-- no existing file touched).
local proc = require("spec.support.proc")

local ENGINE = os.getenv("ENGINE_BIN") or "build/engine"
if ENGINE:sub(1, 1) ~= "/" then ENGINE = os.getenv("PWD") .. "/" .. ENGINE end -- runs in a temp folder

local function tempdir()
  local ok, out = proc.sh("mktemp -d /tmp/check_spec.XXXXXX")
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Runs `engine check` on text (written to DIR/pipeline.lua) in DIR.
-- Returns the exit code, stderr lines (without "engine: "), stdout.
local function check(dir, text, env)
  write(dir .. "/pipeline.lua", text)
  env = env or {}
  if env.DOCKER_HOST == nil then env.DOCKER_HOST = false end
  local p = proc.spawn({ argv = { ENGINE, "check", "pipeline.lua" }, cwd = dir, env = env })
  local code = p:wait(60)
  local err, out = p:stderr_text(), p:stdout_text()
  p:cleanup()
  local lines = {}
  for l in err:gmatch("[^\n]+") do lines[#lines + 1] = (l:gsub("^engine: ", "")) end
  return code, lines, out, err
end

-- The names (and sizes and times) of every file under dir.
local function listing(dir)
  local ok, out = proc.sh("cd " .. proc.quote(dir) .. " && find . -printf '%p %s %T@\\n' | sort")
  assert(ok, out)
  return out
end

describe("engine check", function()
  local dir
  before_each(function() dir = tempdir() end)
  after_each(function() os.execute("rm -rf " .. proc.quote(dir)) end)

  it("lists every mistake in one run, each with the line of its setting", function()
    local code, lines = check(dir, [[
return {
  batch = { flush_intervall = 1, max_lines = 0 },
  filters = {
    function(b) return b end,
    { name = "x", on_error = "maybe", process = function(b) return b end },
  },
  outputs = {
    { type = "stdout", format = "xml" },
    { type = "null" },
  },
  engine = { cycle = -1,
             log_level = "loud" },
}
]])
    assert.equal(2, code)
    assert.same({
      'pipeline.lua:2: unknown key "flush_intervall" in batch (expected one of: flush_interval, max_bytes, max_lines)',
      "pipeline.lua:2: batch.max_lines must be an integer from 1 to 2147483647 (got 0)",
      'pipeline.lua:5: filters[2].on_error must be one of "pass", "drop", "dead_letter" (got "maybe")',
      'pipeline.lua:8: outputs[1].format must be "json" or "plain" (got "xml")',
      "pipeline.lua:11: engine.cycle must be a positive number (got -1)",
      'pipeline.lua:12: engine.log_level must be one of "error", "warn", "info", "debug" (got "loud")',
    }, lines)
  end)

  it("stops listing at a bound", function()
    local keys = {}
    for i = 1, 30 do keys[#keys + 1] = ("  k%02d = 1,"):format(i) end
    local code, lines = check(dir, "return {\n" .. table.concat(keys, "\n") .. "\n}\n")
    assert.equal(2, code)
    assert.equal(21, #lines)
    assert.equal('pipeline.lua:2: unknown key "k01" (expected one of: batch, dead_letter, docker, engine, '
                 .. 'filters, history, outputs, select)', lines[1])
    assert.equal("pipeline.lua: (stopped after 20 mistakes)", lines[21])
  end)

  it("creates no file and touches no existing one", function()
    os.execute("mkdir " .. proc.quote(dir .. "/out"))
    write(dir .. "/out/existing.jsonl", "kept\n")
    os.execute("touch -d 2020-01-01 " .. proc.quote(dir .. "/out/existing.jsonl"))
    local before = listing(dir .. "/out")
    local code, lines, out = check(dir, [[
return {
  dead_letter = { path = "out/dead.jsonl" },
  filters = { { on_error = "dead_letter", process = function(b) return b end } },
  outputs = {
    { type = "file", path = "out/errors.jsonl" },
    { type = "file", path = "out/existing.jsonl" },
    { type = "http", url = "http://127.0.0.1:9/", dead_letter = "out/http-dead.jsonl" },
  },
  engine = { state_dir = "out/state" },
}
]])
    assert.equal(0, code, table.concat(lines, "\n"))
    assert.equal("pipeline.lua: ok\n", out)
    assert.equal(before, listing(dir .. "/out"))
    assert.equal("kept\n", proc.read(dir .. "/out/existing.jsonl"))
  end)

  it("says which files and folders could not be written, without making them", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "file", path = "missing/errors.jsonl" },
  },
  engine = { state_dir = "no/such/state" },
}
]])
    assert.equal(2, code)
    assert.same({
      "pipeline.lua:3: outputs[1].path cannot be created: the folder missing does not exist",
      "pipeline.lua:5: engine.state_dir cannot be created: the folder no/such does not exist",
    }, lines)
    assert.is_nil(io.open(dir .. "/missing", "r"))
  end)

  it("refuses a Docker address the engine cannot use, in the pipeline or in $DOCKER_HOST", function()
    local code, lines = check(dir, 'return {\n  docker = { host = "ssh://me@box" },\n}\n')
    assert.equal(2, code)
    assert.equal(1, #lines)
    assert.truthy(lines[1]:find('pipeline.lua:2: docker.host must be unix:///path, tcp://host:port or '
                                .. 'http(s)://host:port (got "ssh://me@box"; ssh:// is not supported', 1, true),
                  lines[1])
    code, lines = check(dir, "return {}\n", { DOCKER_HOST = "ssh://me@box" })
    assert.equal(2, code)
    assert.truthy(lines[1]:find('pipeline.lua: $DOCKER_HOST must be unix:///path', 1, true), lines[1])
    code, lines = check(dir, 'return { docker = { host = "unix:///run/x.sock" } }\n', { DOCKER_HOST = "ssh://x" })
    assert.equal(0, code, table.concat(lines, "\n"))
  end)

  it("refuses two daemons of one name, naming the line, and takes a list of distinct ones", function()
    local code, lines = check(dir, table.concat({
      "return {",
      "  docker = {",
      '    { host = "unix:///x/docker.sock" },',
      '    { host = "unix:///y/docker.sock" },',
      "  },",
      "}",
    }, "\n") .. "\n")
    assert.equal(2, code)
    assert.same({ 'pipeline.lua:4: docker[2].host names the daemon "docker" (derived from its host), as '
                  .. 'docker[1] does: each daemon needs its own name (set name = "...")' }, lines)
    code, lines = check(dir, 'return { docker = { read_delay = 0.1, { name = "a", host = "unix:///x/docker.sock" },'
                        .. ' { name = "b", host = "unix:///y/docker.sock" } } }\n')
    assert.equal(0, code, table.concat(lines, "\n"))
    -- a daemon without a host takes $DOCKER_HOST, which is checked then
    code, lines = check(dir, 'return { docker = { { name = "a" }, { name = "b", host = "unix:///y.sock" } } }\n',
                        { DOCKER_HOST = "ssh://x" })
    assert.equal(2, code)
    assert.truthy(lines[1]:find("$DOCKER_HOST must be unix:///path", 1, true), lines[1])
  end)

  it("checks that the environment variables an output names are set", function()
    local text = [[
return {
  outputs = {
    { type = "loki", url = "http://127.0.0.1:3100",
      auth = { bearer_env = "CHECK_SPEC_TOKEN" } },
  },
}
]]
    local code, lines = check(dir, text, { CHECK_SPEC_TOKEN = false })
    assert.equal(2, code)
    assert.same({ "pipeline.lua:4: outputs[1].auth.bearer_env names the environment variable "
                  .. "CHECK_SPEC_TOKEN, which is not set" }, lines)
    code, lines = check(dir, text, { CHECK_SPEC_TOKEN = "t0ken" })
    assert.equal(0, code, table.concat(lines, "\n"))
  end)

  it("offers each type of output its own options", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "clickhouse", url = "http://127.0.0.1:8123", tabel = "logs" },
    { type = "clickhouse", url = "http://127.0.0.1:8123", facility = 3, keep = 2 },
  },
}
]])
    assert.equal(2, code)
    assert.same({
      'pipeline.lua:3: unknown key "tabel" in outputs[1] (expected one of: auth, backoff_initial, '
        .. "backoff_max, batch_max_bytes, batch_max_records, batch_timeout, ca_file, compression, concurrency, dead_letter, "
        .. "gzip, headers, mode, name, retry_max, "
        .. "routed_only, table, "
        .. "timeout, tls_verify, type, url)",
      'pipeline.lua:4: outputs[2].facility is only for outputs of type "syslog"',
      'pipeline.lua:4: outputs[2].keep is only for outputs of type "file"',
    }, lines)
  end)

  it("lists a Loki output's own keys: labels, tenant, line_format", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "loki", url = "http://127.0.0.1:3100", tenent = "a" },
    { type = "loki", url = "http://127.0.0.1:3100", labels = { job = "edge", "name" },
      tenant = "team-a", line_format = "json" },
    { type = "clickhouse", url = "http://127.0.0.1:8123", line_format = "json" },
  },
}
]])
    assert.equal(2, code)
    assert.same({
      'pipeline.lua:3: unknown key "tenent" in outputs[1] (expected one of: auth, backoff_initial, '
        .. "backoff_max, ca_file, compression, concurrency, dead_letter, gzip, headers, labels, line_format, mode, name, "
        .. "retry_max, routed_only, tenant, timeout, tls_verify, type, url)",
      'pipeline.lua:6: outputs[3].line_format is only for outputs of type "loki"',
    }, lines)
  end)

  it("takes record_id, true or false, on http and mqtt outputs only", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "http", url = "http://127.0.0.1:9", record_id = "yes" },
    { type = "elasticsearch", url = "http://127.0.0.1:9", record_id = true },
    { type = "http", url = "http://127.0.0.1:9", record_id = true },
  },
}
]])
    assert.equal(2, code)
    assert.same({
      "pipeline.lua:3: outputs[1].record_id must be true or false",
      'pipeline.lua:4: outputs[2].record_id is not for outputs of type "elasticsearch" (only for "http", "mqtt")',
    }, lines)
  end)
  it("takes encoding, protobuf or json, on otlp outputs only", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "otlp", url = "http://127.0.0.1:9", encoding = "xml" },
    { type = "http", url = "http://127.0.0.1:9", encoding = "json" },
    { type = "otlp", name = "a", url = "http://127.0.0.1:9", encoding = "json" },
    { type = "otlp", name = "b", url = "http://127.0.0.1:9", encoding = "protobuf" },
  },
}
]])
    assert.equal(2, code)
    assert.same({
      'pipeline.lua:3: outputs[1].encoding must be "protobuf" or "json" (got "xml")',
      'pipeline.lua:4: outputs[2].encoding is only for outputs of type "otlp"',
    }, lines)
  end)

  it("takes compression none, gzip or zstd (gzip = true its alias), zstd only where it is decoded", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "http", url = "http://127.0.0.1:9", compression = "br" },
    { type = "http", name = "a", url = "http://127.0.0.1:9", gzip = true, compression = "zstd" },
    { type = "loki", url = "http://127.0.0.1:9", compression = "zstd" },
    { type = "elasticsearch", url = "http://127.0.0.1:9", compression = "zstd" },
    { type = "otlp", url = "http://127.0.0.1:9", compression = "zstd" },
    { type = "syslog", url = "tcp://127.0.0.1:9", compression = "gzip" },
    { type = "clickhouse", url = "http://127.0.0.1:9", compression = "gzip", batch_max_bytes = 65536 },
  },
}
]])
    assert.equal(2, code)
    assert.same({
      'pipeline.lua:3: outputs[1].compression must be one of "none", "gzip", "zstd" (got "br")',
      'pipeline.lua:4: outputs[2].gzip says true but compression = "zstd": set only compression',
      'pipeline.lua:5: outputs[3].compression cannot be "zstd" for outputs of type "loki": Loki\'s push API '
        .. 'decodes gzip request bodies, not zstd (use "gzip")',
      'pipeline.lua:6: outputs[4].compression cannot be "zstd" for outputs of type "elasticsearch": '
        .. 'Elasticsearch decodes gzip request bodies, not zstd (use "gzip")',
      'pipeline.lua:7: outputs[5].compression cannot be "zstd" for outputs of type "otlp": OTLP/HTTP defines '
        .. 'gzip as its only request compression (use "gzip")',
      "pipeline.lua:8: outputs[6].compression is not for syslog outputs",
      'pipeline.lua:9: outputs[7].batch_max_bytes merges bodies, which compression = "gzip" rules out (a '
        .. "compressed body is one stream, sent alone): leave out one of them",
    }, lines)
    code, lines = check(dir, [[
return { outputs = { { type = "clickhouse", url = "http://127.0.0.1:9", compression = "zstd" },
                     { type = "http", url = "http://127.0.0.1:9", compression = "zstd" },
                     { type = "loki", url = "http://127.0.0.1:9", gzip = true, compression = "gzip" },
                     { type = "otlp", url = "http://127.0.0.1:9", gzip = false, compression = "none" },
                     { type = "elasticsearch", url = "http://127.0.0.1:9", gzip = true, batch_max_bytes = 0 } } }
]])
    assert.equal(0, code, table.concat(lines, "\n"))
  end)

  it("takes a network output's concurrency as a whole number of requests from 1 to 64", function()
    local code, lines = check(dir, [[
return {
  outputs = {
    { type = "http", url = "http://127.0.0.1:9", concurrency = 0 },
    { type = "loki", url = "http://127.0.0.1:9", concurrency = 2.5 },
    { type = "syslog", url = "tcp://127.0.0.1:9", concurrency = 2 },
  },
}
]])
    assert.equal(2, code)
    assert.same({
      "pipeline.lua:3: outputs[1].concurrency must be a whole number of requests from 1 to 64 (got 0)",
      "pipeline.lua:4: outputs[2].concurrency must be a whole number of requests from 1 to 64 (got 2.5)",
      "pipeline.lua:5: outputs[3].concurrency is not for syslog outputs",
    }, lines)
    code, lines = check(dir, [[
return { outputs = { { type = "clickhouse", url = "http://127.0.0.1:9", concurrency = 64,
                       batch_max_bytes = 1048576, batch_max_records = 5000 } } }
]])
    assert.equal(0, code, table.concat(lines, "\n"))
    code, lines = check(dir, [[
return { outputs = { { type = "loki", url = "http://127.0.0.1:9", batch_max_records = 10 },
                     { type = "http", url = "http://127.0.0.1:9", batch_max_bytes = -1 },
                     { type = "http", name = "b", url = "http://127.0.0.1:9", batch_max_records = 2.5 },
                     { type = "http", name = "off", url = "http://127.0.0.1:9", batch_max_bytes = 0 },
                     { type = "http", name = "t", url = "http://127.0.0.1:9", batch_timeout = 61 },
                     { type = "loki", name = "l", url = "http://127.0.0.1:9", batch_timeout = 1 },
                     { type = "clickhouse", url = "http://127.0.0.1:9", batch_timeout = 0.5 } } }
]])
    assert.equal(2, code)
    assert.same({
      "pipeline.lua:1: outputs[1].batch_max_records is not for outputs of type \"loki\" (only for "
        .. "\"http\", \"clickhouse\", \"elasticsearch\", \"mqtt\")",
      "pipeline.lua:2: outputs[2].batch_max_bytes must be a whole number, 0 (no limit) or more (got -1)",
      "pipeline.lua:3: outputs[3].batch_max_records must be a whole number, 0 (no limit) or more (got 2.5)",
      "pipeline.lua:5: outputs[5].batch_timeout must be seconds from 0 to 60 (got 61)",
      "pipeline.lua:6: outputs[6].batch_timeout is not for outputs of type \"loki\" (only for "
        .. "\"http\", \"clickhouse\", \"elasticsearch\", \"mqtt\")",
    }, lines)
    code, lines = check(dir, [[
return { outputs = { { type = "clickhouse", url = "http://127.0.0.1:9", concurrency = 64 } } }
]])
    assert.equal(0, code, table.concat(lines, "\n"))
  end)

  it("reports an option typo in a helper at the user's line", function()
    local code, lines = check(dir, [[
local multiline = require("engine.multiline")

return {
  filters = {
    multiline.new({ start = "^%S", flush_afer = 2 }),
  },
}
]])
    assert.equal(2, code)
    assert.equal(1, #lines)
    assert.truthy(lines[1]:find('^pipeline%.lua:5: multiline%.new: unknown option "flush_afer"'), lines[1])
    code, lines = check(dir, [[
local sample = require("engine.sample")
return { filters = { sample.rate_limit({ lines = 5, evry = 1 }) } }
]])
    assert.equal(2, code)
    assert.truthy(lines[1]:find('^pipeline%.lua:2: sample%.rate_limit: unknown option "evry"'), lines[1])
    code, lines = check(dir, [[
local redact = require("engine.redact")
return { filters = { redact.filter({ rules = { "emails" } }) } }
]])
    assert.equal(2, code)
    assert.truthy(lines[1]:find('^pipeline%.lua:2: redact: unknown rule emails'), lines[1])
  end)
end)

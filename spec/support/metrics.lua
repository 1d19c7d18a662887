--- metrics.lua - helpers for the metrics endpoint's specs: an engine with
-- the endpoint on a free loopback port, HTTP requests through curl, raw
-- requests over a socket, and a strict reader of the Prometheus text format.
--
--   local metrics = require "spec.support.metrics"
--   local e, url = metrics.start_engine { docker_host = srv.host }
--   local status, body, headers = metrics.get(url .. "/metrics")
--   local m = metrics.parse(body)      -- raises on any format error
--   m:value("engine_lines_read_total", { container = "c0" })
local engine = require "spec.support.engine"
local proc = require "spec.support.proc"
local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"

local M = {}

--- A port from 20000..59999, from /dev/urandom.
function M.random_port()
  local f = assert(io.open("/dev/urandom", "rb"))
  local b1, b2 = f:read(2):byte(1, 2)
  f:close()
  return 20000 + (b1 * 256 + b2) % 40000
end

--- The pipeline source for an engine with the endpoint on listen.
-- o.docker_host, o.listen ("host:port"), o.metrics (extra Lua text inside
-- engine.metrics), o.engine (extra text inside engine), o.filters (Lua text
-- of the filters list), o.outputs (Lua text of the outputs list), o.docker
-- (extra Lua text inside docker), o.top (extra top-level fields, such as a
-- select table, each followed by a comma), o.batch (extra fields of batch).
function M.pipeline(o)
  local metrics = o.listen and string.format("metrics = { listen = %q, %s },", o.listen, o.metrics or "") or ""
  return string.format([[
return {
  docker = { host = %q, %s },
  batch = { flush_interval = 0.05, %s },
  filters = { %s },
  outputs = { %s },
  engine = { backoff_initial = 0.05, backoff_max = 0.5, reconcile_interval = 1, stop_timeout = 5,
             %s %s },
  %s
}]], o.docker_host, o.docker or "", o.batch or "", o.filters or "", o.outputs or '{ type = "stdout", format = "json" }',
    metrics, o.engine or "", o.top or "")
end

--- Starts an engine with the metrics endpoint on a free loopback port
-- (another port is tried when the one picked is taken). Takes the options
-- of M.pipeline (listen is chosen here) and o.args. Waits (bounded) until
-- the endpoint listens. Returns the engine and its base URL.
function M.start_engine(o)
  for _ = 1, 8 do
    local port = M.random_port()
    local opts = {}
    for k, v in pairs(o) do opts[k] = v end
    opts.listen = "127.0.0.1:" .. port
    local e = engine.start { pipeline = M.pipeline(opts), docker_host = o.docker_host, args = o.args }
    local ok, state = pcall(proc.wait_for, function()
      local err = e:stderr_text()
      if err:find("metrics: listening on", 1, true) then return "up" end
      if err:find("address already in use", 1, true) then return "taken" end
      if not e:running() then error("engine exited: " .. err, 0) end
    end, 20, "the metrics endpoint to listen")
    if not ok then
      local err = e:stderr_text()
      e:cleanup()
      error(tostring(state) .. "\n" .. err, 2)
    end
    if state == "up" then return e, "http://127.0.0.1:" .. port end
    e:wait(10)
    e:cleanup()
  end
  error("no free port found for the metrics endpoint", 2)
end

--- GETs url with curl (or another method: o.method; o.headers: list of
-- "Name: value"). Returns the status code, the body and a table of the
-- answer's headers (lower-case names). Raises when no answer came.
function M.get(url, o)
  o = o or {}
  local argv = { "curl", "-s", "-S", "-i", "--max-time", "10" }
  if o.method == "HEAD" then argv[#argv + 1] = "-I"
  elseif o.method then argv[#argv + 1] = "-X"; argv[#argv + 1] = o.method end
  for _, h in ipairs(o.headers or {}) do argv[#argv + 1] = "-H"; argv[#argv + 1] = h end
  argv[#argv + 1] = url
  local ok, out = proc.sh(proc.join(argv), 20)
  assert(ok, "curl " .. url .. " failed: " .. out)
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "no HTTP answer from " .. url .. ": " .. out)
  local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
  local headers = {}
  for k, v in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[k:lower()] = v end
  return status, body, headers
end

--- Sends raw bytes to 127.0.0.1:port and reads until the server closes
-- (bounded by timeout_s, default 10). Returns what came back ("" when the
-- server closed without answering).
function M.raw(port, bytes, timeout_s)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }))
  socket.setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout_s or 10, 0)
  if bytes and #bytes > 0 then assert(socket.send(fd, bytes)) end
  local parts = {}
  while true do
    local chunk = socket.recv(fd, 65536)
    if not chunk or chunk == "" then break end
    parts[#parts + 1] = chunk
  end
  unistd.close(fd)
  return table.concat(parts)
end

--- A connection left open without a complete request; close it with
-- unistd.close(fd).
function M.open_idle(port)
  local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
  assert(socket.connect(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }))
  assert(socket.send(fd, "GET /metrics HTTP/1.1\r\n"))
  return fd
end

-- --------------------------------------------------- the text format, strictly

local Parsed = {}
Parsed.__index = Parsed

local function unescape_label(v)
  return (v:gsub("\\(.)", function(c)
    if c == "n" then return "\n" end
    assert(c == "\\" or c == '"', "bad escape \\" .. c .. " in a label value")
    return c
  end))
end

-- Parses `name{a="x",b="y"} value` (labels optional). Raises on bad syntax.
local function parse_sample(line)
  local name, rest = line:match("^([%a_:][%w_:]*)(.*)$")
  assert(name, "bad metric name in: " .. line)
  local labels = {}
  if rest:sub(1, 1) == "{" then
    local i = 2
    while rest:sub(i, i) ~= "}" do
      local key, after = rest:match("^([%a_][%w_]*)=\"()", i)
      assert(key, "bad label in: " .. line)
      local j = after
      local buf = {}
      while true do
        local c = rest:sub(j, j)
        assert(c ~= "", "unterminated label value in: " .. line)
        assert(c ~= "\n", "raw newline in a label value: " .. line)
        if c == "\\" then buf[#buf + 1] = rest:sub(j, j + 1); j = j + 2
        elseif c == '"' then break
        else buf[#buf + 1] = c; j = j + 1 end
      end
      assert(labels[key] == nil, "label " .. key .. " twice in: " .. line)
      labels[key] = unescape_label(table.concat(buf))
      i = j + 1
      if rest:sub(i, i) == "," then i = i + 1 end
    end
    rest = rest:sub(i + 1)
  end
  local value = rest:match("^ (%S+)$")
  assert(value, "bad value in: " .. line)
  local v = tonumber(value)
  if not v then
    assert(value == "NaN" or value == "+Inf" or value == "-Inf", "bad number in: " .. line)
  end
  return name, labels, v
end

local function series_key(name, labels)
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { name }
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. labels[k] end
  return table.concat(parts, "\0")
end

--- Parses a /metrics body, checking the format: every sample's family has
-- HELP and TYPE lines before it, families are not split, no series repeats,
-- counters end in _total. Raises with the offending line.
function M.parse(text)
  assert(text:sub(-1) == "\n", "the body must end with a newline")
  local self = setmetatable({ families = {}, samples = {}, by_key = {} }, Parsed)
  local current, closed = nil, {}
  for line in text:gmatch("([^\n]*)\n") do
    local kind, fam, rest = line:match("^# (%u+) ([%a_:][%w_:]*) ?(.*)$")
    if kind == "HELP" or kind == "TYPE" then
      assert(not closed[fam], "family " .. fam .. " appears twice")
      if current and current ~= fam then closed[current] = true end
      current = fam
      local f = self.families[fam] or {}
      self.families[fam] = f
      if kind == "HELP" then f.help = rest else
        assert(({ counter = 1, gauge = 1, histogram = 1, summary = 1, untyped = 1 })[rest],
               "bad TYPE " .. rest)
        f.type = rest
      end
    else
      assert(line ~= "" and line:sub(1, 1) ~= "#", "unexpected line: " .. line)
      local name, labels, v = parse_sample(line)
      local f, fam = self.families[name], name
      -- a histogram's series are <family>_bucket (with le), _sum and _count
      local base = name:match("^(.*)_bucket$") or name:match("^(.*)_sum$") or name:match("^(.*)_count$")
      if not f and base and self.families[base] and self.families[base].type == "histogram" then
        f, fam = self.families[base], base
        if name:match("_bucket$") then assert(labels.le, "bucket without le: " .. line) end
      end
      assert(f and f.help and f.type, "sample without HELP and TYPE: " .. line)
      assert(fam == current, "sample outside its family's block: " .. line)
      if f.type == "counter" then assert(name:match("_total$"), "counter without _total: " .. name) end
      local key = series_key(name, labels)
      assert(not self.by_key[key], "series repeated: " .. line)
      self.by_key[key] = v
      self.samples[#self.samples + 1] = { name = name, labels = labels, value = v }
    end
  end
  return self
end

--- The value of the series name{labels} (labels: a table, may be empty), or nil.
function Parsed:value(name, labels)
  return self.by_key[series_key(name, labels or {})]
end

--- Every sample of family name, as a table label value -> value for the
-- label called label.
function Parsed:by_label(name, label)
  local out = {}
  for _, s in ipairs(self.samples) do
    if s.name == name then out[s.labels[label]] = s.value end
  end
  return out
end

return M

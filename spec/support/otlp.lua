--- otlp.lua - reads the otlp output's protobuf bodies back for the specs:
-- protoc decodes them with the message definitions of spec/fixtures/otlp
-- (written from the OTLP protocol's field numbers), and the text it prints
-- is turned into the table the body's JSON form decodes to (lowerCamelCase
-- names, 64-bit integers as decimal strings), so that both forms compare
-- with assert.same.
--
--   local otlp = require "spec.support.otlp"
--   local req = otlp.decode(body)   -- { resourceLogs = { ... } }
local proc = require((...):gsub("otlp$", "proc")) -- support.proc or spec.support.proc

local M = {}

M.MESSAGE = "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest"

-- The repeated fields of each message, by the name of the field holding it
-- ("" for the request itself): always lists, empty when none came.
local REPEATED = {
  [""] = { "resource_logs" },
  resource_logs = { "scope_logs" },
  resource = { "attributes" },
  scope_logs = { "log_records" },
  log_records = { "attributes" },
  array_value = { "values" },
  kvlist_value = { "values" },
}
local LISTS = { resource_logs = true, scope_logs = true, log_records = true, attributes = true,
                values = true }
-- Scalars the JSON form writes as strings (64-bit integers) or numbers.
local STRINGS = { time_unix_nano = true, observed_time_unix_nano = true, int_value = true }
local NUMBERS = { severity_number = true, double_value = true }

local function camel(name)
  return (name:gsub("_(%l)", string.upper))
end

-- The bytes of a protoc text-format string literal (without its quotes).
local function unescape(s)
  if not s:find("\\", 1, true) then return s end
  local out, i, n = {}, 1, #s
  local simple = { n = "\n", r = "\r", t = "\t", ['"'] = '"', ["'"] = "'", ["\\"] = "\\",
                   a = "\a", b = "\b", f = "\f", v = "\v" }
  while i <= n do
    local c = s:sub(i, i)
    if c ~= "\\" then
      local j = s:find("\\", i, true) or n + 1
      out[#out + 1] = s:sub(i, j - 1)
      i = j
    else
      local d = s:match("^[0-7][0-7]?[0-7]?", i + 1)
      if d then
        out[#out + 1] = string.char(tonumber(d, 8))
        i = i + 1 + #d
      else
        local e = s:sub(i + 1, i + 1)
        out[#out + 1] = assert(simple[e], "unknown escape \\" .. e)
        i = i + 2
      end
    end
  end
  return table.concat(out)
end

-- Fills in the empty lists of message msg held by field `name`, and the
-- time a LogRecord always has in the JSON form (protoc prints no field
-- that holds its default, here a time of 0).
local function lists(msg, name)
  for _, f in ipairs(REPEATED[name] or {}) do
    local k = camel(f)
    if msg[k] == nil then msg[k] = {} end
  end
  if name == "log_records" and msg.timeUnixNano == nil then msg.timeUnixNano = "0" end
end

--- The table of protoc's text form of a request.
function M.parse_text(text)
  local root = {}
  lists(root, "")
  local stack, names = { root }, { "" }
  for line in text:gmatch("[^\n]+") do
    local top = stack[#stack]
    local open = line:match("^%s*([%w_]+) {$")
    if open then
      local msg = {}
      local k = camel(open)
      if LISTS[open] then
        top[k] = top[k] or {}
        table.insert(top[k], msg)
      else
        assert(top[k] == nil, "field repeated: " .. open)
        top[k] = msg
      end
      stack[#stack + 1], names[#names + 1] = msg, open
    elseif line:match("^%s*}$") then
      lists(top, names[#names])
      stack[#stack], names[#names] = nil, nil
    else
      local key, value = line:match("^%s*([%w_]+): (.*)$")
      assert(key, "unexpected protoc output: " .. line:sub(1, 200))
      if value:sub(1, 1) == '"' then
        value = unescape(value:sub(2, -2))
      elseif value == "true" or value == "false" then
        value = value == "true"
      elseif NUMBERS[key] then
        value = assert(tonumber(value), value)
      else
        assert(STRINGS[key], "unexpected field " .. key)
      end
      top[camel(key)] = value
    end
  end
  assert(#stack == 1, "unbalanced protoc output")
  return root
end

--- Decodes body (a protobuf ExportLogsServiceRequest) with protoc; fails
-- the spec when protoc cannot.
function M.decode(body)
  local input, output = os.tmpname(), os.tmpname()
  local f = assert(io.open(input, "wb"))
  f:write(body)
  f:close()
  local cmd = proc.join({ "protoc", "--decode=" .. M.MESSAGE, "-I", "spec/fixtures/otlp",
                          "logs_service.proto" }) ..
    " < " .. proc.quote(input) .. " > " .. proc.quote(output) .. " 2>&1"
  local ok, msg = proc.sh(cmd, 60)
  local text = proc.read(output) or ""
  os.remove(input)
  os.remove(output)
  assert(ok, "protoc --decode failed: " .. tostring(msg) .. " " .. text:sub(1, 500))
  return M.parse_text(text)
end

return M

--- engine.kv: extracts key=value pairs from free text.
--
--   local kv = require("engine.kv")
--   kv.extract("GET /x status=200 took=12ms user='ann lee'")
--   --> { status = "200", took = "12ms", user = "ann lee" }
--   kv.extract("a:1;b:2", { pair_sep = ";", kv_sep = ":" })  --> { a = "1", b = "2" }
--
-- Options (all optional):
--   pair_sep  string   separator between pairs (plain text; default: any whitespace)
--   kv_sep    string   between key and value (plain text; default "=")
--   include   list     keep only these keys
--   exclude   list     drop these keys
--   prefix    string   prepended to every key in the result
--   numbers   boolean  turn values that are numbers into numbers (default false)
--   unquote   boolean  strip one pair of matching ' or " quotes (default true);
--                      with pair_sep unset, a quoted value may contain spaces
-- Keys are the text right before kv_sep back to the previous separator;
-- pieces without kv_sep are skipped. A key given twice keeps the last value.
local options = require("engine.options")

local M = {}

local OPTIONS = { pair_sep = true, kv_sep = true, include = true, exclude = true, prefix = true,
                  numbers = true, unquote = true }

local function set_of(list)
  if not list then return nil end
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

-- Splits text into pieces: by pair_sep, or by whitespace outside quotes.
local function pieces(text, pair_sep, unquote)
  local out = {}
  if pair_sep then
    local i = 1
    while true do
      local s, e = text:find(pair_sep, i, true)
      out[#out + 1] = text:sub(i, (s or #text + 1) - 1)
      if not s then break end
      i = e + 1
    end
    return out
  end
  local i, n = 1, #text
  while i <= n do
    local s = text:find("%S", i)
    if not s then break end
    local j, quote = s, nil
    while j <= n do
      local c = text:sub(j, j)
      if quote then
        if c == quote then quote = nil end
      elseif unquote and (c == '"' or c == "'") then
        quote = c
      elseif c:match("%s") then
        break
      end
      j = j + 1
    end
    out[#out + 1] = text:sub(s, j - 1)
    i = j
  end
  return out
end

--- Returns a table of the pairs found in text (see the options above).
function M.extract(text, opts)
  if opts == nil then opts = {} else options.check(opts, OPTIONS, "kv.extract", 2) end
  local kv_sep = opts.kv_sep or "="
  local unquote = opts.unquote ~= false
  local include, exclude = set_of(opts.include), set_of(opts.exclude)
  local prefix = opts.prefix or ""
  local out = {}
  for _, piece in ipairs(pieces(text, opts.pair_sep, unquote)) do
    local s, e = piece:find(kv_sep, 1, true)
    if s and s > 1 then
      local key = piece:sub(1, s - 1):match("^%s*(.-)%s*$")
      local value = piece:sub(e + 1)
      if opts.pair_sep then value = value:match("^%s*(.-)%s*$") end
      if unquote then
        local q = value:sub(1, 1)
        if (q == '"' or q == "'") and #value >= 2 and value:sub(-1) == q then value = value:sub(2, -2) end
      end
      if key ~= "" and (not include or include[key]) and not (exclude and exclude[key]) then
        if opts.numbers and tonumber(value) then value = tonumber(value) end
        out[prefix .. key] = value
      end
    end
  end
  return out
end

return M

--- engine.logfmt: parses logfmt lines (`key=value key2="quoted value" flag`).
--
--   local logfmt = require("engine.logfmt")
--   logfmt.parse('level=info msg="user logged in" id=42 dry')
--   --> { level = "info", msg = "user logged in", id = "42", dry = true }
--
-- Values stay strings (no number conversion); a bare key is `true`; a key
-- with an empty value (`key=`) is "". Inside double quotes, \" \\ \n \t
-- are unescaped. Text that is not a pair (a stray `=`, an unterminated quote)
-- is skipped, never an error. A key given twice keeps the last value.
local M = {}

local ESCAPES = { n = "\n", t = "\t", r = "\r", ['"'] = '"', ["\\"] = "\\" }

--- Parses line; returns a table (empty for no pairs).
function M.parse(line)
  local out, i, n = {}, 1, #line
  while i <= n do
    local s = line:find("[^%s]", i)
    if not s then break end
    local e = line:find("[%s=]", s) or n + 1
    local key = line:sub(s, e - 1)
    if line:sub(e, e) ~= "=" then
      if key ~= "" and not key:find('"', 1, true) then out[key] = true end
      i = e
    elseif key == "" then
      i = (line:find("%s", e) or n) + 1 -- a stray "=value": skip it
    elseif line:sub(e + 1, e + 1) == '"' then
      local buf, j = {}, e + 2
      local closed = false
      while j <= n do
        local c = line:sub(j, j)
        if c == "\\" and j < n then
          local nx = line:sub(j + 1, j + 1)
          buf[#buf + 1] = ESCAPES[nx] or ("\\" .. nx)
          j = j + 2
        elseif c == '"' then
          closed = true
          j = j + 1
          break
        else
          local k = line:find('[\\"]', j) or n + 1
          buf[#buf + 1] = line:sub(j, k - 1)
          j = k
        end
      end
      if closed then out[key] = table.concat(buf) end
      i = j
    else
      local ve = line:find("%s", e + 1) or n + 1
      out[key] = line:sub(e + 1, ve - 1)
      i = ve
    end
  end
  return out
end

return M

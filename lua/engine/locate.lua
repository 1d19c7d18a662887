-- engine.locate: finds the line of a setting in a pipeline's source text,
-- for messages that say "file:line: ...".
--
-- locate.line(source, where) takes the text of a pipeline.lua and a setting
-- as messages name it ("outputs[2].format", "filters[1]", "engine"), finds
-- the table the file returns (`return { ... }`, or `return name` with a
-- `name = { ... }` before it) and walks its table constructors: "key"
-- matches a field `key = ...` (or `["key"] = ...`), [n] the n-th positional
-- field. Returns the line of the deepest part found, or nil when not even
-- the first part is written out in the file (a table built by code).
local M = {}

local sub, find, byte = string.sub, string.find, string.byte

-- Tokens: { kind = "name"|"string"|"number"|"op", text, line }.
local function tokens(src)
  local out, i, n, line = {}, 1, #src, 1
  local function long_bracket(at)
    local eq = src:match("^%[(=*)%[", at)
    if not eq then return nil end
    local close = "]" .. eq .. "]"
    local s, e = find(src, close, at + #eq + 2, true)
    e = e or n
    local body = sub(src, at, e)
    return e + 1, select(2, body:gsub("\n", ""))
  end
  while i <= n do
    local c = sub(src, i, i)
    if c == "\n" then
      line, i = line + 1, i + 1
    elseif find(c, "^%s") then
      i = i + 1
    elseif sub(src, i, i + 1) == "--" then
      local nxt, lines = long_bracket(i + 2)
      if nxt then
        i, line = nxt, line + lines
      else
        local e = find(src, "\n", i, true)
        i = e or n + 1
      end
    elseif c == "[" and find(src, "^%[=*%[", i) then
      local nxt, lines = long_bracket(i)
      out[#out + 1] = { kind = "string", line = line }
      i, line = nxt, line + lines
    elseif c == '"' or c == "'" then
      local j, start = i + 1, line
      while j <= n do
        local d = sub(src, j, j)
        if d == "\\" then
          if sub(src, j + 1, j + 1) == "\n" then line = line + 1 end
          j = j + 2
        elseif d == c or d == "\n" then
          break
        else
          j = j + 1
        end
      end
      out[#out + 1] = { kind = "string", text = sub(src, i + 1, j - 1), line = start }
      i = j + 1
    elseif find(c, "^[%a_]") then
      local s, e = find(src, "^[%w_]+", i)
      out[#out + 1] = { kind = "name", text = sub(src, s, e), line = line }
      i = e + 1
    elseif find(c, "^%d") then
      local s, e = find(src, "^[%w%.]+", i)
      out[#out + 1] = { kind = "number", line = line }
      i = e + 1
    else
      local two = sub(src, i, i + 1)
      if two == "==" or two == "~=" or two == "<=" or two == ">=" or two == ".." then
        out[#out + 1] = { kind = "op", text = two, line = line }
        i = i + 2
      else
        out[#out + 1] = { kind = "op", text = c, line = line }
        i = i + 1
      end
    end
  end
  return out
end

local OPEN = { ["{"] = "}", ["("] = ")", ["["] = "]" }
local BLOCK_OPEN = { ["function"] = true, ["do"] = true, ["repeat"] = true, ["if"] = true }

-- The index after the expression that starts at i inside a constructor:
-- up to the next "," or ";" or the closing "}" at the same depth.
local function skip_value(t, i)
  local depth, blocks = 0, 0
  while t[i] do
    local k = t[i]
    if k.kind == "op" then
      if OPEN[k.text] then
        depth = depth + 1
      elseif k.text == "}" or k.text == ")" or k.text == "]" then
        if depth == 0 then return i end
        depth = depth - 1
      elseif (k.text == "," or k.text == ";") and depth == 0 and blocks == 0 then
        return i
      end
    elseif k.kind == "name" then
      if k.text == "function" or k.text == "if" or k.text == "repeat" then
        blocks = blocks + 1
      elseif k.text == "while" or k.text == "for" then
        -- one block, ended by the "end" after their own "do"
        blocks = blocks + 1
        while t[i + 1] and not (t[i + 1].kind == "name" and t[i + 1].text == "do") do i = i + 1 end
        i = i + 1
      elseif k.text == "do" then
        blocks = blocks + 1
      elseif k.text == "end" or k.text == "until" then
        blocks = blocks - 1
      end
    end
    i = i + 1
  end
  return i
end

-- The fields of the constructor whose "{" is at i: a list of
-- { key = string|nil, pos = n|nil, line, value = index of the value }.
local function fields(t, i)
  local out, pos = {}, 0
  i = i + 1
  while t[i] and not (t[i].kind == "op" and t[i].text == "}") do
    local f = { line = t[i].line }
    if t[i].kind == "name" and t[i + 1] and t[i + 1].kind == "op" and t[i + 1].text == "=" then
      f.key, f.value = t[i].text, i + 2
    elseif t[i].kind == "op" and t[i].text == "[" and t[i + 1] and t[i + 1].kind == "string"
      and t[i + 2] and t[i + 2].text == "]" and t[i + 3] and t[i + 3].text == "=" then
      f.key, f.value = t[i + 1].text, i + 4
    else
      pos = pos + 1
      f.pos, f.value = pos, i
    end
    out[#out + 1] = f
    i = skip_value(t, f.value)
    if t[i] and t[i].kind == "op" and (t[i].text == "," or t[i].text == ";") then i = i + 1 end
  end
  return out
end

-- "outputs[2].format" -> { "outputs", 2, "format" }
local function parts(where)
  local out = {}
  for name, rest in where:gmatch("([^%.%[]*)([^%.]*)") do
    if name ~= "" then out[#out + 1] = name end
    for n in rest:gmatch("%[(%d+)%]") do out[#out + 1] = tonumber(n) end
  end
  return out
end

-- The index of the "{" of the table the chunk returns, or nil.
local function returned_table(t)
  local depth, ret = 0, nil
  for i, k in ipairs(t) do
    if k.kind == "name" then
      if BLOCK_OPEN[k.text] then depth = depth + 1
      elseif k.text == "end" or k.text == "until" then depth = depth - 1
      elseif k.text == "return" and depth == 0 then ret = i end
    end
  end
  if not ret or not t[ret + 1] then return nil end
  local v = t[ret + 1]
  if v.kind == "op" and v.text == "{" then return ret + 1 end
  if v.kind == "name" and t[ret + 2] == nil then
    -- return name: its last `name = {` before the return
    for i = ret - 1, 1, -1 do
      if t[i].kind == "name" and t[i].text == v.text and t[i + 1] and t[i + 1].text == "="
        and t[i + 2] and t[i + 2].text == "{" then
        return i + 2
      end
    end
  end
  return nil
end

--- The line of setting `where` in source (see the top of this file), or nil.
function M.line(source, where)
  if type(source) ~= "string" or type(where) ~= "string" then return nil end
  local ok, line = pcall(function()
    local t = tokens(source)
    local at = returned_table(t)
    if not at then return nil end
    local found
    for _, p in ipairs(parts(where)) do
      if not at then break end
      local hit
      for _, f in ipairs(fields(t, at)) do
        if (type(p) == "string" and f.key == p) or (type(p) == "number" and f.pos == p) then
          hit = f
          break
        end
      end
      if not hit then break end
      found = hit.line
      local v = t[hit.value]
      at = v and v.kind == "op" and v.text == "{" and hit.value or nil
    end
    return found
  end)
  return ok and line or nil
end

return M

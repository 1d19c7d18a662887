-- lint-includes.lua - the include structure of engine/ (part of `make lint`).
--
--   luajit scripts/dev/lint-includes.lua [DIR]     (DIR: engine)
--
-- Two rules, each finding printed as "file:line: message"; exits 1 when
-- there is any:
--  1. No cycle between modules. A module is a .c file and its .h (x.c,
--     x.h); a family behind one private header X_internal.h (X.c, X_*.c,
--     X.h, X_internal.h) counts as one module. A file including y.h makes
--     its module depend on y's; a cycle of such dependencies is reported
--     with its members.
--  2. Every header included is used: a file that includes y.h (other than
--     its own module's) names at least one thing y.h declares (a function,
--     a typedef, a struct or enum tag, an enum constant, a macro, or a
--     member of one of its structs reached with -> or .).
local dir = arg[1] or "engine"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The text with comments and string and character literals blanked (line
-- breaks kept, so line numbers stay right).
local function code_of(s)
  s = s:gsub("/%*.-%*/", function(c) return (c:gsub("[^\n]", " ")) end)
  s = s:gsub("//[^\n]*", "")
  s = s:gsub('"[^"\n]*"', '""'):gsub("'[^'\n]*'", "''")
  return s
end

local files = {}
local p = io.popen("ls " .. dir .. "/*.c " .. dir .. "/*.h 2>/dev/null")
for f in p:lines() do files[#files + 1] = f end
p:close()

local base = {}
for _, f in ipairs(files) do base[f] = f:match("([^/]+)%.[ch]$") end
local families = {}
for _, f in ipairs(files) do
  local x = f:match("([^/]+)_internal%.h$")
  if x then families[#families + 1] = x end
end
local function module_of(name)
  for _, x in ipairs(families) do
    if name == x or name:sub(1, #x + 1) == x .. "_" then return x end
  end
  return name
end

local KEYWORDS = {}
for w in ([[if for while switch return sizeof defined typedef struct enum union static inline
  const volatile extern void int char long short unsigned signed double float _Atomic]]):gmatch("%S+") do
  KEYWORDS[w] = true
end

-- Adds the member names declared in text (a struct's body, or a line of
-- it) to members: the last identifier of each declaration, the others of a
-- list (int a, b;), and function pointers ((*name)).
local function add_members(text, members)
  for fp in text:gmatch("%(%*%s*([%a_][%w_]*)%)") do members[fp] = true end
  for decl in text:gmatch("([^;{}]*);") do
    local last = decl:match("([%a_][%w_]*)%s*%[[^%]]*%]%s*$") or decl:match("([%a_][%w_]*)%s*:%s*%d+%s*$")
                 or decl:match("([%a_][%w_]*)%s*$")
    if last and not KEYWORDS[last] then members[last] = true end
    for n in decl:gmatch(",%s*%**%s*([%a_][%w_]*)") do members[n] = true end
  end
end

-- What header h declares: names usable by an including file.
local function declared(h)
  local names, members = {}, {}
  local code = code_of(read(h))
  for n in code:gmatch("#%s*define%s+([%a_][%w_]*)") do names[n] = true end
  local depth, in_enum, in_struct = 0, false, false
  for line in code:gmatch("[^\n]*") do
    if not line:match("^%s*#") then
      if depth == 0 then
        for n in line:gmatch("([%a_][%w_]*)%s*%(") do
          if not KEYWORDS[n] then names[n] = true end
        end
        for n in line:gmatch("struct%s+([%a_][%w_]*)") do names[n] = true end
        for n in line:gmatch("enum%s+([%a_][%w_]*)") do names[n] = true end
        local t = line:match("typedef.-([%a_][%w_]*)%s*;%s*$") or line:match("typedef.-%(%*%s*([%a_][%w_]*)%)")
        if t then names[t] = true end
        if line:match("enum[^;]*{") or line:match("^%s*enum%s*$") or line:match("typedef%s+enum") then
          in_enum = true
          local inner = line:match("{(.*)}")
          for n in (inner and "," .. inner or ""):gmatch(",%s*([%a_][%w_]*)") do names[n] = true end
        end
        if line:match("struct[^;(]*{") or line:match("union[^;(]*{") then
          in_struct = true
          local inner = line:match("{(.*)}")
          if inner then add_members(inner, members) end
        end
      elseif in_enum and depth == 1 then
        for n in line:gmatch("^%s*([%a_][%w_]*)%s*[,=}]?") do names[n] = true end
        for n in line:gmatch(",%s*([%a_][%w_]*)%s*[,=}]") do names[n] = true end
      elseif in_struct then
        add_members(line, members)
      end
      local _, opens = line:gsub("{", "")
      local _, closes = line:gsub("}", "")
      depth = depth + opens - closes
      if depth == 0 then
        if line:match("}") then
          local n = line:match("}%s*([%a_][%w_]*)%s*;")
          if n then names[n] = true end
        end
        in_enum, in_struct = false, false
      end
    end
  end
  return names, members
end

local decl_cache = {}
local function decl(h)
  if not decl_cache[h] then
    local n, m = declared(h)
    decl_cache[h] = { names = n, members = m }
  end
  return decl_cache[h]
end

local findings = {}
local function finding(f, line, msg) findings[#findings + 1] = string.format("%s:%d: %s", f, line, msg) end

local exists = {}
for _, f in ipairs(files) do exists[f] = true end

local edges, edge_at = {}, {}
for _, f in ipairs(files) do
  local text = read(f)
  local code = code_of(text)
  local m = module_of(base[f])
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local inc = line:match('^%s*#%s*include%s+"([^"]+)"')
    if inc then
      local path = dir .. "/" .. inc
      if exists[path] then
        local hm = module_of(base[path])
        if hm ~= m then
          edges[m] = edges[m] or {}
          edges[m][hm] = true
          edge_at[m .. ">" .. hm] = edge_at[m .. ">" .. hm] or (f .. ":" .. lineno)
          -- rule 2
          local d = decl(path)
          local used = false
          local body = code:gsub('#%s*include[^\n]*', "")
          for w in body:gmatch("[%a_][%w_]*") do
            if d.names[w] then used = true; break end
          end
          if not used then
            for w in body:gmatch("[%.>]%s*([%a_][%w_]*)") do
              if d.members[w] then used = true; break end
            end
          end
          if not used then finding(f, lineno, inc .. " is included but nothing it declares is used") end
        end
      end
    end
  end
end

-- rule 1: strongly connected components (Tarjan)
local index, low, onstack, stack, n = {}, {}, {}, {}, 0
local mods = {}
for _, f in ipairs(files) do mods[module_of(base[f])] = true end
local order = {}
for k in pairs(mods) do order[#order + 1] = k end
table.sort(order)
local function strong(v)
  n = n + 1
  index[v], low[v] = n, n
  stack[#stack + 1] = v
  onstack[v] = true
  local outs = {}
  for w in pairs(edges[v] or {}) do outs[#outs + 1] = w end
  table.sort(outs)
  for _, w in ipairs(outs) do
    if not index[w] then
      strong(w)
      low[v] = math.min(low[v], low[w])
    elseif onstack[w] then
      low[v] = math.min(low[v], index[w])
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      onstack[w] = false
      comp[#comp + 1] = w
    until w == v
    if #comp > 1 then
      table.sort(comp)
      local where = {}
      for _, a in ipairs(comp) do
        for _, b in ipairs(comp) do
          if edge_at[a .. ">" .. b] then where[#where + 1] = a .. " -> " .. b .. " (" .. edge_at[a .. ">" .. b] .. ")" end
        end
      end
      finding(dir .. "/" .. comp[1] .. ".c", 1, "modules depend on each other in a circle: " ..
              table.concat(comp, ", ") .. ": " .. table.concat(where, "; "))
    end
  end
end
for _, v in ipairs(order) do
  if not index[v] then strong(v) end
end

table.sort(findings)
for _, l in ipairs(findings) do print(l) end
os.exit(#findings > 0 and 1 or 0)

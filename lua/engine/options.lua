--- engine.options: checks the option tables the engine's helpers take
-- (multiline.new, sample.one_in, sample.rate_limit, redact.filter,
-- redact.text, kv.extract), so that a typo fails where it is written.
--
--   options.check(opts, { start = true, flush_after = true }, "multiline.new", 2)
--
-- check(opts, known, what, level) raises when opts is not a table, or has
-- a key known does not list. level counts as for error(): 1 is the helper
-- that calls check, 2 its caller (the user's line: the message then starts
-- "file:line:"). Returns opts. Tables found good are remembered (weakly),
-- so a helper called per record checks its options once.
local M = {}

local format, pairs, type = string.format, pairs, type

local good = setmetatable({}, { __mode = "k" })

local function names(known)
  local keys = {}
  for k in pairs(known) do keys[#keys + 1] = k end
  table.sort(keys)
  return table.concat(keys, ", ")
end

function M.check(opts, known, what, level)
  level = (level or 1) + 1
  if good[opts] then return opts end
  if type(opts) ~= "table" then
    error(format("%s: expects a table of options (got a %s)", what, type(opts)), level)
  end
  for k in pairs(opts) do
    if type(k) ~= "string" or not known[k] then
      error(format("%s: unknown option %s (expected one of: %s)", what,
        type(k) == "string" and format("%q", k) or tostring(k), names(known)), level)
    end
  end
  good[opts] = true
  return opts
end

--- Raises "what: message" at level (as for check) unless ok.
function M.require(ok, what, message, level)
  if not ok then error(what .. ": " .. message, (level or 1) + 1) end
end

return M

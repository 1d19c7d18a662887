--- engine.multiline: a ready filter that joins multi-line records (stack
-- traces) into one record, per container and stream.
--
--   local multiline = require("engine.multiline")
--   filters = {
--     multiline.new({ start = "^%d%d%d%d%-%d%d%-%d%d", flush_after = 1 }),
--   }
--
-- Options:
--   start        Lua pattern, or a list: a line that matches one begins a new
--                record (required)
--   continue     pattern or list (optional): a line that matches one always
--                continues the current record, even if it matches start
--   flush_after  seconds (default 1): a record that got no new line for one
--                to two periods is emitted by the filter's timer
--   max_lines    a record never joins more lines than this (default 500)
--   separator    put between the joined lines (default "\n")
--   name, select, on_error   as for any filter (name default "multiline")
--
-- The joined record is the first line's record (its time, stream and
-- container fields) with `line` set to the joined text. A record waits in
-- the filter until the next start line of its container and stream, its
-- flush timer, or shutdown (which emits everything pending). Records a
-- timer emits go on through the filters after this one.
local options = require("engine.options")

local M = {}

local concat = table.concat
local OPTIONS = { start = true, continue = true, flush_after = true, max_lines = true,
                  separator = true, name = true, select = true, on_error = true }

local function list(v)
  if v == nil then return {} end
  if type(v) == "string" then return { v } end
  return v
end

local function matches_any(line, patterns)
  for i = 1, #patterns do
    if line:find(patterns[i]) then return true end
  end
  return false
end

--- Returns a filter table (see above).
function M.new(opts)
  options.check(opts, OPTIONS, "multiline.new", 2)
  local starts = list(opts.start)
  options.require(#starts > 0, "multiline.new", "`start` (a Lua pattern or a list) is required", 2)
  local continues = list(opts.continue)
  local every = opts.flush_after or 1
  local max_lines = opts.max_lines or 500
  local sep = opts.separator or "\n"
  local pending = {} -- key -> { rec = first record, lines = {...}, fresh = bool }

  local function finish(p)
    if #p.lines > 1 then p.rec.line = concat(p.lines, sep) end
    return p.rec
  end

  local function process(batch)
    local out = {}
    for _, rec in ipairs(batch) do
      local key = (rec.container or "") .. "\0" .. (rec.stream or "")
      local p = pending[key]
      local line = rec.line
      local is_start = matches_any(line, starts) and not matches_any(line, continues)
      if p and not is_start and #p.lines < max_lines then
        p.lines[#p.lines + 1] = line
        p.fresh = true
      else
        if p then out[#out + 1] = finish(p) end
        pending[key] = { rec = rec, lines = { line }, fresh = true }
      end
    end
    return out
  end

  local function flush(ctx, all)
    local keys = {}
    for key in pairs(pending) do keys[#keys + 1] = key end
    table.sort(keys)
    for _, key in ipairs(keys) do
      local p = pending[key]
      if all or not p.fresh then
        pending[key] = nil
        ctx.emit(finish(p))
      else
        p.fresh = false
      end
    end
  end

  return {
    name = opts.name or "multiline",
    select = opts.select,
    on_error = opts.on_error,
    process = process,
    timers = { { every = every, handler = function(ctx) flush(ctx, false) end } },
    shutdown = function(ctx) flush(ctx, true) end,
  }
end

return M

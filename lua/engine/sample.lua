--- engine.sample: ready filters that thin out noisy containers.
--
--   local sample = require("engine.sample")
--   filters = {
--     sample.one_in(10, { select = { include = { name = "chatty" } } }),
--     sample.rate_limit({ lines = 100, every = 1 }),
--   }
--
-- sample.one_in(n, opts): keeps the 1st, (n+1)th, (2n+1)th... record of each
--   container (a count per container, kept across batches). Kept records
--   get the field `sampled = n`. opts: name (default "sample"), select,
--   on_error.
--
-- sample.rate_limit(opts): lets at most opts.lines records of each
--   container through per window of opts.every seconds (default 1); the
--   rest of the window is dropped. When a window ends with drops and
--   opts.report is not false, a record is emitted for the container:
--   { line = "rate limit: dropped N lines", name, container, dropped = N };
--   shutdown reports the last window likewise. opts: name (default "rate_limit"), select, on_error.
local options = require("engine.options")

local M = {}

local FILTER = { name = true, select = true, on_error = true }
local RATE_LIMIT = { lines = true, every = true, report = true, name = true, select = true,
                     on_error = true }

function M.one_in(n, opts)
  options.require(type(n) == "number" and n >= 1 and n == math.floor(n), "sample.one_in",
    "n must be an integer >= 1", 2)
  opts = options.check(opts or {}, FILTER, "sample.one_in", 2)
  local seen = {}
  return {
    name = opts.name or "sample",
    select = opts.select,
    on_error = opts.on_error,
    process = function(batch)
      local out = {}
      for _, rec in ipairs(batch) do
        local key = rec.container or ""
        local c = seen[key] or 0
        if c % n == 0 then
          rec.sampled = n
          out[#out + 1] = rec
        end
        seen[key] = (c + 1) % n
      end
      return out
    end,
  }
end

function M.rate_limit(opts)
  options.check(opts, RATE_LIMIT, "sample.rate_limit", 2)
  options.require(type(opts.lines) == "number" and opts.lines >= 0, "sample.rate_limit",
    "expects { lines = N, every = seconds }", 2)
  local limit, every = opts.lines, opts.every or 1
  local report = opts.report ~= false
  local windows = {} -- container id -> { n = passed, dropped = N, name = container name }

  -- Ends every window, reporting the drops.
  local function close_windows(ctx)
    local keys = {}
    for key in pairs(windows) do keys[#keys + 1] = key end
    table.sort(keys)
    for _, key in ipairs(keys) do
      local w = windows[key]
      if report and w.dropped > 0 then
        ctx.emit({ line = ("rate limit: dropped %d lines"):format(w.dropped), container = key,
          name = w.name, dropped = w.dropped })
      end
      windows[key] = nil
    end
  end

  return {
    name = opts.name or "rate_limit",
    select = opts.select,
    on_error = opts.on_error,
    process = function(batch)
      local out = {}
      for _, rec in ipairs(batch) do
        local key = rec.container or ""
        local w = windows[key]
        if not w then
          w = { n = 0, dropped = 0, name = rec.name }
          windows[key] = w
        end
        if w.n < limit then
          w.n = w.n + 1
          out[#out + 1] = rec
        else
          w.dropped = w.dropped + 1
        end
      end
      return out
    end,
    timers = { { every = every, handler = close_windows } },
    shutdown = close_windows,
  }
end

return M

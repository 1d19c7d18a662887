-- Counts lines per container and emits one summary record per container
-- every minute (and the last counts at shutdown), e.g.
--   {"line":"42 lines in 60 s","name":"web","container":"3f2a...","lines":42,...}
-- The lines themselves are dropped. $COUNT_EVERY changes the period (seconds).
local every = tonumber(os.getenv("COUNT_EVERY")) or 60

-- Emits one record per container counted, in container id order; what is
-- the line's format, with the count as %d.
local function report(ctx, what)
  local ids = {}
  for id in pairs(ctx.state.counts) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local c = ctx.state.counts[id]
    ctx.emit({ line = what:format(c.n), container = id, name = c.name, lines = c.n })
  end
end

return {
  filters = {
    { name = "count",
      init = function(ctx) ctx.state.counts = {} end,
      process = function(batch, ctx)
        local counts = ctx.state.counts
        for _, rec in ipairs(batch) do
          local c = counts[rec.container]
          if not c then
            c = { name = rec.name, n = 0 }
            counts[rec.container] = c
          end
          c.n = c.n + 1
        end
        return {}
      end,
      timers = { { every = every, handler = function(ctx)
        report(ctx, "%d lines in " .. every .. " s")
        ctx.state.counts = {}
      end } },
      shutdown = function(ctx) report(ctx, "%d lines at shutdown") end },
  },
  outputs = { { type = "stdout", format = "json" } },
}

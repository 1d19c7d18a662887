-- Drops debug lines: `engine run examples/drop_debug.lua`.
-- A line is debug when it says level=debug (logfmt), "level":"debug" (JSON)
-- or starts with DEBUG.
local function is_debug(line)
  return line:find("level=debug", 1, true) or line:find('"level":"debug"', 1, true)
    or line:find("^DEBUG")
end

return {
  filters = {
    { name = "drop_debug", process = function(batch)
        local keep = {}
        for _, rec in ipairs(batch) do
          if not is_debug(rec.line) then keep[#keep + 1] = rec end
        end
        return keep
      end },
  },
  outputs = { { type = "stdout", format = "json" } },
}

-- A low-memory profile for small boards: every option that bounds memory,
-- set low. Measured with scripts/bench/footprint.sh (README, "Footprint").
return {
  batch = {
    max_lines = 200,           -- records handed to the filters at once
    max_bytes = 65536,         -- bytes per batch
    flush_interval = 1.0,
  },
  filters = {
    function(batch)            -- the same work as examples/pipeline.lua
      local keep = {}
      for _, r in ipairs(batch) do
        if not r.line:find("level=debug", 1, true) then keep[#keep + 1] = r end
      end
      return keep
    end,
  },
  outputs = { { type = "stdout", format = "json" } },
  engine = {
    max_buffered = 1048576,    -- bytes read but not yet delivered before readers pause
    lua_memory = 4194304,      -- the filters' Lua state
    line_max = 65536,          -- longer lines are delivered in pieces
    frame_max = 131072,        -- largest frame accepted from the daemon
  },
}

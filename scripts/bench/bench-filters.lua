-- bench-filters.lua - the filters of benchmark scenarios 1-3 (the text of a
-- pipeline's `filters` entry), shared by scripts/bench/bench.lua and
-- scripts/bench/bench-ref.lua so the engine and the reference run the same code.
return {
  [1] = "",
  [2] = "filters = { function(batch) return batch end },",
  [3] = [[filters = { function(batch)
    local keep = {}
    for _, r in ipairs(batch) do
      if not r.line:find("level=debug", 1, true) then
        local level = r.line:match("level=(%w+)")
        if level then r.severity = level:upper() end
        keep[#keep + 1] = r
      end
    end
    return keep
  end },]],
}

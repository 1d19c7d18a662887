-- An example pipeline: `build/engine run examples/pipeline.lua`.
--
-- It follows every container of the Docker daemon at $DOCKER_HOST (else
-- unix:///var/run/docker.sock), drops debug lines, tags each other line with
-- its level, and prints one JSON object per line on stdout.

-- Finds "level=<word>" in a line; nil when the line names no level.
local function level_of(line)
  return line:match("level=(%w+)")
end

return {
  -- No `select`: every container is followed. To narrow it down:
  --   select = { include = { name = { "web-*" } }, exclude = { label = { "logs=off" } } },

  -- Batches go to the filters when they are this old (seconds), or full.
  batch = { flush_interval = 0.5 },

  filters = {
    {
      name = "levels",
      -- If the filter fails, its batch goes on unchanged.
      on_error = "pass",
      -- batch: an array of records from one container, each with the fields
      -- line, stream ("stdout"/"stderr"), time, container, name, image,
      -- labels. Returns the records to keep.
      process = function(batch, ctx)
        local keep = {}
        for _, rec in ipairs(batch) do
          local level = level_of(rec.line)
          if level ~= "debug" then
            rec.level = level -- nil (no field) when the line has no level
            keep[#keep + 1] = rec
          end
        end
        return keep
      end,
    },
  },

  outputs = {
    { type = "stdout", format = "json" },
  },
}

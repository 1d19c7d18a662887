-- Routes error lines to a file (rotated at 10 MiB, 5 kept) and everything
-- else to stdout. Any output can take stdout's place as the destination of
-- every other record, e.g. { name = "everything", type = "clickhouse",
-- url = "http://127.0.0.1:8123", table = "logs" } (docs/configuration.md).
-- The file is $ERRORS_LOG, else /tmp/engine-errors.log.
local path = os.getenv("ERRORS_LOG") or "/tmp/engine-errors.log"

return {
  filters = {
    { name = "route", process = function(batch)
        for _, rec in ipairs(batch) do
          local line = rec.line
          if rec.stream == "stderr" and (line:find("ERROR", 1, true) or line:find("level=error", 1, true))
            or line:find("^ERROR") then
            rec.output = "errors"
          end
        end
      end },
  },
  outputs = {
    { name = "everything", type = "stdout", format = "json" },
    { name = "errors", type = "file", path = path, format = "json", routed_only = true,
      max_bytes = 10 * 1024 * 1024, keep = 5 },
  },
}

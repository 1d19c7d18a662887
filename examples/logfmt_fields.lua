-- Turns logfmt lines (level=info msg="..." user=ann) into fields under
-- `fields`, and lifts level and msg.
local logfmt = require("engine.logfmt")

return {
  filters = {
    { name = "logfmt", process = function(batch)
        for _, rec in ipairs(batch) do
          local f = logfmt.parse(rec.line)
          if f.level or f.msg then -- a logfmt line, not prose
            rec.fields = f
            rec.level = type(f.level) == "string" and f.level or nil
            if type(f.msg) == "string" then rec.line = f.msg end
          end
        end
      end },
  },
  outputs = { { type = "stdout", format = "json" } },
}
